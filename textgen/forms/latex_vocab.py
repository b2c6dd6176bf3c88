"""The LaTeX a corpus speaks: control sequences, environments and where each may stand.

The ``latex`` form (:mod:`textgen.forms.latex`) only lets a model write what this vocabulary
allows, so that every text compiles.  It is built from the training corpus and its preamble
(:func:`build_vocabulary`), stored in the export as ``latex.json`` beside ``preamble.tex``, and,
where pdflatex is installed, checked by compiling every entry in every place it is allowed
(:func:`verify_vocabulary`): what pdflatex refuses is dropped.

What the corpus decides (counted by :class:`CorpusScan`, each entry needing ``min_count`` uses):

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
sectioning; and the constructs left out because they are languages of their own (``\\xymatrix``,
``\\left``/``\\right``, accents, ``\\limits`` ...) or belong to the preamble.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VOCABULARY_FILE, PREAMBLE_FILE = "latex.json", "preamble.tex"
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
    """Limit on each pdflatex run of :func:`verify_vocabulary`."""
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
    """Whether every entry was compiled by pdflatex (see :func:`verify_vocabulary`)."""
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


# --------------------------------------------------------------------------- the preamble
_NEWTHEOREM = re.compile(r"^[^%\n]*?\\newtheorem\*?\{([A-Za-z]+\*?)\}", re.M)


def theorem_environments(preamble: str) -> set[str]:
    """The environments the preamble declares with ``\\newtheorem`` (comment lines ignored)."""
    return set(_NEWTHEOREM.findall(preamble))


def role_of(name: str, theorems: set[str]) -> str | None:
    """The kind of an environment, or None for one the form never opens."""
    if name in theorems:
        return "theorem"
    for role, names in (("proof", PROOF_ENVS), ("list", LIST_ENVS), ("display", DISPLAY_ENVS),
                        ("inner", INNER_MATH_ENVS), ("text", TEXT_ENVS)):
        if name in names:
            return role
    return None


# --------------------------------------------------------------------------- reading the corpus
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|%[^\n]*|.", re.S)


class CorpusScan:
    """Counts, over LaTeX text, what is used where (math mode tracked as LaTeX reads it).

    It skips what the form never writes -- comments, excluded commands with their ``{...}``
    arguments, environments of no known kind with their content -- so that nothing inside them
    (Xy-pic's ``\\ar`` and ``^`` labels, say) is counted as used elsewhere.
    """

    def __init__(self, theorems: set[str]) -> None:
        self.theorems = theorems
        self.commands: dict[str, Counter] = defaultdict(Counter)  # name -> mode -> uses
        self.arities: dict[str, Counter] = defaultdict(Counter)  # name -> brace groups -> uses
        self.chars: dict[str, Counter] = defaultdict(Counter)
        self.envs: dict[str, Counter] = defaultdict(Counter)  # name -> parent -> uses
        self.tabs: Counter = Counter()
        self.rows: Counter = Counter()
        self.labels: Counter = Counter()
        self.name_chars: dict[str, Counter] = defaultdict(Counter)
        self.list_depth = 0

    def scan(self, text: str) -> None:
        # a frame: [kind, name, math, text_arg, tabs]
        stack: list[list] = []
        script = False  # the previous token was ^ or _
        i = 0
        for match in _TOKEN.finditer(text):
            if match.start() < i:
                continue  # inside something skipped
            token = match.group()
            i = match.end()
            math = bool(stack) and stack[-1][2]
            if token.startswith("%"):
                continue
            if token.startswith("\\"):
                i = self._control(token[1:], text, i, stack, math, script)
                script = False
                continue
            if token == "{":
                stack.append(["brace", "", math, False, 0])
            elif token == "}":
                if stack and stack[-1][0] == "brace":
                    stack.pop()
            elif token == "$":
                if math and stack[-1][0] == "math" and stack[-1][1] == "$":
                    stack.pop()
                elif math and stack[-1][0] == "math" and stack[-1][1] == "$$":
                    stack.pop()
                    i += 1  # the second $
                elif not math:
                    double = text.startswith("$", i)
                    stack.append(["math", "$$" if double else "$", True, False, 0])
                    i += double
            elif token == "&":
                if stack and stack[-1][0] == "env":
                    stack[-1][4] += 1
                    self.tabs[stack[-1][1]] = max(self.tabs[stack[-1][1]], stack[-1][4])
            elif token in "^_" and math:
                self.chars["math"][token] += 1
                script = True
                continue
            else:
                mode = "script" if script and not token.isspace() else "math" if math else "text"
                self.chars[mode][token] += 1
                if script and token.isspace():
                    continue
            script = False

    def _control(self, name: str, text: str, i: int, stack: list[list], math: bool, script: bool) -> int:
        """Count the control sequence ``\\name`` ending at ``i``; returns where reading goes on."""
        if name in EXCLUDED and name not in ("'", "\""):
            i = _skip_groups(text, i)
            return i
        if name in ("begin", "end"):
            env_end = text.find("}", i)
            if not text.startswith("{", i) or env_end < 0:
                return i
            env = text[i + 1:env_end]
            i = env_end + 1
            if env == "document":  # the chapter's frame: its content is the corpus
                return i
            if name == "begin":
                i = self._begin(env, text, i, stack, math)
            elif stack and stack[-1][0] == "env" and stack[-1][1] == env:
                stack.pop()
            return i
        if name in NAME_ARGUMENTS:
            close = text.find("}", i)
            if text.startswith("{", i) and close > 0:
                self.name_chars[NAME_ARGUMENTS[name]].update(text[i + 1:close])
                i = close + 1
            if name == "label" and stack and stack[-1][0] == "env":
                self.labels[stack[-1][1]] += 1
            self.commands[name]["math" if math else "text"] += 1
            return i
        group = bool(stack) and stack[-1][0] == "brace"
        mode = "script" if script else "math" if math else "group" if group else "text"
        self.commands[name][mode] += 1
        self.arities[name][_count_groups(text, i)] += 1
        if name in ("[", "("):
            stack.append(["math", name, True, False, 0])
        elif name in ("]", ")") and stack and stack[-1][0] == "math":
            stack.pop()
        elif name == "\\" and stack and stack[-1][0] == "env":
            self.rows[stack[-1][1]] += 1
            stack[-1][4] = 0
        elif name in TEXT_ARGUMENT_COMMANDS and text.startswith("{", i):
            stack.append(["brace", name, False, True, 0])
            i += 1
        return i

    def _begin(self, env: str, text: str, i: int, stack: list[list], math: bool) -> int:
        role = role_of(env, self.theorems)
        if role is None:  # content unknown to the form: skipped whole
            end = _find_end(text, env, i)
            return end
        parent = "math" if math else next((f[1] for f in reversed(stack) if f[0] == "env"), "top")
        parent = parent if parent in ("math", "top") else role_of(parent, self.theorems) or "text"
        self.envs[env][parent] += 1
        depth = sum(1 for f in stack if f[0] == "env" and f[1] in LIST_ENVS) + (role == "list")
        self.list_depth = max(self.list_depth, depth)
        stack.append(["env", env, role in ("display", "inner"), False, 0])
        return i


def _count_groups(text: str, i: int, limit: int = 4) -> int:
    """How many ``{...}`` groups follow position ``i`` directly."""
    count = 0
    while count < limit and text.startswith("{", i):
        i = _skip_group(text, i)
        count += 1
    return count


def _skip_group(text: str, i: int) -> int:
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _skip_groups(text: str, i: int) -> int:
    """Skip the ``[...]``, ``@...`` and ``{...}`` arguments of an excluded command."""
    while i < len(text) and text[i] in "{[":
        if text[i] == "{":
            i = _skip_group(text, i)
        else:
            close = text.find("]", i)
            i = len(text) if close < 0 else close + 1
    return i


def _find_end(text: str, env: str, i: int) -> int:
    close = text.find(f"\\end{{{env}}}", i)
    return len(text) if close < 0 else close + len(env) + 6


# --------------------------------------------------------------------------- building
def build_vocabulary(corpus: str, preamble: str, config: VocabularyConfig | None = None,
                     source: dict[str, Any] | None = None) -> Vocabulary:
    """The vocabulary of ``corpus`` (LaTeX text) compiled with ``preamble`` (not verified)."""
    config = config or VocabularyConfig()
    theorems = theorem_environments(preamble)
    scan = CorpusScan(theorems)
    scan.scan(corpus)
    m = config.min_count
    commands = {}
    for name, modes in scan.commands.items():
        if name in EXCLUDED or name in ("begin", "end"):
            continue
        allowed = sorted(mode for mode, uses in modes.items() if uses >= m)
        if not allowed:
            continue
        arities = scan.arities.get(name, Counter({0: 1}))
        total = sum(arities.values())
        args = max([k for k in range(5) if sum(v for a, v in arities.items() if a >= k) >= config.arg_share * total])
        if name in NAME_ARGUMENTS or name in SECTIONING:
            args = 1
        if not name.isalpha():
            args = 0
        commands[name] = {"modes": allowed, "args": args}
    chars = {mode: "".join(sorted(c for c, uses in counts.items() if uses >= m and _plain_char(c, mode)))
             for mode, counts in scan.chars.items()}
    environments = {}
    for name, parents in scan.envs.items():
        allowed = sorted(p for p, uses in parents.items() if uses >= m)
        if not allowed:
            continue
        environments[name] = {"role": role_of(name, theorems), "parents": allowed, "max_tabs": scan.tabs[name],
                              "rows": scan.rows[name] >= m, "labels": scan.labels[name] >= m}
    name_chars = {kind: "".join(sorted(c for c, uses in counts.items() if uses >= m and c in SAFE_NAME_CHARS))
                  for kind, counts in scan.name_chars.items()}
    return Vocabulary(commands, chars, environments, name_chars,
                      min(max(scan.list_depth, 1), config.max_list_depth), False, dict(source or {}),
                      config.min_env_letters, config.math_word_letters, config.min_title_letters,
                      config.display_width_pt, config.inline_width_pt)


def _plain_char(ch: str, mode: str) -> bool:
    """Characters the grammar handles itself never come from the corpus counts."""
    if ch in "{}$\\%&#^_" or (ch != "\n" and not ch.isprintable()) or not ch.isascii():
        return False
    return not (mode == "script" and ch.isspace())


def preamble_macros(preamble: str) -> dict[str, str]:
    """The argument-free macros a preamble defines (``\\def\\X{...}``, ``\\newcommand{\\X}{...}``,
    ``\\DeclareMathOperator{\\X}{...}``), name -> body: what a renderer such as KaTeX needs to show
    the model's math as pdflatex would."""
    macros: dict[str, str] = {}
    pattern = re.compile(r"\\(def|newcommand|renewcommand|DeclareMathOperator\*?)\s*\{?\\([A-Za-z]+)\}?\s*(?=\{)")
    for line in preamble.splitlines():
        line = line.split("%")[0]
        match = pattern.search(line)
        if not match:
            continue
        start = match.end()
        end = _skip_group(line, start)
        if end > len(line) or line[end - 1] != "}":
            continue
        body = line[start + 1:end - 1]
        macros["\\" + match.group(2)] = f"\\operatorname{{{body}}}" if match.group(1).startswith("Declare") else body
    return macros


# --------------------------------------------------------------------------- compiling
def pdflatex_available() -> bool:
    return shutil.which("pdflatex") is not None


@dataclass
class CompileResult:
    """What pdflatex said about one document."""

    ok: bool
    error: str = ""
    """LaTeX's own error line (``! ...``) and the line it points at, when it failed."""
    log: str = ""
    pages: int = 0
    pdf: bytes | None = None
    bibtex_log: str = ""
    """What BibTeX printed (its warnings name missing entries), when it ran."""


def wrap_document(preamble: str, body: str) -> str:
    """The document a ``latex`` text compiles in: the preamble, then the body in ``document``."""
    return f"{preamble.rstrip()}\n\\begin{{document}}\n{body}\n\\end{{document}}\n"


def compile_latex(document: str, timeout_s: float = 60.0, keep_pdf: bool = False,
                  nonstop: bool = False, passes: int = 1, files: dict[str, str] | None = None,
                  bibtex: bool = False) -> CompileResult:
    """Run ``pdflatex -halt-on-error -interaction=nonstopmode -no-shell-escape`` on ``document`` in a
    temporary folder (``passes`` times, for references); ``nonstop`` runs without
    ``-halt-on-error`` (to collect every error).  ``timeout_s`` limits each run.  ``files`` (name ->
    text, a ``.bib`` say) are written beside it; ``bibtex`` runs BibTeX after the first pass and
    then pdflatex twice more (at least), so citations and references settle.  BibTeX's warnings and
    errors are appended to the log (``bibtex_log``)."""
    if not pdflatex_available():
        raise FileNotFoundError("pdflatex is not installed (Debian: apt-get install texlive-latex-base "
                                "texlive-latex-recommended texlive-pictures lmodern)")
    with tempfile.TemporaryDirectory(prefix="textgen-latex-") as tmp:
        (Path(tmp) / "text.tex").write_text(document, encoding="utf-8")
        for name, text in (files or {}).items():
            (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
        args = ["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", "text.tex"]
        if not nonstop:
            args.insert(1, "-halt-on-error")
        runs = max(passes, 3) if bibtex else passes
        bib_log = ""
        for run in range(runs):
            try:
                done = subprocess.run(args, cwd=tmp, capture_output=True, timeout=timeout_s,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                return CompileResult(False, f"pdflatex did not finish within {timeout_s:g} s")
            if done.returncode != 0:
                break
            if bibtex and run == 0:
                if shutil.which("bibtex") is None:
                    return CompileResult(False, "bibtex is not installed (Debian: apt-get install texlive-binaries)")
                try:
                    bib = subprocess.run(["bibtex", "text"], cwd=tmp, capture_output=True, timeout=timeout_s,
                                         stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    return CompileResult(False, f"bibtex did not finish within {timeout_s:g} s")
                bib_log = bib.stdout.decode("latin-1")
        log_path = Path(tmp) / "text.log"
        log = log_path.read_text(encoding="latin-1") if log_path.is_file() else done.stdout.decode("latin-1")
        pdf_path = Path(tmp) / "text.pdf"
        pages = _pages(log)
        ok = done.returncode == 0 and pdf_path.is_file() and not nonstop or (nonstop and "\n! " not in log)
        pdf = pdf_path.read_bytes() if keep_pdf and pdf_path.is_file() else None
        return CompileResult(ok, "" if ok else first_error(log), log, pages, pdf, bib_log)


def first_error(log: str) -> str:
    """LaTeX's first error message (``! ...``) with the ``l.N`` line it points at."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("! "):
            where = next((later for later in lines[i + 1:i + 12] if re.match(r"l\.\d+", later)), "")
            return f"{line} {where}".strip()
    return "pdflatex failed (no error line in its log)"


def _pages(log: str) -> int:
    match = re.search(r"Output written on \S+ \((\d+) pages?", log)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------- verifying
def _probes(vocab: Vocabulary) -> list[tuple[str, tuple[str, str]]]:
    """(a line of LaTeX, (kind, entry)) for every entry in every place it is allowed."""
    probes = []
    for name, entry in sorted(vocab.commands.items()):
        if name in STRUCTURAL:
            continue
        call = "\\" + name + "{}" * entry["args"]
        sep = " " if name.isalpha() else ""
        for mode in entry["modes"]:
            if mode == "text":
                probes.append((f"a {call}{sep}b {call}{sep}\\par", ("command", name)))
            elif mode == "group":
                probes.append((f"{{a {call}{sep}b}} \\mbox{{{call}}} $\\text{{a {call}}}$ \\emph{{{call}}}\\par",
                               ("command", name)))
            elif mode == "math":
                probes.append((f"$a {call}{sep}b$ ${{{call}}}$ ${call}$ $x^{{{call}}}_{{{call}}}$\\par",
                               ("command", name)))
            elif mode == "script" and entry["args"] == 0:
                probes.append((f"$x^{call}_{call}$ $x_{call}^{call}$\\par", ("command", name)))
    for mode, chars in vocab.chars.items():
        for ch in chars:
            if ch.isspace():
                continue
            if mode == "text":
                probes.append((f"a{ch}b {{{ch}}}\\par", ("char", f"text:{ch}")))
            elif mode == "math":
                probes.append((f"$a{ch}b$ ${{{ch}}}$ $x^{{{ch}}}$\\par", ("char", f"math:{ch}")))
            else:
                probes.append((f"$x^{ch}_{ch}$\\par", ("char", f"script:{ch}")))
    for name, entry in sorted(vocab.environments.items()):
        body = {"list": "\\item a", "display": "a", "inner": "a", "theorem": "a", "proof": "a", "text": "a"}[entry["role"]]
        env = f"\\begin{{{name}}}{body}\\end{{{name}}}"
        item = "\\item" if entry["role"] == "list" else ""
        empty = f"\\begin{{{name}}}{item}\\end{{{name}}}"
        if entry["role"] == "inner":
            probes.append((f"${env}$ ${empty}$\\par", ("environment", name)))
        else:
            probes.append((f"{env}\n{empty}\\par", ("environment", name)))
    return probes


def verify_vocabulary(vocab: Vocabulary, preamble: str, config: VocabularyConfig | None = None,
                      rounds: int = 4) -> Vocabulary:
    """Compile every entry of ``vocab`` where it is allowed; drop what pdflatex refuses.

    One document holds every probe, one line each; pdflatex runs without ``-halt-on-error`` so
    that every error is reported with its line, the culprits are dropped, and the rest is compiled
    again until nothing fails (at most ``rounds`` times).  Sets ``vocab.verified``.
    """
    config = config or VocabularyConfig()
    dropped: list[str] = []
    bumped: set[str] = set()
    for _ in range(rounds):
        probes = _probes(vocab)
        head = wrap_document(preamble, "").split("\\end{document}")[0]
        first_line = head.count("\n") + 1
        body = "\n".join(line for line, _ in probes)
        result = compile_latex(head + body + "\n\\end{document}\n", config.verify_timeout_s, nonstop=True)
        bad_lines = {int(m) for m in re.findall(r"^l\.(\d+)", result.log, re.M)}
        if result.ok and not bad_lines:
            vocab.verified = True
            break
        culprits = {probes[n - first_line][1] for n in bad_lines if 0 <= n - first_line < len(probes)}
        if not culprits:
            raise RuntimeError(f"the LaTeX vocabulary does not compile and no probe is to blame: "
                               f"{first_error(result.log)}")
        for kind, entry in culprits:
            dropped.append(f"{kind} {entry}")
            if kind == "command" and entry not in bumped and vocab.commands[entry]["args"] < 2:
                bumped.add(entry)  # used without braces in the corpus, but it needs an argument
                vocab.commands[entry]["args"] += 1
                dropped[-1] = f"command {entry}: now takes {vocab.commands[entry]['args']} argument(s)"
            elif kind == "command":
                vocab.commands.pop(entry, None)
            elif kind == "environment":
                vocab.environments.pop(entry, None)
            else:
                mode, ch = entry.split(":", 1)
                vocab.chars[mode] = vocab.chars[mode].replace(ch, "")
    vocab.source["dropped_by_pdflatex"] = sorted(dropped)
    return vocab


# --------------------------------------------------------------------------- files
def write_latex_files(folder: str | Path, vocab: Vocabulary, preamble: str) -> None:
    """Write ``latex.json`` and ``preamble.tex`` into an export folder."""
    folder = Path(folder)
    (folder / VOCABULARY_FILE).write_text(vocab.to_json(), encoding="utf-8")
    (folder / PREAMBLE_FILE).write_text(preamble, encoding="utf-8")


def read_latex_files(folder: str | Path) -> tuple[Vocabulary, str] | None:
    """The vocabulary and preamble of an export folder, or None when it has none."""
    folder = Path(folder)
    if not (folder / VOCABULARY_FILE).is_file() or not (folder / PREAMBLE_FILE).is_file():
        return None
    return (Vocabulary.from_json((folder / VOCABULARY_FILE).read_text(encoding="utf-8")),
            (folder / PREAMBLE_FILE).read_text(encoding="utf-8"))


def build_checked(corpus: str, preamble: str, config: VocabularyConfig | None = None,
                  source: dict[str, Any] | None = None) -> Vocabulary:
    """:func:`build_vocabulary`, then :func:`verify_vocabulary` when pdflatex is installed."""
    config = config or VocabularyConfig()
    vocab = build_vocabulary(corpus, preamble, config, source)
    if pdflatex_available():
        vocab = verify_vocabulary(vocab, preamble, config)
    return vocab
