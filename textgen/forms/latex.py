"""LaTeX that compiles by construction: a reader of LaTeX as TeX reads it, and its masks.

:class:`LatexState` reads one character at a time and refuses (``step`` returns None) what would
make pdflatex stop, given the :class:`~textgen.forms.latex_vocab.Vocabulary` of the model's corpus
and preamble.  It knows the length of the shortest text that closes everything open
(:meth:`LatexState.closing`); :class:`LatexConstraint` allows, at each step, the characters after
which the text can still be closed within the characters left, so the text always ends closed.

What it tracks (a stack of frames, and where inside a token the text stands)::

    frames     env (theorem, proof, list, display math, math inside math, text) | { group |
               command argument | script group | $ | $$ | \\[ | \\(
    lexer      text | after "\\" | control word | \\begin{name | \\end{name | label/ref/cite name |
               after a "$" (inline or display?) | inside $$ after one "$" | after ^ or _ |
               a command's next {argument} | % comment (prompts only)

The rules (every table comes from the vocabulary, none from a particular corpus):

* control words and symbols only from the vocabulary, each only in the modes the corpus used it
  in (text, text inside a group, math, right after ``^``/``_``), with all its ``{...}`` arguments,
  written at once (no space, no ``[`` options: ``[`` never follows a command);
* math mode: ``$``, ``$$``, ``\\[ \\]``, ``\\( \\)``, display environments and math environments
  inside math, ``\\text{...}`` and the other text-argument commands back to text; ``^`` and ``_``
  only in math, each at most once per base (``'`` counts as ``^``), always with their script;
  no blank line in math, in a group or in an argument; no prose in math (a word of letters and a
  space are never followed by a letter: sentences go in ``\\text{...}``);
* ``\\item`` only directly in a list, and a list's first thing is an ``\\item``; ``&`` only in
  an alignment environment, at most the corpus' number per row; ``\\\\`` only in environments
  with rows; ``\\label`` at most once per display row, names never repeated;
* theorem-like environments (the preamble's ``\\newtheorem``) only at the top level, so never
  nested; ``proof`` only right after one of them, once; each of them holds a few letters of text
  (``min_env_letters``) before its ``\\end``, so none is empty, and so does a section title
  (``min_title_letters``); sectioning only at the top level, with a
  plain title; environments only where the corpus opened them (lists no deeper than it did);
* ``\\begin{...}`` and ``\\end{...}`` never inside a group; ``\\end`` only for the innermost
  environment; ``$`` never closes across a group.

Masks depend on the state without its deeper frames (:meth:`LatexState.key`) and on the slack
(capped), and are cached per tokenizer and vocabulary in :class:`LatexTables`.

The kind (:data:`FORM_KIND`, a :class:`LatexKind`) reads the API's ``latex`` ``form`` object into a
:class:`LatexForm`; :func:`prepare_latex` prepares a piece of a longer document (:mod:`textgen.paper`).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from textgen.forms.base import FormError, PreparedForm
from textgen.forms.bibliography import bib_entries, read_bibliography
from textgen.forms.latex_vocab import (
    NAME_ARGUMENTS,
    PROOF_ENVS,
    SCRIPT_SHARE,
    SECTIONING,
    TEXT_ARGUMENT_COMMANDS,
    WIDEST_GLYPH_PT,
    Vocabulary,
    command_pt,
    glyph_pt,
)
from textgen.sampling import Constraint
from textgen.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharTokenizer

if TYPE_CHECKING:
    from textgen.export import LoadedModel

(TEXT, ESCAPE, WORD, ENV_NAME, END_NAME, NAME_ARG, DOLLAR, DOLLAR_CLOSE, SCRIPT, NEED_ARG,
 COMMENT) = range(11)
FREE, USED, PRIMED = 0, 1, 2  # a base's superscript / subscript
ITEM = "\\item"
TOP_TEXT_ONLY = frozenset({"footnote"})
"""Text-argument commands allowed only outside every group (a footnote in a footnote fails)."""
_INF = 10**9
_SLACK_CAP = 40  # no single character adds more to the closing than this
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
SENTENCE_ENDS = ".?!"
WORD_OPENERS = "$\\([{`"  # with letters and digits, what begins something new in text (LatexTables.word_starts)
DISPLAY_SENTENCE_END = "."  # in a display "!" is a factorial and "?" no sentence end
NEUTRAL_CHARS = ")]'\"`{}~"  # after a sentence end, these do not begin another
QUIET_COMMANDS = frozenset({"begin", "end", "item", "label", "noindent", "medskip", "smallskip", "bigskip", "par",
                            "newline"}) | SECTIONING  # structure, not words: they open no sentence
SPACED = -1  # LatexState.math_word after a word in math and a space
WIDE_LETTER_PT = glyph_pt("M")
COLUMN_GAP_PT = command_pt("quad")  # two \arraycolsep (5 pt each) between a matrix's columns


@dataclass(frozen=True)
class Frame:
    """One open thing; ``cost`` is the length of the text that closes it."""

    kind: str  # "env" | "brace" | "arg" | "script" | "math"
    name: str = ""  # environment, command, or "$" "$$" "\\[" "\\("
    math: bool = False  # whether its content is math
    cost: int = 1
    role: str = ""  # of an environment
    tabs: int = 0  # & in the current row
    flag: bool = False  # list: an \item came; display: a \label in this row; brace: a plain title
    after: int = 0  # arguments still owed after this one
    saved: tuple[int, int] = (FREE, FREE)  # script group: the base's scripts after it closes
    owed: int = 0  # theorem, proof, section title: letters of text it must still hold (anywhere in it) before it ends


@dataclass(frozen=True)
class Rules:
    """Rules a longer document (:mod:`textgen.paper`) adds to the form, for its pieces."""

    sentences: bool = False
    """The text ends only at a sentence end (``.``, ``?``, ``!``) outside math, so the closing
    sequence of a cut sentence ends it first; a theorem or proof never ends mid-sentence."""
    sections: bool = True
    """Sectioning commands may be written (the paper writes its own)."""
    labels: bool = True
    """``\\label`` may be written (not in an abstract)."""
    resolved_refs: bool = True
    """``\\ref`` completes only to labels already defined (off: only to measure what it costs)."""
    known_cites: bool = True
    """``\\cite`` completes only to the bibliography's keys (off: only to measure what it costs)."""
    bounded_width: bool = True
    """Formulas stay narrower than the estimate's limits (off: only to measure what it costs)."""


@dataclass(frozen=True)
class LatexState:
    """An immutable reading position."""

    vocab: LatexGrammar
    stack: tuple[Frame, ...] = ()
    cost: int = 0
    mode: int = TEXT
    word: str = ""
    matched: int = 0
    sup: int = FREE
    sub: int = FREE
    script: str = ""  # "^" or "_" while the script token is being read
    blank: bool = True  # the current line holds only spaces so far
    after_cs: bool = False  # a command came and only spaces since: "[" would be its option
    proof_ok: bool = False  # a theorem just closed: a proof may follow
    closed_math: bool = False  # the last character closed inline math: "$" now would read as "$$"
    need: int = 0  # NEED_ARG: arguments owed
    kind: str = ""  # NAME_ARG: "label" | "ref" | "cite"
    labels: frozenset[str] = frozenset()
    math_word: int = 0  # math: letters of the word just written (capped), or SPACED after it and a space
    writing: bool = False  # the model writes (not a prompt being read): references, citations, widths bound
    rules: Rules = Rules()
    open_sentence: bool = False  # text was written since the last sentence end
    width: int = 0  # estimated points of the formula (or display row) being written; 0 outside math

    # ----------------------------------------------------------------- what is open
    @property
    def top(self) -> Frame | None:
        return self.stack[-1] if self.stack else None

    @property
    def math(self) -> bool:
        return bool(self.stack) and self.stack[-1].math

    def key(self) -> tuple:
        """What the next character's fate depends on (the deeper frames and the cost do not, except
        the letters the outermost environment still owes, which every letter pays)."""
        depth = sum(1 for f in self.stack if f.role == "list")
        owed = self.stack[0].owed if self.stack else 0
        return (self.mode, self.word, self.matched, self.top, self.sup, self.sub, self.script, self.blank,
                self.after_cs, self.proof_ok, self.closed_math, self.need, self.kind, not self.stack, depth,
                self.math_word, owed, self.writing, self.rules, self.vocab.sentence_open(self),
                self.vocab.room(self), self.vocab.shortest_label(self), self.vocab.scripted(self))

    @property
    def at_env_level(self) -> bool:
        """Text directly in an environment or at the top level (not in a group, not in math)."""
        top = self.top
        return top is None or (top.kind == "env" and not top.math)

    @property
    def needs_item(self) -> bool:
        top = self.top
        return top is not None and top.role == "list" and not top.flag

    def text_mode(self) -> str:
        if self.script:
            return "script"
        if self.math:
            return "math"
        return "text" if self.at_env_level else "group"

    # ----------------------------------------------------------------- frames
    def _push(self, frame: Frame, **changes) -> LatexState:
        return replace(self, stack=self.stack + (frame,), cost=self.cost + frame.cost, mode=TEXT, word="",
                       matched=0, sup=FREE, sub=FREE, script="", need=0, kind="", **changes)

    def _pop(self, **changes) -> LatexState:
        frame = self.stack[-1]
        return replace(self, stack=self.stack[:-1], cost=self.cost - frame.cost, mode=TEXT, word="",
                       matched=0, script="", need=0, kind="", **changes)

    def _retop(self, **changes) -> LatexState:
        """The state with the top frame changed (its cost kept in step)."""
        return self._reframe(len(self.stack) - 1, **changes)

    def _reframe(self, index: int, **changes) -> LatexState:
        """The state with frame ``index`` changed (its cost kept in step)."""
        old = self.stack[index]
        new = replace(old, **changes)
        stack = self.stack[:index] + (new,) + self.stack[index + 1:]
        return replace(self, stack=stack, cost=self.cost - old.cost + new.cost)

    # ----------------------------------------------------------------- closing
    def closing(self) -> int:
        """Length of the shortest text that leaves nothing open (0: the text may end here)."""
        return self.cost + self.vocab.local_closing(self) + self.vocab.sentence_open(self)

    # ----------------------------------------------------------------- reading
    def step(self, ch: str) -> LatexState | None:
        """The state after ``ch``, or None when ``ch`` is not allowed here."""
        return self.vocab.step(self, ch)

    def read(self, text: str) -> LatexState | None:
        state: LatexState | None = self
        for ch in text:
            state = state.step(ch)
            if state is None:
                return None
        return state


class LatexGrammar:
    """The rules of :mod:`textgen.forms.latex` over one vocabulary (stateless; shared)."""

    def __init__(self, vocab: Vocabulary, cite_keys: frozenset[str] = frozenset()) -> None:
        self.vocab = vocab
        self.cite_keys = frozenset(cite_keys)
        """What ``\\cite{`` completes to while writing (the export's bibliography); none: no citation."""
        self.commands = vocab.commands
        self.envs = vocab.environments
        self.chars = {mode: frozenset(chars) for mode, chars in vocab.chars.items()}
        self.chars["group"] = self.chars.get("text", frozenset()) - {"\n"}
        self.name_chars = {kind: frozenset(chars) for kind, chars in vocab.name_chars.items()}
        # a reference names a label, a citation a key of the bibliography: their characters too
        self.name_chars["ref"] = self.name_chars.get("ref", frozenset()) | self.name_chars.get("label", frozenset())
        if self.cite_keys:
            self.name_chars["cite"] = self.name_chars.get("cite", frozenset()) | frozenset("".join(self.cite_keys))
        self.max_list_depth = vocab.max_list_depth
        self.min_env_letters = vocab.min_env_letters
        self.math_word_letters = vocab.math_word_letters
        self.min_title_letters = vocab.min_title_letters
        self.script_pt = max((max(1, int(glyph_pt(ch) * SCRIPT_SHARE)) for ch in self.chars.get("script", ())), default=0)
        """Room a one-character script needs (the widest, so that any of them fits)."""
        self._names_cache: dict[tuple, tuple[tuple[str, int], ...]] = {}
        self._lock = threading.Lock()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def start(self, labels: frozenset[str] = frozenset(), proof_ok: bool = False, rules: Rules = Rules()) -> LatexState:
        """The state at the start of a document body (``proof_ok``: as if a theorem just closed)."""
        return LatexState(self, labels=frozenset(labels), proof_ok=proof_ok, rules=rules)

    # ----------------------------------------------------------------- what the model may name
    def shortest_label(self, s: LatexState) -> int:
        """Length of the shortest label defined so far (0: none), what a reference owes."""
        return min(map(len, s.labels), default=0) if s.writing else 0

    def name_choices(self, s: LatexState) -> frozenset[str] | None:
        """The names a ``\\ref``/``\\cite`` argument may complete to while writing; None: free."""
        if not s.writing or s.kind not in ("ref", "cite"):
            return None
        if not (s.rules.resolved_refs if s.kind == "ref" else s.rules.known_cites):
            return None
        names = s.labels if s.kind == "ref" else self.cite_keys
        if not any(name.startswith(s.word) for name in names):
            return None  # a prompt began a name that exists nowhere: it is the prompt's
        return names

    # ----------------------------------------------------------------- how wide a formula is
    def formula_limit(self, s: LatexState) -> int | None:
        """The widest the formula being written may get (inline or display), or None outside math."""
        outer = next((f for f in s.stack if f.math), None)
        if outer is None:
            return None
        inline = outer.kind == "math" and outer.name in ("$", "\\(")
        return self.vocab.inline_width_pt if inline else self.vocab.display_width_pt

    def command_pt(self, name: str) -> int:
        """:func:`~textgen.forms.latex_vocab.command_pt`, and a command with arguments at least a
        letter wide (an argument is never empty), so a full formula opens none."""
        entry = self.commands.get(name)
        if entry and entry["args"] and name not in NAME_ARGUMENTS:
            return max(command_pt(name), WIDE_LETTER_PT)
        return command_pt(name)

    @staticmethod
    def scripted(s: LatexState) -> bool:
        """Whether what is written now is a sub- or superscript (narrower), however deep in it."""
        return s.mode == SCRIPT or any(f.kind == "script" for f in s.stack)

    def room(self, s: LatexState) -> int:
        """Points the formula may still grow by while writing (capped at the widest glyph)."""
        limit = self.formula_limit(s) if s.writing and s.rules.bounded_width else None
        if limit is None:
            return WIDEST_GLYPH_PT
        return max(0, min(WIDEST_GLYPH_PT, limit - s.width))

    # ----------------------------------------------------------------- what may be written
    def env_letters(self, name: str) -> int:
        """Letters of text the environment must hold before its ``\\end`` (0: it may be empty)."""
        return self.min_env_letters if self.envs[name]["role"] in ("theorem", "proof") else 0

    def env_cost(self, name: str) -> int:
        """Length of the shortest text that closes the environment just opened."""
        role = self.envs[name]["role"]
        return len("\\end{}") + len(name) + (len(ITEM) if role == "list" else 0) + self.env_letters(name)

    def can_begin(self, s: LatexState, name: str) -> bool:
        entry = self.envs.get(name)
        if entry is None:
            return False
        role, parents, top = entry["role"], entry["parents"], s.top
        if s.math:
            return role == "inner" and "math" in parents and top.kind in ("math", "env") and not s.script
        if not s.at_env_level or s.needs_item:
            return False
        parent = "top" if top is None else top.role
        if parent not in parents:
            return False
        if role == "theorem":
            return top is None
        if role == "proof":
            return top is None and s.proof_ok
        if role == "list":
            return sum(1 for f in s.stack if f.role == "list") < self.max_list_depth
        return role in ("display", "text")

    def names(self, s: LatexState) -> tuple[tuple[str, int], ...]:
        """(name, what writing it owes after its last letter) for every control sequence allowed here."""
        depth = sum(1 for f in s.stack if f.role == "list")
        key = (s.top, s.script, s.math, not s.stack, depth, s.proof_ok, s.writing, s.rules, self.sentence_open(s), self.room(s), self.shortest_label(s), self.formula_limit(s) is None,
               self.scripted(s))
        cached = self._names_cache.get(key)
        if cached is None:
            cached = tuple(sorted(self._names(s)))
            with self._lock:
                self._names_cache[key] = cached
        return cached

    def _names(self, s: LatexState):
        room = self.room(s)
        in_formula = self.formula_limit(s) is not None
        for name, owed in self._all_names(s):
            if in_formula and self.command_pt(name) > room:
                continue
            yield name, owed

    def _all_names(self, s: LatexState):
        mode = s.text_mode()
        top = s.top
        if s.needs_item:
            yield "item", -len(ITEM)
            return
        if top is not None and top.kind == "brace" and top.flag:
            return  # a plain title
        if mode == "script":
            for name, entry in self.commands.items():
                if "script" in entry["modes"] and entry["args"] == 0 and _plain_name(name):
                    yield name, 0
            return
        envs = [e for e in self.envs if self.can_begin(s, e)]
        if envs:
            yield "begin", 1 + min(len(e) + 1 + self.env_cost(e) for e in envs)
        if top is not None and top.kind == "env" and not (top.role == "list" and not top.flag) and not top.owed \
                and not (self.sentence_open(s) and top.role in ("theorem", "proof")):
            yield "end", 1 + len(top.name) + 1 - top.cost
        if top is not None and top.role == "list" and not s.math:
            yield "item", 0
        if s.math and top is not None and top.kind == "env" and self.envs[top.name]["rows"]:
            yield "\\", 0
        for name, entry in self.commands.items():
            if not _plain_name(name) or name in ("item", "\\"):
                continue
            if name in NAME_ARGUMENTS:
                if self._name_allowed(s, name, entry):
                    yield name, self._name_owed(s, NAME_ARGUMENTS[name])
                continue
            if name in SECTIONING:
                if top is None and "text" in entry["modes"] and (s.rules.sections or not s.writing):
                    yield name, 2 + self.min_title_letters  # "{", its letters, "}"
                continue
            if name in TOP_TEXT_ONLY and not s.at_env_level:
                continue
            if mode in entry["modes"] or (mode == "group" and "text" in entry["modes"]
                                          and name in TEXT_ARGUMENT_COMMANDS and name not in TOP_TEXT_ONLY):
                yield name, 2 * entry["args"]

    def _name_owed(self, s: LatexState, kind: str) -> int:
        """What writing a name command owes after its last letter: ``{``, the name, ``}``."""
        if s.writing and kind == "ref" and s.rules.resolved_refs:
            return 2 + self.shortest_label(s)
        if s.writing and kind == "cite" and s.rules.known_cites:
            return 2 + min(map(len, self.cite_keys))
        return 3  # "{x}" (a label needs one new character: two would need 60 labels)

    def sentence_open(self, s: LatexState) -> bool:
        """Whether, writing under :attr:`Rules.sentences`, a sentence must end before the text does."""
        return s.writing and s.rules.sentences and s.open_sentence

    def _name_allowed(self, s: LatexState, name: str, entry: dict) -> bool:
        if not self.name_chars.get(NAME_ARGUMENTS[name]):
            return False
        if s.writing and s.rules.resolved_refs and NAME_ARGUMENTS[name] == "ref" and not s.labels:
            return False  # nothing to refer to yet
        if s.writing and s.rules.known_cites and NAME_ARGUMENTS[name] == "cite" and not self.cite_keys:
            return False  # no bibliography
        top = s.top
        if name == "label":
            if s.writing and not s.rules.labels:
                return False
            if s.writing and not s.math and not (top is not None and top.role == "theorem"):
                return False  # written labels name what carries a number: theorems and displays
            if s.math:
                return (top.kind == "env" and top.role == "display" and self.envs[top.name]["labels"]
                        and not top.flag)
            return s.at_env_level
        mode = "math" if s.math else "text"
        return mode in entry["modes"]

    def label_extension(self, labels: frozenset[str], name: str) -> int:
        """Characters to add to ``name`` before it is a new label (1 for an empty name)."""
        chars = sorted(self.name_chars.get("label", ()))
        if name and name not in labels:
            return 0
        for extra in chars:
            if name + extra not in labels:
                return 1
        return 2  # every one-character extension is taken; two always suffice in practice

    # ----------------------------------------------------------------- closing
    def local_closing(self, s: LatexState) -> int:
        mode = s.mode
        if mode == TEXT:
            return 0
        if mode == COMMENT:
            return 1
        if mode in (ESCAPE, WORD):
            # a control word without arguments ends at a non-letter: when letters are owed next, a space first
            spacer = 1 if len(s.stack) == 1 and s.stack[0].owed and not s.math else 0
            return min((len(name) - len(s.word) + owed + (spacer if owed == 0 and name.isalpha() else 0)
                        for name, owed in self.names(s) if name.startswith(s.word)), default=_INF)
        if mode == ENV_NAME:
            envs = [e for e in self.envs if e.startswith(s.word) and self.can_begin(s, e)]
            return min((len(e) - len(s.word) + 1 + self.env_cost(e) for e in envs), default=_INF)
        if mode == END_NAME:
            return len(s.top.name) - s.matched + 1 - s.top.cost
        if mode == NAME_ARG:
            if s.kind == "label":
                return 1 + self.label_extension(s.labels, s.word)
            choices = self.name_choices(s)
            if choices is not None:
                return 1 + min(len(n) - len(s.word) for n in choices if n.startswith(s.word))
            return 1 + (0 if s.word else 1)
        if mode == DOLLAR:
            return 2
        if mode == DOLLAR_CLOSE:
            return -1
        if mode == SCRIPT:  # one script character, or "{}" when none is left room for
            return 1 if self.chars.get("script") and self.room(s) >= self.script_pt else 2
        return 2 * s.need  # NEED_ARG

    # ----------------------------------------------------------------- reading
    def step(self, s: LatexState, ch: str) -> LatexState | None:
        after = self._read(s, ch)
        if after is None:
            return None
        after = self._sentence(s, after, ch)
        after = self._measure(s, after, ch)
        if after is None:
            return None
        formula = after.math and after.mode == TEXT and s.mode in (TEXT, DOLLAR)  # a character of the formula itself
        if not (formula or after.math_word):
            return after
        return self._math_words(s, after, ch, formula)

    def _sentence(self, s: LatexState, after: LatexState, ch: str) -> LatexState:
        """Whether a sentence is open after ``ch``: text, a formula (inline, or anything in a
        display), a reference or a command that prints opens one; ``.``/``?``/``!`` in text directly in an environment (or directly in a
        display, only ``.``) ends it; a section title is no sentence."""
        top = s.top
        if top is not None and top.kind == "brace" and top.flag:
            return after
        open_ = after.open_sentence
        if s.mode == NAME_ARG and ch == "}" and s.kind in ("ref", "cite"):
            open_ = True
        elif s.mode == WORD and after.mode != WORD and not s.math and s.word not in QUIET_COMMANDS:
            open_ = True
        elif s.mode == TEXT and ch == "$" and not s.math:
            open_ = True
        if after.mode == TEXT and s.mode in (TEXT, DOLLAR, WORD):
            inner = after.top
            if (ch in SENTENCE_ENDS and not after.math and after.at_env_level) or (
                    ch == DISPLAY_SENTENCE_END and inner is not None and ((inner.kind == "env" and inner.role == "display")
                                                    or (inner.kind == "math" and inner.name in ("$$", "\\[")))):
                open_ = False
            elif not ch.isspace() and ch not in NEUTRAL_CHARS and (not after.math or self._displayed(after)):
                open_ = True  # a display is part of its sentence: it ends with the period, or text follows
        return after if open_ == after.open_sentence else replace(after, open_sentence=open_)

    @staticmethod
    def _displayed(s: LatexState) -> bool:
        """Whether the formula being written is displayed (not inline)."""
        outer = next((f for f in s.stack if f.math), None)
        return outer is not None and not (outer.kind == "math" and outer.name in ("$", "\\("))

    def _measure(self, s: LatexState, after: LatexState, ch: str) -> LatexState | None:
        """``after`` with the width of the formula it writes (None when, writing, it gets too wide)."""
        limit = self.formula_limit(after)
        if limit is None:
            return replace(after, width=0) if after.width else after
        added = 0
        if s.mode == WORD and after.mode != WORD:
            added += self.command_pt(s.word)
        elif s.mode == ESCAPE and ch not in _LETTERS:
            if ch == "\\" and after.top is not None and after.top.role == "display":
                return replace(after, width=0)  # a new row of the display
            added += command_pt(ch)
        if after.mode == TEXT and ch not in "{}$\\^_&" and (s.mode in (TEXT, DOLLAR, SCRIPT) or s.mode == WORD):
            added += glyph_pt(ch) if after.math or ch != " " else glyph_pt("a") // 2
        if ch == "&" and s.mode == TEXT and after.top is not None and after.top.role == "inner":
            added += COLUMN_GAP_PT  # a matrix column: the gap between columns
        if not added:
            return after
        if s.mode == SCRIPT or self.scripted(after):
            added = max(1, int(added * SCRIPT_SHARE))
        width = after.width + added
        if after.writing and after.rules.bounded_width and width > limit:
            return None
        return replace(after, width=width)

    def _math_words(self, s: LatexState, after: LatexState, ch: str, formula: bool) -> LatexState | None:
        """No prose in math: after a word (``math_word_letters`` letters or more) and a space, no letter."""
        word = 0
        if formula:
            if ch in _LETTERS:
                if s.math_word == SPACED:
                    return None
                word = min(s.math_word + 1, self.math_word_letters)
            elif ch in " \n":
                word = SPACED if s.math_word >= self.math_word_letters else 0
        return replace(after, math_word=word)

    def _read(self, s: LatexState, ch: str) -> LatexState | None:
        mode = s.mode
        if mode == TEXT:
            return self._text(s, ch)
        if mode == ESCAPE:
            return self._escape(s, ch)
        if mode == WORD:
            return self._word(s, ch)
        if mode == ENV_NAME:
            return self._env_name(s, ch)
        if mode == END_NAME:
            return self._end_name(s, ch)
        if mode == NAME_ARG:
            return self._name_arg(s, ch)
        if mode == DOLLAR:
            if ch == "$":
                if not s.at_env_level or s.needs_item:
                    return None
                return s._push(Frame("math", "$$", True, 2), blank=False, after_cs=False)
            return self._text(s._push(Frame("math", "$", True, 1), blank=False, after_cs=False), ch)
        if mode == DOLLAR_CLOSE:
            return s._pop(blank=False) if ch == "$" else None
        if mode == SCRIPT:
            return self._script(s, ch)
        if mode == NEED_ARG:
            if ch != "{":
                return None
            return self._open_arg(replace(s, mode=TEXT), s.word, s.need)
        # COMMENT
        return replace(s, mode=TEXT, blank=True) if ch == "\n" else s

    def _text(self, s: LatexState, ch: str) -> LatexState | None:
        top, math = s.top, s.math
        if s.needs_item and ch not in " \n\\":
            return None
        if ch == " ":
            if " " not in self.chars.get(s.text_mode(), ()):
                return None
            return replace(s, closed_math=False) if s.closed_math else s
        if ch == "\n":
            if s.blank and (math or not s.at_env_level):
                return None  # a paragraph inside math, a group or an argument
            if top is not None and top.kind == "brace" and top.flag:
                return None
            return replace(s, blank=True, closed_math=False)
        if s.after_cs and ch == "[":
            return None
        if ch == "$" and s.closed_math:
            return None  # "$a$$b$" is two formulas to TeX, but a display to every other reader
        base = s
        if s.blank or s.after_cs or s.proof_ok or s.closed_math:
            base = replace(s, blank=False, after_cs=False, proof_ok=False, closed_math=False)
        if ch == "\\":
            return replace(base, mode=ESCAPE, word="", proof_ok=s.proof_ok)
        if ch == "{":
            if top is not None and top.kind == "brace" and top.flag:
                return None
            return base._push(Frame("brace", "", math, 1))
        if ch == "}":
            if top is None or top.kind not in ("brace", "arg", "script") or top.owed:
                return None
            if top.kind == "script":
                return base._pop(sup=top.saved[0], sub=top.saved[1])
            if top.kind == "arg" and top.after:
                return replace(base._pop(), mode=NEED_ARG, word=top.name, need=top.after)
            return base._pop(sup=FREE, sub=FREE, after_cs=top.kind == "arg")
        if ch == "$":
            if math:
                if top.kind != "math" or top.name not in ("$", "$$"):
                    return None
                return base._pop(closed_math=True) if top.name == "$" else replace(base, mode=DOLLAR_CLOSE)
            if top is not None and top.kind == "brace" and top.flag:
                return None
            return replace(base, mode=DOLLAR)
        if ch == "%":
            return replace(base, mode=COMMENT) if s.at_env_level else None
        if math:
            return self._math_char(base, ch)
        if ch in "^_&#~":
            return base if ch == "~" and "~" in self.chars.get("text", ()) else None
        if ch not in self.chars.get(s.text_mode(), ()):
            return None
        if s.stack and s.stack[0].owed and ch in _LETTERS:  # theorems, proofs and titles owe, all at the top level
            first = base.stack[0]
            return base._reframe(0, owed=first.owed - 1, cost=first.cost - 1)
        return base

    def _math_char(self, s: LatexState, ch: str) -> LatexState | None:
        top = s.top
        if ch in "^_":
            if ch == "^" and s.sup == USED or ch == "_" and s.sub == USED:
                return None
            sup = USED if s.sup == PRIMED else s.sup  # a prime not followed by ^ is a superscript
            if ch == "^" and s.sup == PRIMED:
                sup = PRIMED
            return replace(s, mode=SCRIPT, script=ch, sup=sup)
        if ch == "'":
            if s.sup == USED or "'" not in self.chars.get("math", ()):
                return None
            return replace(s, sup=PRIMED)
        if ch == "&":
            if top.kind != "env" or top.tabs >= self.envs[top.name]["max_tabs"]:
                return None
            return replace(s._retop(tabs=top.tabs + 1), sup=FREE, sub=FREE)
        if ch in "#%" or ch not in self.chars.get("math", ()):
            return None
        if s.sup == PRIMED:
            s = replace(s, sup=USED)
        return replace(s, sup=FREE, sub=FREE)

    def _script(self, s: LatexState, ch: str) -> LatexState | None:
        if ch == " ":
            return s
        if ch == "{":
            saved = (USED, s.sub) if s.script == "^" else (s.sup, USED)
            return s._push(Frame("script", s.script, True, 1, saved=saved))
        if ch == "\\":
            return replace(s, mode=ESCAPE, word="")
        if ch in self.chars.get("script", ()):
            return self._script_done(s)
        return None

    def _script_done(self, s: LatexState) -> LatexState:
        if s.script == "^":
            return replace(s, mode=TEXT, script="", sup=USED, word="")
        return replace(s, mode=TEXT, script="", sub=USED, word="")

    def _escape(self, s: LatexState, ch: str) -> LatexState | None:
        if ch in _LETTERS:
            if not any(name.startswith(ch) for name, _ in self.names(s)):
                return None
            return replace(s, mode=WORD, word=ch)
        return self._symbol(s, ch)

    def _symbol(self, s: LatexState, ch: str) -> LatexState | None:
        """A control symbol ``\\ch``."""
        if not any(name == ch for name, _ in self.names(s)):
            return None
        after = replace(s, mode=TEXT, word="", after_cs=True, blank=False, proof_ok=False)
        if s.script:
            return self._script_done(after)
        if ch == "\\":
            top = s.top
            return replace(after._retop(tabs=0, flag=False), sup=FREE, sub=FREE) if top.role == "display" \
                else replace(after._retop(tabs=0), sup=FREE, sub=FREE)
        if s.math:
            return replace(after, sup=FREE, sub=FREE)
        return after

    def _word(self, s: LatexState, ch: str) -> LatexState | None:
        word = s.word
        if ch in _LETTERS:
            longer = word + ch
            if not any(name.startswith(longer) for name, _ in self.names(s)):
                return None
            return replace(s, word=longer)
        if not any(name == word for name, _ in self.names(s)):
            return None
        if word in ("begin", "end"):
            if ch != "{":
                return None
            if word == "begin":
                return replace(s, mode=ENV_NAME, word="")
            return replace(s, mode=END_NAME, word="", matched=0, proof_ok=False)
        if word in NAME_ARGUMENTS:
            if ch != "{":
                return None
            state = s
            if word == "label" and s.math:
                state = s._retop(flag=True)
            return replace(state, mode=NAME_ARG, word="", kind=NAME_ARGUMENTS[word], proof_ok=False)
        after = replace(s, mode=TEXT, word="", after_cs=True, proof_ok=False)
        if s.script:
            return self._text(self._script_done(after), ch)
        if word == "item":
            top = after.top
            if not top.flag:
                after = after._retop(flag=True, cost=top.cost - len(ITEM))
            return self._text(after, ch)
        args = 1 if word in SECTIONING else self.commands[word]["args"]
        if s.math:
            after = replace(after, sup=FREE, sub=FREE)
        if args:
            if ch != "{":
                return None
            return self._open_arg(after, word, args)
        return self._text(after, ch)

    def _open_arg(self, s: LatexState, name: str, args: int) -> LatexState:
        """Push the frame of ``name``'s next argument (``args`` arguments owed, this one included)."""
        if name in SECTIONING:
            letters = self.min_title_letters
            return s._push(Frame("brace", name, False, 1 + letters, flag=True, owed=letters), after_cs=False)
        math = s.math and name not in TEXT_ARGUMENT_COMMANDS
        return s._push(Frame("arg", name, math, 1 + 2 * (args - 1), after=args - 1), after_cs=False)

    def _env_name(self, s: LatexState, ch: str) -> LatexState | None:
        if ch == "}":
            if not self.can_begin(s, s.word):
                return None
            name = s.word
            entry = self.envs[name]
            math = entry["role"] in ("display", "inner")
            frame = Frame("env", name, math, self.env_cost(name), role=entry["role"], owed=self.env_letters(name))
            return s._push(frame, after_cs=True, blank=False, proof_ok=False)
        longer = s.word + ch
        if not any(e.startswith(longer) and self.can_begin(s, e) for e in self.envs):
            return None
        return replace(s, word=longer)

    def _end_name(self, s: LatexState, ch: str) -> LatexState | None:
        name = s.top.name
        if s.matched < len(name):
            return replace(s, matched=s.matched + 1) if ch == name[s.matched] else None
        if ch != "}":
            return None
        closed = s.top
        after = s._pop(blank=False, after_cs=False, proof_ok=closed.role == "theorem" and len(s.stack) == 1)
        if after.math:
            after = replace(after, sup=FREE, sub=FREE)
        return after

    def _name_arg(self, s: LatexState, ch: str) -> LatexState | None:
        choices = self.name_choices(s)
        if choices is not None:
            if ch == "}":
                if s.word not in choices:
                    return None
                return replace(s, mode=TEXT, word="", kind="", after_cs=False)
            longer = s.word + ch
            return replace(s, word=longer) if any(n.startswith(longer) for n in choices) else None
        if ch == "}":
            if not s.word or (s.kind == "label" and s.word in s.labels):
                return None
            labels = s.labels | {s.word} if s.kind == "label" else s.labels
            return replace(s, mode=TEXT, word="", kind="", labels=labels, after_cs=False)
        if ch not in self.name_chars.get(s.kind, ()):
            return None
        return replace(s, word=s.word + ch)


def _plain_name(name: str) -> bool:
    """Names the grammar writes: control words, and control symbols other than the math brackets."""
    return name.isalpha() or (len(name) == 1 and name not in "[]()")


# --------------------------------------------------------------------------- per-tokenizer tables
class LatexTables:
    """Per tokenizer and vocabulary: which tokens are which characters, and a cache of masks."""

    def __init__(self, tokenizer: CharTokenizer, grammar: LatexGrammar) -> None:
        self.grammar = grammar
        self.vocab_size = tokenizer.vocab_size
        self.char_ids: dict[str, list[int]] = {}
        for i in range(tokenizer.vocab_size):
            if i in (UNK_ID, BOS_ID, EOS_ID, PAD_ID) or tokenizer.byte_values[i] >= 0:
                continue
            text = tokenizer.decode([i])
            if len(text) == 1 and text.isascii() and (text.isprintable() or text == "\n"):
                self.char_ids.setdefault(text, []).append(i)
        self.chars = sorted(self.char_ids)
        #: (V,) bool: what starts a word, a formula, a command, a bracket or a quote (letters, digits,
        #: ``$``, ``\\``, ``( [ { ` ``): nothing a sentence the budget closes may begin (it ended "((?").
        self.word_starts = torch.zeros(self.vocab_size, dtype=torch.bool)
        for ch, ids in self.char_ids.items():
            if ch.isalnum() or ch in WORD_OPENERS:
                self.word_starts[ids] = True
        self._masks: dict[tuple, Tensor] = {}
        self._lock = threading.Lock()

    def mask(self, state: LatexState, remaining: float) -> Tensor:
        """(V,) bool: characters after which the text can still close within ``remaining`` characters.

        When none fits (the prompt left more open than the budget can close), the characters that
        bring the closing down the most.
        """
        now = state.closing()
        slack = remaining - now
        slack = -1 if slack < 0 else int(min(slack, _SLACK_CAP))
        cacheable = state.mode != NAME_ARG or state.kind not in ("label", "ref")
        key = (state.key(), slack)
        mask = self._masks.get(key) if cacheable else None
        if mask is None:
            mask = self._build(state, now, slack)
            if cacheable:
                with self._lock:
                    self._masks[key] = mask
        return mask

    def _build(self, state: LatexState, now: int, slack: int) -> Tensor:
        limit = now + max(slack, 0)
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        options: list[tuple[int, str]] = []
        for ch in self.chars:
            if ch == "%":
                continue  # comments are read in prompts, never written
            after = state.step(ch)
            if after is None:
                continue
            closing = after.closing()
            if closing >= _INF:
                continue
            options.append((closing, ch))
        fits = [ch for closing, ch in options if 1 + closing <= limit]
        if not fits and options:
            best = min(closing for closing, _ in options)
            fits = [ch for closing, ch in options if closing == best]
        for ch in fits:
            mask[self.char_ids[ch]] = True
        return mask


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def latex_tables(tokenizer: CharTokenizer, folder: str | Path) -> tuple[LatexTables, str] | None:
    """The :class:`LatexTables` and preamble of the export in ``folder`` (whose tokenizer is
    ``tokenizer``), read on first use and then cached; None when the export has no LaTeX files."""
    with _TABLES_LOCK:
        per_tokenizer = _TABLES.setdefault(tokenizer, {})
        key = str(Path(folder).resolve())
        if key not in per_tokenizer:
            # the export's files (imported here: textgen.latex_export builds vocabularies, with this package)
            from textgen.latex_export import read_latex_files

            files = read_latex_files(folder)
            per_tokenizer[key] = None if files is None else (
                LatexTables(tokenizer, LatexGrammar(files[0], _writable_keys(tokenizer, read_bibliography(folder)))),
                files[1])
        return per_tokenizer[key]


def _writable_keys(tokenizer: CharTokenizer, bibliography: str | None) -> frozenset[str]:
    """The keys of ``bibliography`` whose every character the tokenizer writes."""
    if not bibliography:
        return frozenset()
    chars = {tokenizer.decode([i]) for i in range(tokenizer.vocab_size)}
    return frozenset(key for key in bib_entries(bibliography) if all(ch in chars for ch in key))


ENV_NAME = re.compile(r"^[A-Za-z]+\*?$")
_BALANCE_TOKEN = re.compile(r"%[^\n]*|\\begin\{([^}]*)\}|\\end\{([^}]*)\}|\\.|\$\$|[{}$]", re.S)


def is_balanced(text: str) -> bool:
    """Whether every environment, brace, ``$`` and ``$$`` of ``text`` closes, in order (a plain
    structural check, for text written without the form; comments and escapes skipped)."""
    stack: list[str] = []
    for match in _BALANCE_TOKEN.finditer(text):
        token, begin, end = match.group(0), match.group(1), match.group(2)
        if begin is not None:
            stack.append("env:" + begin)
        elif end is not None:
            if not stack or stack.pop() != "env:" + end:
                return False
        elif token in ("$", "$$"):
            if stack and stack[-1] == token:
                stack.pop()
            elif stack and stack[-1] in ("$", "$$"):
                return False  # "$$" closing "$", or the reverse
            else:
                stack.append(token)  # also math inside a group inside math: \text{ $x$ }
        elif token == "{":
            stack.append("{")
        elif token == "}":
            if not stack or stack.pop() != "{":
                return False
    return not stack and not (text.endswith("\\") and not text.endswith("\\\\"))


class LatexConstraint(Constraint):
    """Keeps one sample's LaTeX compilable and closable in the characters it has left.

    With an ``environment`` (the prompt opened it), the form is complete when it is closed.
    """

    def __init__(self, state: LatexState, tables: LatexTables, environment: str | None) -> None:
        self.state = state
        self.tables = tables
        self.environment = environment
        self.remaining: float = float("inf")
        #: Whether the budget ever bound: from then on only the closing sequence was allowed.
        self.forced = False
        self.written = 0
        self.sentence_after: int | None = None
        #: Past ``sentence_after`` characters a sentence ended: from then on only the closing is allowed.
        self.closing_sentence = False
        self.word_chars = 0
        self._last = ""

    def close_after_sentence(self, chars: int, word_chars: int = 0) -> None:
        """Once ``chars`` characters are written, close at the end of the next sentence (a ``.``,
        ``?`` or ``!`` then a space or a line break, in text directly in an environment or the
        document) rather than wherever ``max_new_chars`` runs out; the budget still bounds it.
        ``word_chars``: when no more than that many characters are left beyond the closing, no new
        word or formula starts, so the sentence the budget closes ends after a whole word."""
        self.sentence_after = chars
        self.word_chars = word_chars

    def set_remaining(self, chars: int) -> None:
        """Characters left before ``max_new_chars`` (told by the sampler before each step)."""
        self.remaining = chars

    def allowed(self) -> Tensor | None:
        if self.closing_sentence:
            return self.tables.mask(self.state, self.state.closing())
        closing = self.state.closing()
        if self.remaining <= closing:
            self.forced = True
        mask = self.tables.mask(self.state, self.remaining)
        state = self.state
        if (0 < self.remaining - closing <= self.word_chars and not self._last.isalnum() and state.mode == TEXT
                and not state.math):
            narrowed = mask & ~self.tables.word_starts
            if bool(narrowed.any()):
                return narrowed
        return mask

    def advance(self, token: int, text: str) -> None:
        for ch in text:
            state = self.state.step(ch)
            if state is None:
                raise ValueError(f"LaTeX constraint: {ch!r} is not allowed here (masking failed)")
            self.state = state
            self.written += 1
            if (self.sentence_after is not None and self.written > self.sentence_after and ch in " \n"
                    and self._last in SENTENCE_ENDS and state.mode == TEXT and state.at_env_level
                    and not (state.stack and state.stack[0].owed)):
                self.closing_sentence = True
            self._last = ch

    def is_complete(self) -> bool:
        if not self.state.stack and self.state.mode == TEXT:
            return self.environment is not None or (self.closing_sentence and not self.state.closing())
        return False

    def must_continue(self) -> bool:
        """The text may not end while something is open."""
        return self.state.closing() > 0


# --------------------------------------------------------------------------- the kind: the API's form object
@dataclass(frozen=True)
class LatexForm:
    """A validated LaTeX form; its API fields (and their metadata) are the API's ``LatexForm`` object.

    ``grammar`` (the model's LaTeX, which :meth:`LatexKind.check` reads with) and ``preamble`` come from
    the export, not from the request: their metadata ``api: False`` keeps them out of the API.
    """

    environment: str | None = field(default=None, metadata={"schema": {
        "type": "string", "examples": ["theorem", "lemma", "proof", "definition"],
        "description": "Write one such environment, balanced."}})
    kind: str = field(default="latex", metadata={"schema": {"const": "latex"}, "required": True})
    grammar: LatexGrammar | None = field(default=None, compare=False, repr=False, metadata={"api": False})
    preamble: str = field(default="", compare=False, repr=False, metadata={"api": False})
    """The preamble the text compiles with (the export's ``preamble.tex``)."""


def _parse(form: Mapping, loaded: LoadedModel) -> LatexForm:
    """The :class:`LatexForm` of the API object, the model's grammar and preamble filled in."""
    environment = form.get("environment")
    if environment is not None and (not isinstance(environment, str) or not ENV_NAME.match(environment)):
        raise FormError("form.environment", "`form.environment` must be null or a LaTeX environment name "
                                            f"(letters, then an optional '*'), got {environment!r}")
    found = latex_tables(loaded.tokenizer, loaded.path)
    if found is None:
        raise FormError("form.kind", f"model {loaded.name!r} cannot write LaTeX that compiles: its export has no "
                                     "latex.json and preamble.tex (train it on a LaTeX corpus with a preamble, or "
                                     "add them with python -m textgen.latex_export)")
    tables, preamble = found
    return LatexForm(environment, grammar=tables.grammar, preamble=preamble)


def _prepare(spec: LatexForm, loaded: LoadedModel, prompt: str, context: str = "",
             rules: Rules = Rules()) -> PreparedForm:
    """The LaTeX form ``spec`` after ``context`` and ``prompt`` (see :func:`prepare_latex`)."""
    environment = spec.environment
    tables = latex_tables(loaded.tokenizer, loaded.path)[0]
    grammar, vocab = tables.grammar, tables.grammar.vocab
    start = grammar.start(proof_ok=environment in PROOF_ENVS and not context, rules=rules)
    if context:
        start = start.read(context)
        if start is not None:
            start = replace(start, open_sentence=False)  # the piece's own sentences count
        if start is None or start.closing():
            raise FormError("context", "the context must be complete LaTeX of the model's vocabulary")
    if environment is not None and not grammar.can_begin(start, environment):
        usable = sorted(e for e in vocab.environments if grammar.can_begin(start, e))
        raise FormError("form.environment", f"`form.environment`: model {loaded.name!r} cannot open "
                                            f"{environment!r} at the top of a document (it can: {', '.join(usable)})")
    opening = f"\\begin{{{environment}}}\n" if environment else ""
    state = start.read(opening)
    for i, ch in enumerate(prompt):
        following = state.step(ch)
        if following is None:
            raise FormError("prompt", f"the prompt cannot be continued into LaTeX that compiles: {ch!r} at "
                                      f"character {i + 1} ({prompt[max(0, i - 20):i + 1]!r}) is not allowed there "
                                      f"by model {loaded.name!r}'s LaTeX vocabulary")
        state = following
    if environment and (not state.stack or state.stack[0].name != environment):
        raise FormError("prompt", f"the prompt already closes \\begin{{{environment}}}")
    state = replace(state, writing=True)  # from here the model writes: refs, cites, widths bound
    fed = opening + prompt
    return PreparedForm(context + fed, lambda: LatexConstraint(state, tables, environment), spec, echo=fed)


def prepare_latex(loaded: LoadedModel, environment: str | None = None, prompt: str = "",
                  context: str = "", rules: Rules = Rules()) -> PreparedForm:
    """The ``latex`` form for the next piece of a longer document.

    ``context`` is the document so far (complete LaTeX the form itself wrote): the model reads it
    before the opening, and the piece continues it -- its labels are taken, a proof may follow the
    theorem it ends with.  It is not part of ``echo``.  ``rules``: what a longer document adds
    (:class:`Rules`).
    """
    return _prepare(_parse({"kind": "latex", "environment": environment}, loaded), loaded, prompt, context, rules)


class LatexKind:
    """The ``latex`` kind (:class:`~textgen.forms.base.FormKind`): the ``LatexForm`` object.

    ``{"kind": "latex", "environment"?}``: the prompt fed is ``\\begin{environment}\\n + prompt``;
    the text is complete when that environment is closed.  When ``max_new_chars`` runs out, the
    sampler has already been steered into the shortest closing sequence, so the text ends balanced
    and never longer than ``max_new_chars`` -- unless the prompt alone leaves open more than
    ``max_new_chars`` characters can close, in which case it runs past by exactly that difference.
    """

    kinds = ("latex",)
    spec_class = LatexForm
    schema_title = "LatexForm"

    def schema_extras(self) -> dict[str, Any]:
        return {}

    def parse(self, form: Mapping, loaded: LoadedModel) -> LatexForm:
        return _parse(form, loaded)

    def prepare(self, spec: LatexForm, loaded: LoadedModel, prompt: str) -> PreparedForm:
        return _prepare(spec, loaded, prompt)

    def check(self, spec: LatexForm, text: str, prompt: str = "") -> str | None:
        """``prompt`` is the prepared prompt (``\\begin{environment}`` included), read by the form's own grammar."""
        whole = prompt + text
        state = spec.grammar.start(proof_ok=spec.environment in PROOF_ENVS).read(whole)
        if state is None:
            return "LaTeX the grammar refuses"
        if state.closing():
            return "LaTeX left open"
        if spec.environment and not whole.rstrip().endswith(f"\\end{{{spec.environment}}}"):
            return f"does not end with \\end{{{spec.environment}}}"
        return None


FORM_KIND = LatexKind()
