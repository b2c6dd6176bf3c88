"""Tang forms by construction: 绝句 (4 verses) and 律诗 (8 verses) of 5 or 7 characters.

The poem is written as the corpus writes it: one couplet a line, ``，`` after odd verses, ``。``
after even ones, ``\\n`` between couplets, nothing after the last ``。``::

    白日依山尽，黄河入海流。
    欲穷千里目，更上一层楼。

:class:`TangConstraint` walks that layout one character at a time and allows, at each step, only
the characters the layout permits there: inside a verse, single-character Chinese pieces of the
vocabulary (never byte pieces, punctuation or spaces); the acrostic head at a verse's first
character; at the last character of an even verse with ``rhyme``, characters of the rhyme group
the poem has taken (see :mod:`textgen.forms.rhyme`).  Every mask is a precomputed (V,) tensor of
:class:`TangTables`, built once per tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from textgen.forms.rhyme import GROUPS, rhyme_group
from textgen.forms.tables import per_tokenizer
from textgen.tokenizer import CharTokenizer

COMMA, PERIOD, NEWLINE = "，", "。", "\n"
VERSES = {"jueju": 4, "lushi": 8}


def is_han(char: str) -> bool:
    """A CJK unified ideograph (basic block, extension A, compatibility, extensions B and later)."""
    if len(char) != 1:
        return False
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
            or 0x20000 <= code <= 0x3FFFF)


class TangTables:
    """Per-tokenizer masks: Chinese characters, punctuation, one-hot heads, rhyme groups."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        V = tokenizer.vocab_size
        self.ids: dict[str, int] = {}
        han = torch.zeros(V, dtype=torch.bool)
        groups = torch.full((V,), -1, dtype=torch.long)
        for i, piece in enumerate(tokenizer.pieces):
            if tokenizer.byte_values[i] >= 0 or tokenizer.chars_per_token[i] != 1 or len(piece) != 1:
                continue
            self.ids.setdefault(piece, i)
            if is_han(piece):
                han[i] = True
                groups[i] = rhyme_group(piece)
        self.han = han
        #: (G, V): Chinese pieces of each rhyme group.
        self.group_masks = torch.stack([groups == g for g in range(len(GROUPS))])
        self._onehot: dict[str, Tensor] = {}
        self._rhyme: dict[int, Tensor] = {}

    def onehot(self, char: str) -> Tensor:
        mask = self._onehot.get(char)
        if mask is None:
            mask = torch.zeros_like(self.han)
            mask[self.ids[char]] = True
            self._onehot[char] = mask
        return mask

    def rhyme_mask(self, group_bits: int) -> Tensor:
        """Chinese pieces in any of the groups set in ``group_bits`` (a bit per group)."""
        mask = self._rhyme.get(group_bits)
        if mask is None:
            chosen = [g for g in range(len(GROUPS)) if group_bits >> g & 1]
            mask = self.group_masks[chosen].any(dim=0)
            self._rhyme[group_bits] = mask
        return mask

    def has_head(self, char: str) -> bool:
        i = self.ids.get(char)
        return i is not None and bool(self.han[i])


tang_tables = per_tokenizer(TangTables)


@dataclass(frozen=True)
class TangForm:
    """A validated Tang form."""

    kind: str  # "jueju" | "lushi"
    chars_per_line: int  # 5 | 7
    acrostic: str = ""  # one head per verse, or ""
    title: str = ""
    rhyme: bool = False

    @property
    def verses(self) -> int:
        return VERSES[self.kind]


class LayoutError(ValueError):
    """A character the layout does not allow where it stands (the message says what it expected)."""


class TangConstraint:
    """Masks one sample's choices so that the text completes a :class:`TangForm` poem.

    The state is (verse, position in the verse); position ``chars_per_line`` is the verse's
    punctuation, and ``chars_per_line + 1`` the line break after an even verse.
    """

    def __init__(self, form: TangForm, tables: TangTables | None) -> None:
        self.form = form
        self.tables = tables
        self.verse = 0
        self.position = 0
        self.rhyme_bits = (1 << len(GROUPS)) - 1  # the groups the even verses so far all share

    # ----------------------------------------------------------------- the layout
    def _expected(self) -> str:
        """What the layout wants next: "han", "，", "。", "\\n" or "" (complete)."""
        L = self.form.chars_per_line
        if self.verse >= self.form.verses:
            return ""
        if self.position < L:
            return "han"
        if self.position == L:
            return COMMA if self.verse % 2 == 0 else PERIOD
        return NEWLINE

    def _is_rhyme_slot(self) -> bool:
        return self.form.rhyme and self.verse % 2 == 1 and self.position == self.form.chars_per_line - 1

    def feed(self, char: str) -> None:
        """Advance by one character; raises :class:`LayoutError` if the layout forbids it."""
        expected = self._expected()
        if expected == "":
            raise LayoutError(f"the poem is already complete, got {char!r}")
        where = f"verse {self.verse + 1}, character {self.position + 1}"
        if expected == "han":
            if not is_han(char):
                raise LayoutError(f"{where}: expected a Chinese character, got {char!r}")
            if self.position == 0 and self.form.acrostic and char != self.form.acrostic[self.verse]:
                raise LayoutError(f"{where}: expected the acrostic head {self.form.acrostic[self.verse]!r}, "
                                  f"got {char!r}")
            if self._is_rhyme_slot():
                group = rhyme_group(char)
                if group < 0 or not self.rhyme_bits >> group & 1:
                    raise LayoutError(f"{where}: {char!r} does not rhyme with the even verses before it")
                self.rhyme_bits = 1 << group
            self.position += 1
            return
        if char != expected:
            raise LayoutError(f"{where}: expected {expected!r}, got {char!r}")
        if expected == PERIOD and self.verse == self.form.verses - 1:
            self.verse += 1  # the last verse: complete, no line break after it
        elif expected == COMMA or expected == NEWLINE:
            self.verse += 1
            self.position = 0
        else:
            self.position += 1

    # ----------------------------------------------------------------- the Constraint protocol
    def allowed(self) -> Tensor | None:
        tables = self.tables
        expected = self._expected()
        if expected == "":
            return None
        if expected != "han":
            return tables.onehot(expected)
        if self.position == 0 and self.form.acrostic:
            return tables.onehot(self.form.acrostic[self.verse])
        if self._is_rhyme_slot():
            return tables.rhyme_mask(self.rhyme_bits)
        return tables.han

    def advance(self, token: int, text: str) -> None:
        for char in text:
            self.feed(char)

    def is_complete(self) -> bool:
        return self.verse >= self.form.verses

    def must_continue(self) -> bool:
        """A poem is never cut short: the row runs past ``max_new_chars`` until it is complete."""
        return not self.is_complete()


def poem_length(form: TangForm) -> int:
    """Characters of a complete poem (without the title line)."""
    couplets = form.verses // 2
    return form.verses * (form.chars_per_line + 1) + couplets - 1


# --------------------------------------------------------------------------- checking text
def check_poem(text: str, form: TangForm) -> str | None:
    """Why ``text`` (the verses, no title line) is not a complete poem of ``form``; None if it is."""
    constraint = TangConstraint(form, None)
    try:
        for char in text:
            constraint.feed(char)
    except LayoutError as error:
        return str(error)
    return None if constraint.is_complete() else "the poem is incomplete"


def even_verse_ends(text: str, chars_per_line: int) -> str:
    """The last characters of the even verses of a poem written in the corpus layout."""
    ends = []
    for line in text.split(NEWLINE):
        if line.endswith(PERIOD) and len(line) > chars_per_line + 1:
            ends.append(line[-2])
    return "".join(ends)
