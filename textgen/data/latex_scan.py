"""Building a LaTeX corpus' vocabulary (:class:`~textgen.forms.latex_vocab.Vocabulary`) at training
and export time: scan the corpus, read the preamble, check every entry with pdflatex.

:func:`build_vocabulary` counts, with :class:`CorpusScan`, what the corpus uses where and keeps what
has ``min_count`` uses (the tables of :mod:`textgen.forms.latex_vocab` say what LaTeX itself
decides); :func:`verify_vocabulary` compiles every entry in every place it is allowed and drops
what pdflatex refuses; :func:`build_checked` does both (the check only where pdflatex is installed).
The export carries the result as ``latex.json`` (:mod:`textgen.latex_export`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from textgen.forms.latex_vocab import (
    DISPLAY_ENVS,
    EXCLUDED,
    INNER_MATH_ENVS,
    LIST_ENVS,
    NAME_ARGUMENTS,
    PROOF_ENVS,
    SAFE_NAME_CHARS,
    SECTIONING,
    STRUCTURAL,
    TEXT_ARGUMENT_COMMANDS,
    TEXT_ENVS,
    Vocabulary,
    VocabularyConfig,
)
from textgen.pdflatex import compile_latex, first_error, pdflatex_available, wrap_document

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
        i = skip_group(text, i)
        count += 1
    return count


def skip_group(text: str, i: int) -> int:
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
            i = skip_group(text, i)
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



def build_checked(corpus: str, preamble: str, config: VocabularyConfig | None = None,
                  source: dict[str, Any] | None = None) -> Vocabulary:
    """:func:`build_vocabulary`, then :func:`verify_vocabulary` when pdflatex is installed."""
    config = config or VocabularyConfig()
    vocab = build_vocabulary(corpus, preamble, config, source)
    if pdflatex_available():
        vocab = verify_vocabulary(vocab, preamble, config)
    return vocab
