"""Chinese characters in a vocabulary: what the verse forms (Tang, ci) mask with.

:class:`HanPieces` finds a tokenizer's single-character pieces once (never byte pieces), marks the
Chinese ones, and keeps one-hot masks; each kind's tables add their own masks (rhyme groups, tones)
over :attr:`HanPieces.han_pieces`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from textgen.tokenizer import CharTokenizer


def is_han(char: str) -> bool:
    """A CJK unified ideograph (basic block, extension A, compatibility, extensions B and later)."""
    if len(char) != 1:
        return False
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
            or 0x20000 <= code <= 0x3FFFF)


class HanPieces:
    """A tokenizer's single-character pieces: ids by character, the Chinese ones, one-hot masks."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        V = tokenizer.vocab_size
        #: character -> the first piece that is exactly that character
        self.ids: dict[str, int] = {}
        #: (piece id, character, whether it is the character's first piece) of every Chinese piece
        self.han_pieces: list[tuple[int, str, bool]] = []
        han = torch.zeros(V, dtype=torch.bool)
        for i, piece in enumerate(tokenizer.pieces):
            if tokenizer.byte_values[i] >= 0 or tokenizer.chars_per_token[i] != 1 or len(piece) != 1:
                continue
            first = self.ids.setdefault(piece, i) == i
            if is_han(piece):
                han[i] = True
                self.han_pieces.append((i, piece, first))
        #: (V,): the Chinese single-character pieces
        self.han = han
        self._onehot: dict[str, Tensor] = {}

    def onehot(self, char: str) -> Tensor:
        """(V,): only ``char``'s piece."""
        mask = self._onehot.get(char)
        if mask is None:
            mask = torch.zeros_like(self.han)
            mask[self.ids[char]] = True
            self._onehot[char] = mask
        return mask

    def has_head(self, char: str) -> bool:
        """Whether ``char`` is a Chinese single-character piece of the vocabulary."""
        i = self.ids.get(char)
        return i is not None and bool(self.han[i])
