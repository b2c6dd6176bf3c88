"""Per-tokenizer mask tables, built once and shared by every constraint of that tokenizer."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from textgen.tokenizer import CharTokenizer

T = TypeVar("T")


def per_tokenizer(build: Callable[[CharTokenizer], T]) -> Callable[[CharTokenizer], T]:
    """Memoise ``build(tokenizer)``: built on first use, thread-safe, dropped with the tokenizer."""
    cache: weakref.WeakKeyDictionary[CharTokenizer, T] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def tables(tokenizer: CharTokenizer) -> T:
        with lock:
            built = cache.get(tokenizer)
            if built is None:
                built = cache[tokenizer] = build(tokenizer)
            return built

    tables.__doc__ = f"The :class:`{build.__name__}` of ``tokenizer`` (built on first use, then cached)."
    return tables
