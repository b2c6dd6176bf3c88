"""LaTeX balanced by construction: environments, braces and inline math.

:class:`LatexState` reads LaTeX one character at a time with the little grammar that balance
needs, and knows the length of the shortest text that would close everything open
(:meth:`LatexState.closing`)::

    stack of open groups   "{" a brace, "$" inline math, any other string an environment
    modes                  text | after "\\" | control word | \\begin{name | \\end{name | % comment

* ``\\{ \\} \\$ \\% \\\\`` are escaped symbols, not structure; a ``%`` comment hides structure up to
  the end of its line.
* ``}`` only closes a brace; ``$`` closes math when math is on top, opens it when no math is open,
  and is refused in between (``$x^{a$``).
* ``\\begin`` must be followed by ``{name}`` (letters, then an optional ``*``); ``\\end`` by
  ``{`` and exactly the name of the innermost open environment, and only when one is open.

:class:`LatexConstraint` allows, at each step, exactly the tokens that keep the text closable
within the characters left (``max_new_chars`` minus the characters written, told by the sampler
through ``set_remaining``): a token is allowed when its own characters plus the closing length
after it still fit.  So the model writes freely while there is room and is steered into the
shortest closing sequence as the budget runs out; when the prompt alone leaves more open than
``max_new_chars`` can close, the row runs past ``max_new_chars`` by exactly the missing
characters, taking only tokens that shorten the closing.  Masks depend on a small signature of
the state (mode, the top of the stack, whether math is open, slack up to 12 characters) and are
cached per tokenizer in :class:`LatexTables`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from textgen.forms.tables import per_tokenizer
from textgen.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharTokenizer

TEXT, ESCAPE, WORD, BEGIN_NAME, END_NAME, COMMENT = range(6)
BRACE, MATH = "{", "$"
ENV_NAME = re.compile(r"^[A-Za-z]+\*?$")
# The longest closing growth of one character is 'n' completing "\begin" (then "{x}\end{x}" is
# owed: 10); with this much slack nothing is ever refused for lack of room.
_SLACK_CAP = 12
_BEGIN_OWES = 10  # "{x}\end{x}"


def _frame_cost(frame: str) -> int:
    return 1 if frame in (BRACE, MATH) else len(r"\end{}") + len(frame)


@dataclass(frozen=True)
class LatexState:
    """An immutable reading position: what is open and where inside a token the text stands."""

    stack: tuple[str, ...] = ()
    cost: int = 0  # closing length of the stack alone
    mode: int = TEXT
    word: str = ""  # the control word so far (WORD), the environment name so far (BEGIN_NAME)
    matched: int = 0  # characters of the environment name matched after \end{ (END_NAME)

    @property
    def top(self) -> str | None:
        return self.stack[-1] if self.stack else None

    @property
    def top_is_env(self) -> bool:
        return self.top is not None and self.top not in (BRACE, MATH)

    def _push(self, frame: str) -> LatexState:
        return LatexState(self.stack + (frame,), self.cost + _frame_cost(frame))

    def _pop(self) -> LatexState:
        return LatexState(self.stack[:-1], self.cost - _frame_cost(self.stack[-1]))

    # ----------------------------------------------------------------- closing
    def closing(self) -> int:
        """Length of the shortest text that leaves nothing open (0: balanced here)."""
        C = self.cost
        if self.mode == TEXT:
            return C
        if self.mode == COMMENT:
            return 1 + C  # "\n"
        if self.mode == ESCAPE:
            return C - 1 if self.top_is_env else 1 + C  # "end{name}" or "\ "
        if self.mode == WORD:
            if self.word == "begin":
                return C + _BEGIN_OWES
            if self.top_is_env and "end".startswith(self.word):
                return C - 1 - len(self.word)  # finish "\end{name}"
            return C
        if self.mode == BEGIN_NAME:
            # "}\end{name}" after the name so far; an empty name still needs a letter: "x}\end{x}"
            return (len(self.word) + 7 if self.word else 9) + C
        # END_NAME
        return len(self.top) - self.matched + 1 + C - _frame_cost(self.top)

    # ----------------------------------------------------------------- reading
    def step(self, ch: str) -> LatexState | None:
        """The state after ``ch``, or None when the grammar refuses ``ch`` here."""
        mode = self.mode
        if mode == TEXT:
            return self._text(ch)
        if mode == COMMENT:
            return LatexState(self.stack, self.cost) if ch == "\n" else self
        if mode == ESCAPE:
            if _is_letter(ch):
                return LatexState(self.stack, self.cost, WORD, ch)
            return LatexState(self.stack, self.cost)  # an escaped symbol: \{ \$ \\ \, ...
        if mode == WORD:
            word = self.word
            if word in ("begin", "end"):
                if ch != "{":
                    return None
                if word == "begin":
                    return LatexState(self.stack, self.cost, BEGIN_NAME, "")
                return LatexState(self.stack, self.cost, END_NAME) if self.top_is_env else None
            if _is_letter(ch):
                if word + ch == "end" and not self.top_is_env:
                    return None  # \end with nothing to end
                return LatexState(self.stack, self.cost, WORD, (word + ch)[:8])
            return LatexState(self.stack, self.cost)._text(ch)
        if mode == BEGIN_NAME:
            name = self.word
            if name.endswith("*"):
                return self._push(name) if ch == "}" else None
            if _is_letter(ch) or (ch == "*" and name):
                return LatexState(self.stack, self.cost, BEGIN_NAME, name + ch)
            return self._push(name) if ch == "}" and name else None
        # END_NAME
        name = self.top
        if self.matched < len(name):
            if ch != name[self.matched]:
                return None
            return LatexState(self.stack, self.cost, END_NAME, "", self.matched + 1)
        return self._pop() if ch == "}" else None

    def _text(self, ch: str) -> LatexState | None:
        if ch == "\\":
            return LatexState(self.stack, self.cost, ESCAPE)
        if ch == "{":
            return self._push(BRACE)
        if ch == "}":
            return self._pop() if self.top == BRACE else None
        if ch == "$":
            if self.top == MATH:
                return self._pop()
            return None if MATH in self.stack else self._push(MATH)
        if ch == "%":
            return LatexState(self.stack, self.cost, COMMENT)
        return self if self.mode == TEXT else LatexState(self.stack, self.cost)

    def read(self, text: str) -> LatexState | None:
        state: LatexState | None = self
        for ch in text:
            state = state.step(ch)
            if state is None:
                return None
        return state

    def signature(self) -> tuple:
        """What the next token's mask depends on, besides the slack."""
        if self.mode == WORD:
            word = self.word if "begin".startswith(self.word) or "end".startswith(self.word) else "*"
        elif self.mode == BEGIN_NAME:
            word = ("empty" if not self.word else "star" if self.word.endswith("*") else "name")
        elif self.mode == END_NAME:
            word = self.top[self.matched] if self.matched < len(self.top) else "}"
        else:
            word = ""
        top = "env" if self.top_is_env else self.top
        return self.mode, word, top, MATH in self.stack


def _is_letter(ch: str) -> bool:
    return len(ch) == 1 and ch.isascii() and ch.isalpha()


def is_balanced(text: str) -> bool:
    """Whether ``text`` leaves no environment, brace, ``$`` or escape open (by this grammar)."""
    state = LatexState().read(text)
    return state is not None and state.closing() == 0


# --------------------------------------------------------------------------- per-tokenizer tables
# Token classes: each class behaves alike in every state (letters are refined where they differ).
_OTHER, _NEWLINE, _LBRACE, _RBRACE, _DOLLAR, _BACKSLASH, _PERCENT, _STAR, _LETTER, _CONT, _NEVER = range(11)
_REPRESENTATIVE = {_OTHER: "0", _NEWLINE: "\n", _LBRACE: "{", _RBRACE: "}", _DOLLAR: "$",
                   _BACKSLASH: "\\", _PERCENT: "%", _STAR: "*", _LETTER: "q"}
_SPECIAL_CHARS = {"\n": _NEWLINE, "{": _LBRACE, "}": _RBRACE, "$": _DOLLAR, "\\": _BACKSLASH,
                  "%": _PERCENT, "*": _STAR}
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
REQUIRED_CHARS = "{}$\\\n"


class LatexTables:
    """Per-tokenizer token classes and a cache of masks by state signature and slack."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        V = tokenizer.vocab_size
        classes = torch.full((V,), _NEVER, dtype=torch.long)
        self.chars: set[str] = set()
        self.letter_ids: dict[str, list[int]] = {}
        for i in range(V):
            value = tokenizer.byte_values[i]
            if i in (UNK_ID, BOS_ID, EOS_ID, PAD_ID):
                continue
            if value >= 0:
                if value < 0x80:
                    text = chr(value)
                elif 0x80 <= value <= 0xBF:
                    classes[i] = _CONT  # continuation byte: no character of its own
                    continue
                else:
                    classes[i] = _OTHER  # lead byte of a character outside the vocabulary
                    continue
            else:
                text = tokenizer.decode([i])
                if len(text) != 1:
                    continue
                self.chars.add(text)
            if _is_letter(text):
                classes[i] = _LETTER
                self.letter_ids.setdefault(text, []).append(i)
            else:
                classes[i] = _SPECIAL_CHARS.get(text, _OTHER)
        self.classes = classes
        self.chars_of_class = [1] * _CONT + [0, 0]
        self._masks: dict[tuple, Tensor] = {}
        self._lock = threading.Lock()

    def mask(self, state: LatexState, remaining: float) -> Tensor:
        """(V,) bool: tokens after which the text can still be closed within ``remaining`` characters.

        Over budget (the closing is longer than what remains) only tokens that shorten it are allowed.
        """
        now = state.closing()
        slack = remaining - now
        slack = -1 if slack < 0 else int(min(slack, _SLACK_CAP))
        key = (state.signature(), slack)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._build(state, now, slack)
            with self._lock:
                self._masks[key] = mask
        return mask

    def _build(self, state: LatexState, now: int, slack: int) -> Tensor:
        limit = now + max(slack, 0)  # the most characters the rest of the text may take

        def fits(ch: str) -> bool:
            after = state.step(ch)
            return after is not None and 1 + after.closing() <= limit

        ok = torch.zeros(_NEVER + 1, dtype=torch.bool)
        for cls, ch in _REPRESENTATIVE.items():
            ok[cls] = fits(ch)
        ok[_CONT] = True  # the sampler's UTF-8 masks decide about bytes inside a character
        mask = ok[self.classes]
        if state.mode in (ESCAPE, WORD, END_NAME):  # where letters differ from one another
            for letter in _LETTERS:
                ids = self.letter_ids.get(letter)
                if ids:
                    mask[ids] = fits(letter)
        return mask


latex_tables = per_tokenizer(LatexTables)


class LatexConstraint:
    """Keeps one sample's LaTeX closable in the characters it has left.

    With an ``environment`` (the prompt opened it), the form is complete when it is closed.
    """

    def __init__(self, state: LatexState, tables: LatexTables, environment: str | None) -> None:
        self.state = state
        self.tables = tables
        self.environment = environment
        self.remaining: float = float("inf")
        #: Whether the budget ever bound: from then on only the closing sequence was allowed.
        self.forced = False

    def set_remaining(self, chars: int) -> None:
        """Characters left before ``max_new_chars`` (told by the sampler before each step)."""
        self.remaining = chars

    def allowed(self) -> Tensor | None:
        if self.remaining <= self.state.closing():
            self.forced = True
        return self.tables.mask(self.state, self.remaining)

    def advance(self, token: int, text: str) -> None:
        for ch in text:
            state = self.state.step(ch)
            if state is None:
                raise ValueError(f"LaTeX constraint: {ch!r} is not allowed here (masking failed)")
            self.state = state

    def is_complete(self) -> bool:
        return self.environment is not None and not self.state.stack and self.state.mode == TEXT

    def must_continue(self) -> bool:
        """The text may not end while something is open."""
        return self.state.closing() > 0
