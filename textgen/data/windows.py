"""Training examples: (context, continuation) windows cut from a token stream.

The stream is ``[BOS] + ids``.  A window at position ``p`` (``1 <= p``) has

* ``context``  = ``stream[max(0, p - C) : p]``, right-padded to ``C`` (the encoder's input),
* ``inputs``   = ``stream[p - 1 : p + T - 1]`` (the decoder's input: starts at the context's last token),
* ``targets``  = ``stream[p : p + T]`` (what the decoder must predict).

``C`` and ``T`` are ``context_chars`` and ``target_chars``, and like ``p`` and ``stride`` they count
tokens, not characters: a character of the vocabulary is one token, a character outside it one
token per UTF-8 byte (the names are older than byte fallback, and exports store them).

Training draws windows at every ``stride``-th position in random order; evaluation tiles the stream
with consecutive windows so that every token is scored exactly once, with the same context a
generated character would have had.

With :class:`DocumentStarts` (``data.document_contexts``) a context never reaches back across the
document separator: a window less than ``C`` tokens into a document reads ``[BOS]`` and the
document so far, which is what the sampler reads when a prompt starts a document (a ci's tune
line, a poem's title).  Without it the context runs on into the previous document, a context the
sampler never gives a prompt.

The ids may be a tensor, a list, or a numpy array or memory map (:mod:`textgen.data.tokens`):
arrays are never copied, a window reads only its own slice, so a corpus of gigabytes costs no
memory beyond the pages the windows touch.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from textgen.tokenizer import BOS_ID, PAD_ID

Window = tuple[Tensor, Tensor, Tensor, Tensor]  # context (C,), context length (), inputs (T,), targets (T,)


def as_stream(ids: Tensor | list[int]) -> Tensor:
    """``[BOS] + ids`` as a 1-D int64 tensor."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    return torch.cat([torch.tensor([BOS_ID], dtype=torch.long), ids])


class TokenStream:
    """``[BOS] + ids`` over a numpy array or memory map, without copying it.

    Slicing (``stream[a:b]``, step 1) gives an int64 tensor of just that range.  Pickling (DataLoader
    workers, spawned processes) sends a memory map's file name, never its contents.

    The slices of a memory map are read from its file with ``os.pread`` (from the page cache), not
    through the mapping: reading a mapping at random makes the kernel map the neighbourhood of every
    window into the process (fault-around and large folios, ~0.9 MB a window measured here), so 200
    steps of 32 windows grew a 1 GB corpus' resident memory by ~1 GB, and unmapping them again every
    64 windows cost ~1 ms a window.  ``pread`` costs a few microseconds and maps nothing.
    """

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._file: tuple[str, int] | None = None  # the file name and byte offset of a memory map
        if isinstance(ids, np.memmap) and ids.filename is not None and ids.flags.c_contiguous:
            self._file = (str(ids.filename), int(ids.offset))
        self._fd: int | None = None
        self._fd_pid = -1

    def __len__(self) -> int:
        return len(self.ids) + 1

    def _read(self, start: int, stop: int) -> np.ndarray:
        """``ids[start:stop]`` (``0 <= start <= stop <= len(ids)``) as a fresh array."""
        if self._file is None:
            return np.asarray(self.ids[start:stop])
        if self._fd is None or self._fd_pid != os.getpid():  # one descriptor per process
            self._fd, self._fd_pid = os.open(self._file[0], os.O_RDONLY), os.getpid()
        itemsize = self.ids.dtype.itemsize
        data = os.pread(self._fd, (stop - start) * itemsize, self._file[1] + start * itemsize)
        return np.frombuffer(data, dtype=self.ids.dtype)

    def __getitem__(self, index: slice) -> Tensor:
        start, stop, _ = index.indices(len(self))
        if stop <= start:
            return torch.empty(0, dtype=torch.long)
        body = torch.from_numpy(self._read(max(start - 1, 0), stop - 1).astype(np.int64))
        if start == 0:
            body = torch.cat([torch.tensor([BOS_ID], dtype=torch.long), body])
        return body

    def __del__(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)

    def __getstate__(self) -> dict:
        ids = self.ids
        if isinstance(ids, np.memmap) and ids.filename is not None:
            return {"memmap": (ids.filename, ids.dtype.str, ids.offset, ids.shape)}
        return {"ids": np.asarray(ids)}

    def __setstate__(self, state: dict) -> None:
        if "memmap" in state:
            filename, dtype, offset, shape = state["memmap"]
            self.__init__(np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape))
        else:
            self.__init__(state["ids"])


def stream_of(ids: Tensor | np.ndarray | list[int]) -> Tensor | TokenStream:
    """``[BOS] + ids``: a :class:`TokenStream` view over numpy ids, else an int64 tensor."""
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"token ids must be 1-D, got shape {ids.shape}")
        return TokenStream(ids)
    return as_stream(ids)


class DocumentStarts:
    """Where each document of a stream starts: the positions just after every ``separator``.

    ``before(p)`` is the start of the document that holds stream position ``p`` (1 for the first).
    """

    def __init__(self, ids: Tensor | np.ndarray | list[int], separator: list[int]) -> None:
        if not separator:
            raise ValueError("a document separator of at least one token is needed")
        ids = np.asarray(ids)
        k = len(separator)
        match = np.ones(max(len(ids) - k + 1, 0), dtype=bool)
        for offset, token in enumerate(separator):
            match &= ids[offset:len(ids) - k + 1 + offset] == token
        # ids[i:i+k] is a separator -> the next document starts at ids[i+k], stream position i+k+1
        self.starts = np.concatenate([[1], np.flatnonzero(match) + k + 1]).astype(np.int64)

    def before(self, p: int) -> int:
        return int(self.starts[np.searchsorted(self.starts, p, side="right") - 1])

    def after_first_lines(self, ids: Tensor | np.ndarray | list[int], line_end: int) -> np.ndarray:
        """The stream position just after each document's first ``line_end`` token: where the text
        under a prompt line (a ci's tune, a poem's title) starts.  Documents with no line end, or
        none before the stream ends, have none."""
        ids = np.asarray(ids)
        breaks = np.flatnonzero(ids == line_end) + 1  # stream positions of the line-end tokens
        if not len(breaks):
            return np.empty(0, dtype=np.int64)
        following = np.concatenate([self.starts[1:], [len(ids) + 1]])  # where each document's next starts
        first = np.searchsorted(breaks, self.starts)  # each document's first line end, if it has one
        end = breaks[np.minimum(first, len(breaks) - 1)]
        keep = (first < len(breaks)) & (end < following) & (end < len(ids))  # a target token follows
        return (end[keep] + 1).astype(np.int64)


def window_at(stream: Tensor | TokenStream, p: int, context_chars: int, target_chars: int,
              document_start: int | None = None) -> Window:
    """The window whose first target is ``stream[p]``; short tails are padded with ``PAD_ID``.

    With ``document_start`` (the stream position where ``p``'s document starts) the context is
    ``[BOS]`` and the document up to ``p``, cut to its last ``C`` tokens, and the decoder's first
    input is the context's last token, as in sampling from a prompt that starts a document.
    """
    C, T = context_chars, target_chars
    if document_start is None or p - document_start >= C:
        ctx = stream[max(0, p - C):p]
    else:
        ctx = torch.cat([torch.tensor([BOS_ID], dtype=torch.long), stream[document_start:p]])[-C:]
    context = torch.full((C,), PAD_ID, dtype=torch.long)
    context[: len(ctx)] = ctx
    inputs = torch.full((T,), PAD_ID, dtype=torch.long)
    targets = torch.full((T,), PAD_ID, dtype=torch.long)
    tgt = stream[p:p + T]
    targets[: len(tgt)] = tgt
    inputs[: len(tgt)] = stream[p - 1:p - 1 + len(tgt)]
    if len(tgt):
        inputs[0] = ctx[-1]
    return context, torch.tensor(len(ctx)), inputs, targets


class RandomWindows(Dataset):
    """Every ``stride``-th full window of the stream, then, with ``prompt_line_end`` (the line
    break's token; needs ``documents``), one window under each document's first line; shuffle it
    with the DataLoader's sampler.

    A prompt window's context is ``[BOS]`` and the document's first line, the very context the
    sampler reads when that line is the prompt (``data.prompt_windows``); ``prompt_starts`` holds
    where they start (:meth:`DocumentStarts.after_first_lines`).
    """

    def __init__(self, ids: Tensor | np.ndarray, context_chars: int, target_chars: int, stride: int = 1,
                 documents: DocumentStarts | None = None, prompt_line_end: int | None = None) -> None:
        self.stream = stream_of(ids)
        self.context_chars, self.target_chars, self.stride = context_chars, target_chars, stride
        self.documents = documents
        if prompt_line_end is None:
            self.prompt_starts = np.empty(0, dtype=np.int64)
        elif documents is None:
            raise ValueError("prompt windows need the documents' starts")
        else:
            self.prompt_starts = documents.after_first_lines(ids, prompt_line_end)
        last = len(self.stream) - target_chars  # the last p whose targets are all real tokens
        if last < 1:
            raise ValueError(
                f"text of {len(ids)} tokens is shorter than one window of target_chars={target_chars}"
            )
        self._count = (last - 1) // stride + 1

    def __len__(self) -> int:
        return self._count + len(self.prompt_starts)

    def __getitem__(self, index: int) -> Window:
        if index < self._count:
            p = 1 + index * self.stride
        else:
            p = int(self.prompt_starts[index - self._count])
        return window_at(self.stream, p, self.context_chars, self.target_chars, _start(self.documents, p))


class TiledWindows(Dataset):
    """Consecutive windows covering every token of the stream once (for validation and evaluation)."""

    def __init__(self, ids: Tensor | np.ndarray, context_chars: int, target_chars: int,
                 documents: DocumentStarts | None = None) -> None:
        self.stream = stream_of(ids)
        if len(self.stream) < 2:
            raise ValueError("cannot evaluate an empty text")
        self.context_chars, self.target_chars = context_chars, target_chars
        self.documents = documents
        self._count = (len(self.stream) - 1 + target_chars - 1) // target_chars

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Window:
        p = 1 + index * self.target_chars
        return window_at(self.stream, p, self.context_chars, self.target_chars, _start(self.documents, p))


def _start(documents: DocumentStarts | None, p: int) -> int | None:
    return None if documents is None else documents.before(p)


#: Up to this many training windows torch's own shuffle is used (the order every earlier run had);
#: beyond it, torch's ``randperm(n).tolist()`` would cost ~36 bytes a window (a 1 GB corpus: ~30 GB).
SHUFFLE_IN_MEMORY_MAX = 1 << 23


class RandomOrder(Sampler[int]):
    """Every index of ``range(size)`` once per epoch in a seeded pseudo-random order, in O(1) memory.

    The order is a keyed Feistel permutation of the next power of four (cycle-walking past ``size``),
    keyed by ``seed`` and the epoch (``set_epoch``, which Lightning calls), so no permutation is
    ever stored: for corpora of billions of windows where ``shuffle=True`` would not fit in memory.
    """

    _ROUNDS = 4
    _MASK64 = (1 << 64) - 1

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 1:
            raise ValueError("RandomOrder needs at least one index")
        self.size, self.seed, self.epoch = size, seed, 0
        self._half = max(1, ((size - 1).bit_length() + 1) // 2)  # bits per Feistel half

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    @classmethod
    def _mix(cls, x: int) -> int:  # splitmix64's finaliser
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & cls._MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & cls._MASK64
        return x ^ (x >> 31)

    def _permute(self, x: int, keys: list[int]) -> int:
        half, mask = self._half, (1 << self._half) - 1
        left, right = x >> half, x & mask
        for key in keys:
            left, right = right, left ^ (self._mix(right ^ key) & mask)
        return (left << half) | right

    def __iter__(self):
        keys = [self._mix((self.seed * 1_000_003 + self.epoch) * 8 + r + 1) for r in range(self._ROUNDS)]
        for index in range(self.size):
            x = self._permute(index, keys)
            while x >= self.size:  # cycle-walk back into range: still a permutation of range(size)
                x = self._permute(x, keys)
            yield x


def train_order(dataset: Dataset, seed: int) -> RandomOrder | None:
    """The sampler for ``dataset``'s training order: None (use ``shuffle=True``) when it is small
    enough for torch's in-memory permutation, else a :class:`RandomOrder`."""
    size = len(dataset)
    return RandomOrder(size, seed) if size > SHUFFLE_IN_MEMORY_MAX else None
