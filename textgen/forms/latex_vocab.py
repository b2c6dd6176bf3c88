"""The LaTeX a corpus speaks: control sequences, environments and where each may stand.

The ``latex`` form (:mod:`textgen.forms.latex`) only lets a model write what a :class:`Vocabulary`
allows, so that every text compiles.  A vocabulary is built from the training corpus and its
preamble (:mod:`textgen.data.latex_scan`, which also checks it with pdflatex) and stored in the
export as ``latex.json`` beside ``preamble.tex`` (:mod:`textgen.latex_export`).  This module holds
what the form reads: the vocabulary's tables and their format, and what LaTeX itself decides.

What the corpus decides (each entry needing ``min_count`` uses):

* **commands**: the control words and symbols used, with the modes they were used in (``text``,
  ``group`` -- text inside ``{...}`` --, ``math``, ``script`` -- right after ``^``/``_``) and their number of ``{...}`` arguments (the
  largest count that at least ``arg_share`` of the uses give);
* **characters** used in text, in math and as a one-character script;
* **environments**: the ones of a known kind (below) the corpus opens, with the places it opens
  them (``top``, inside a ``theorem``, ``proof``, ``list`` or ``text`` environment, or in ``math``),
  the most ``&`` per row and whether rows (``\\\\``) and ``\\label`` occur inside;
* **names**: the characters of ``\\label``/``\\ref``/``\\cite`` arguments.

What the preamble decides: the theorem-like environments (``\\newtheorem``).  What LaTeX itself
decides (the tables below, LaTeX and amsmath facts, nothing corpus-specific): which environments
are display math, math inside math, lists, text; which commands take text arguments; which are
sectioning; the constructs left out because they are languages of their own (``\\xymatrix``,
``\\left``/``\\right``, accents, ``\\limits`` ...) or belong to the preamble; and how wide a
formula's glyphs are, about.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "textgen-latex-vocabulary"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------- what LaTeX says
DISPLAY_ENVS = frozenset({
    "equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*",
    "eqnarray", "eqnarray*", "displaymath", "flalign", "flalign*",
})
"""Environments whose body is display math (opened from text)."""
INNER_MATH_ENVS = frozenset({
    "matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "smallmatrix", "cases", "aligned",
    "gathered", "split",
})
"""Environments opened inside math, math inside (none of them takes an argument)."""
LIST_ENVS = frozenset({"itemize", "enumerate"})
PROOF_ENVS = frozenset({"proof"})
TEXT_ENVS = frozenset({"center", "flushleft", "flushright", "quote", "quotation"})
TEXT_ARGUMENT_COMMANDS = frozenset({
    "text", "textrm", "textit", "textbf", "textsf", "texttt", "textup", "textsl", "textsc", "textnormal",
    "emph", "mbox", "hbox", "footnote",
})
"""Commands whose ``{...}`` arguments are text, also inside math."""
SECTIONING = frozenset({"part", "section", "subsection", "subsubsection", "paragraph", "subparagraph"})
"""Commands allowed only at the top level, outside every environment, with a plain-text argument."""
NAME_ARGUMENTS = {"label": "label", "ref": "ref", "eqref": "ref", "pageref": "ref", "cite": "cite"}
"""Commands whose one argument is a name (label/ref/cite characters only)."""
STRUCTURAL = frozenset({"begin", "end", "item", "\\", "[", "]", "(", ")"}) | SECTIONING | frozenset(NAME_ARGUMENTS)
"""Handled by the grammar itself, not by the mode tables."""
EXCLUDED = frozenset({
    # languages of their own
    "xymatrix", "ar", "xyoption", "hole", "vcenter", "left", "right", "middle", "big", "Big", "bigg", "Bigg",
    "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl", "Biggr", "limits", "nolimits", "not",
    "over", "atop", "choose", "above", "url", "href", "verb", "romannumeral", "number", "the",
    "rtwocell", "rrtwocell", "rruppertwocell", "rrlowertwocell", "ltwocell", "lltwocell", "uppertwocell",
    "lowertwocell", "compositemap", "twocell",
    # accents (they need a following character or group)
    "'", "\"", "`", "^", "~", "=", ".", "u", "v", "H", "c", "d", "b", "t", "r", "k", "i", "j",
    # the preamble and the document's frame
    "documentclass", "usepackage", "input", "include", "includeonly", "title", "author", "date",
    "maketitle", "tableofcontents", "bibliography", "bibliographystyle", "def", "let", "newcommand",
    "renewcommand", "providecommand", "newenvironment", "renewenvironment", "newtheorem", "theoremstyle",
    "setcounter", "addtocounter", "stepcounter", "newcounter", "phantomsection", "appendix", "nonumber",
    "notag", "tag", "linebreak", "pagebreak", "newpage", "clearpage", "intertext", "displaybreak",
    "DeclareMathOperator", "DeclareMathSymbol", "externaldocument", "numberwithin", "endinput",
    "newline", "par", "relax", "expandafter", "csname", "endcsname", "noexpand", "catcode", "string",
    "write", "immediate", "special", "hspace", "vspace", "kern", "hskip", "vskip", "raise", "lower",
    "hfill", "vfill", "rule", "footnotemark", "footnotetext", "marginpar", "index",
})
"""Never written: sub-languages, accents, the preamble's commands and the document's frame."""
SAFE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-:.+/")

# What a formula's glyphs measure, in whole points of Computer Modern at 10 pt, rounded up so that
# the estimate errs wide (relations and binary operators with the spaces TeX puts around them).
GLYPH_PT = {"letter": 6, "capital": 8, "digit": 5, "relation": 14, "binary": 13, "punctuation": 5,
            "delimiter": 4, "space": 0, "other": 6}
COMMAND_PT = {"arrow": 16, "long arrow": 26, "relation": 14, "binary": 13, "big operator": 16, "dots": 15,
              "greek": 7, "space": 4, "quad": 10, "qquad": 20, "zero": 0, "other": 9, "operator letter": 6}
REFERENCE_PT = {"ref": 15, "eqref": 20, "pageref": 10, "cite": 35}
"""What a reference prints ("1.2", "(1.2)", "[Ser55]") is as wide as this, about."""
WIDEST_GLYPH_PT = 40
"""No one character or command is estimated wider (a long operator name is cut to it)."""
SCRIPT_SHARE = 0.7  # a sub- or superscript's glyphs are this much narrower
RELATIONS = frozenset("= < > : ".split() + ["cong", "simeq", "sim", "subset", "subseteq", "supset", "supseteq",
                                            "leq", "geq", "le", "ge", "ne", "neq", "in", "ni", "notin", "equiv",
                                            "approx", "mid", "colon", "prec", "succ", "perp", "models", "vdash"])
BINARIES = frozenset("+ - * /".split() + ["otimes", "oplus", "times", "circ", "cdot", "cup", "cap", "wedge", "vee",
                                          "setminus", "amalg", "ast", "pm", "star", "bullet", "odot", "sqcup"])
BIG_OPERATORS = frozenset({"sum", "prod", "coprod", "bigoplus", "bigotimes", "bigcup", "bigcap", "bigwedge",
                           "bigvee", "bigsqcup", "colim", "lim", "varinjlim", "varprojlim", "int", "oint"})
GREEK = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
                   "iota", "kappa", "lambda", "mu", "nu", "xi", "pi", "varpi", "rho", "varrho", "sigma", "tau",
                   "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi",
                   "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "ell", "partial", "infty", "emptyset",
                   "nabla", "wp", "aleph", "hbar"})
ZERO_WIDTH = frozenset({"begin", "end", "label", "\\", "!", "displaystyle", "textstyle", "scriptstyle",
                        "nolimits", "limits"}) | frozenset({"frac", "dfrac", "tfrac", "sqrt", "overline",
                                                            "underline", "widetilde", "widehat", "bar", "hat",
                                                            "tilde", "mathop", "mathrel", "mathbin", "boxed"})


def glyph_pt(ch: str) -> int:
    """Estimated width of one character written in a formula."""
    if ch.isspace():
        return GLYPH_PT["space"]
    if ch in RELATIONS:
        return GLYPH_PT["relation"]
    if ch in BINARIES:
        return GLYPH_PT["binary"]
    if ch in ",;.!?":
        return GLYPH_PT["punctuation"]
    if ch in "()[]|'`":
        return GLYPH_PT["delimiter"]
    if ch.isdigit():
        return GLYPH_PT["digit"]
    if ch.isalpha():
        return GLYPH_PT["capital"] if ch.isupper() else GLYPH_PT["letter"]
    return GLYPH_PT["other"]


def command_pt(name: str) -> int:
    """Estimated width of a control sequence in a formula (its arguments are counted as written)."""
    if name in NAME_ARGUMENTS:
        return REFERENCE_PT.get(name, 0)
    if name in ZERO_WIDTH or name in TEXT_ARGUMENT_COMMANDS:
        return 0
    if name.startswith("math") or name.startswith("operatorname"):
        return 0  # \mathcal{...}, \mathbf{...}: the argument is measured
    if name in ("quad", "qquad"):
        return COMMAND_PT[name]
    if name in (",", ";", ":", " ", ">"):
        return COMMAND_PT["space"]
    if "arrow" in name or name in ("to", "mapsto", "gets", "hookrightarrow", "twoheadrightarrow"):
        return COMMAND_PT["long arrow"] if name.startswith(("long", "Long", "xrightarrow", "xleftarrow")) \
            else COMMAND_PT["arrow"]
    if name in RELATIONS:
        return COMMAND_PT["relation"]
    if name in BINARIES:
        return COMMAND_PT["binary"]
    if name in BIG_OPERATORS:
        return COMMAND_PT["big operator"]
    if name in ("dots", "ldots", "cdots", "vdots", "ddots"):
        return COMMAND_PT["dots"]
    if name in GREEK:
        return COMMAND_PT["greek"]
    if len(name) > 1 and name[0].isupper():  # \Hom, \Spec: an operator name in roman letters
        return min(WIDEST_GLYPH_PT, COMMAND_PT["operator letter"] * len(name) + COMMAND_PT["space"])
    return COMMAND_PT["other"]
ROLES = ("theorem", "proof", "list", "display", "inner", "text")


@dataclass
class VocabularyConfig:
    """How much evidence the corpus must give (the defaults of every build)."""

    min_count: int = 3
    """Uses a command, character or environment (in a place) needs before it is written there."""
    arg_share: float = 0.2
    """A command takes k arguments when at least this share of its uses gives k ``{...}`` groups."""
    max_list_depth: int = 3
    """Lists nest at most this deep (LaTeX allows 4), and no deeper than the corpus."""
    verify_timeout_s: float = 60.0
    """Limit on each pdflatex run of :func:`textgen.data.latex_scan.verify_vocabulary`."""
    min_env_letters: int = 6
    """Letters of text (outside math) a theorem-like environment or a proof holds, at least, before its ``\\end``:
    no empty lemma (the Stacks project's shortest proofs, "Omitted.", have 7)."""
    min_title_letters: int = 2
    """Letters a section title holds, at least (the Stacks project's shortest have 2)."""
    math_word_letters: int = 2
    """In math a run of this many letters is a word, and a word then a space is never followed by a
    letter: sentences go in ``\\text{...}`` (23 of the Stacks project's 89,734 formulas break this)."""
    display_width_pt: int = 290
    """The widest display row the form writes, estimated (:func:`glyph_pt`, :func:`command_pt`): the
    text block of ``amsart`` is 360 pt, less an equation number and the estimate's error."""
    inline_width_pt: int = 150
    """The widest inline formula the form writes, estimated; a paper lets TeX stretch a line that
    falls this short before one (``\\emergencystretch``, :func:`textgen.paper.paper_document`)."""


@dataclass
class Vocabulary:
    """The tables of one corpus (what ``latex.json`` holds)."""

    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {"modes": [...], "args": k}; names are control words or one-character symbols."""
    chars: dict[str, str] = field(default_factory=dict)
    """"text" | "math" | "script" -> the characters allowed there."""
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {"role", "parents": [...], "max_tabs": n, "rows": bool, "labels": bool}."""
    name_chars: dict[str, str] = field(default_factory=dict)
    """"label" | "ref" | "cite" -> the characters their names use."""
    max_list_depth: int = 1
    verified: bool = False
    """Whether every entry was compiled by pdflatex (:func:`textgen.data.latex_scan.verify_vocabulary`)."""
    source: dict[str, Any] = field(default_factory=dict)
    min_env_letters: int = VocabularyConfig.min_env_letters
    """See :class:`VocabularyConfig` (older ``latex.json`` files, without it, get its default)."""
    math_word_letters: int = VocabularyConfig.math_word_letters
    min_title_letters: int = VocabularyConfig.min_title_letters
    display_width_pt: int = VocabularyConfig.display_width_pt
    inline_width_pt: int = VocabularyConfig.inline_width_pt

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}, indent=1,
                          sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        raw = json.loads(text)
        if raw.get("format") != FORMAT or raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} version {FORMAT_VERSION} file")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def theorem_names(self) -> list[str]:
        return sorted(n for n, e in self.environments.items() if e["role"] == "theorem")
