"""Forms by construction (textgen.forms): every constrained sample obeys its form.

Samples come from the tiny models of ``conftest.py`` (really trained through the CLI), in batches
of 16, across seeds, temperatures (0 included) and extreme top-k/top-p.  The checks here are
written independently of the constraints (regular expressions, a separate LaTeX scanner).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from conftest import DATA_DIR, REPO

from textgen.data.latex_scan import build_vocabulary, theorem_environments
from textgen.export import load_export
from textgen.forms import FormError, check_text, prepare_form
from textgen.forms.books import rhymes
from textgen.forms.latex import LatexForm, LatexGrammar, is_balanced, latex_tables
from textgen.forms.latex_vocab import Vocabulary, VocabularyConfig
from textgen.forms.rhyme import GROUPS, final_of, rhyme_group
from textgen.forms.tang import TangForm, poem_length, tang_tables
from textgen.sampling import SamplingParams, generate

# Han ideographs: extension A, the basic block, compatibility, and extensions B and later (the corpus
# has simplified forms such as U+2CE23 that OpenCC writes from extension E).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"

# Every sampling regime the forms must survive.
REGIMES = [
    {"temperature": 0.8},
    {"temperature": 0.0},
    {"temperature": 1.6},
    {"temperature": 1.0, "top_k": 1},
    {"temperature": 1.0, "top_k": 5},
    {"temperature": 1.0, "top_p": 0.01},
    {"temperature": 1.2, "top_p": 0.5, "top_k": 40},
    {"temperature": 0.8, "repetition_penalty": 1.5},
]


@pytest.fixture(scope="module")
def stacks(tiny_stacks):
    return load_export(tiny_stacks)


def sample(loaded, prepared, seed: int, regime: dict, **params):
    params = SamplingParams(n=16, seed=seed, **{**regime, **params})
    return generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())


# --------------------------------------------------------------------------- independent checks
def poem_problems(text: str, chars: int, verses: int, acrostic: str = "") -> list[str]:
    """What is wrong with ``text`` as the verses of a poem (empty list: nothing)."""
    lines = text.split("\n")
    couplet = re.compile(f"^([{HAN}]{{{chars}}})，([{HAN}]{{{chars}}})。$")
    problems = []
    if len(lines) != verses // 2:
        problems.append(f"{len(lines)} lines")
    found = []
    for line in lines:
        match = couplet.match(line)
        if not match:
            problems.append(f"bad couplet {line!r}")
        else:
            found += match.groups()
    if acrostic and "".join(v[0] for v in found) != acrostic:
        problems.append("acrostic heads")
    return problems


_LATEX_TOKEN = re.compile(r"%[^\n]*|\\begin\{([^}]*)\}|\\end\{([^}]*)\}|\\.|[{}$]", re.S)


def latex_problems(text: str) -> list[str]:
    """Environments nested and closed, braces and $ balanced (a scanner separate from textgen.forms)."""
    stack: list[str] = []
    for match in _LATEX_TOKEN.finditer(text):
        token, begin, end = match.group(0), match.group(1), match.group(2)
        if token.startswith("%") or (token.startswith("\\") and begin is None and end is None):
            continue
        if begin is not None:
            stack.append("env:" + begin)
        elif end is not None:
            if not stack or stack.pop() != "env:" + end:
                return [f"\\end{{{end}}} does not close the innermost group"]
        elif token == "{":
            stack.append("{")
        elif token == "}":
            if not stack or stack.pop() != "{":
                return ["unmatched }"]
        elif token == "$":
            if stack and stack[-1] == "$":
                stack.pop()
            else:
                stack.append("$")
    if text.endswith("\\") and not text.endswith("\\\\"):
        return ["ends in a backslash"]
    return [f"left open: {stack}"] if stack else []


# --------------------------------------------------------------------------- Tang: always valid
TANG_FORMS = [
    {"kind": "jueju", "chars_per_line": 5},
    {"kind": "jueju", "chars_per_line": 7, "acrostic": "春夏秋冬"},
    {"kind": "lushi", "chars_per_line": 5, "title": "春日", "rhyme": True},
    {"kind": "lushi", "chars_per_line": 7, "acrostic": "一二三四五六七八", "title": "秋夜", "rhyme": True},
]


@pytest.mark.parametrize("form", TANG_FORMS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_every_tang_sample_obeys_its_form(tang, form):
    prepared = prepare_form(form, tang)
    verses = 4 if form["kind"] == "jueju" else 8
    title = form.get("title")
    assert prepared.prompt == (f"{title}\n" if title else "")
    for seed, regime in enumerate(REGIMES):
        for s in sample(tang, prepared, seed, regime, max_new_chars=30):
            assert s.finish_reason == "form_complete", (regime, s)
            assert poem_problems(s.text, form["chars_per_line"], verses, form.get("acrostic", "")) == [], \
                (regime, s.text)
            assert s.generated_chars == len(s.text) == poem_length(prepared.form)
            if form.get("rhyme"):
                ends = [line[-2] for line in s.text.split("\n")]  # the even verses end each couplet line
                assert rhymes("".join(ends)), (regime, s.text)
            assert check_text(prepared.form, s.text, prepared.prompt) is None


def test_poems_continue_a_prompt_and_its_title_line(tang):
    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "acrostic": "白黄欲更"}, tang, "白日依山尽，黄")
    assert prepared.prompt == "白日依山尽，黄"
    for s in sample(tang, prepared, 7, {"temperature": 1.0}, max_new_chars=0):
        assert poem_problems("白日依山尽，黄" + s.text, 5, 4, "白黄欲更") == []
    own = prepare_form({"kind": "jueju", "chars_per_line": 5}, tang, "登鹳雀楼\n白日")
    for s in sample(tang, own, 8, {"temperature": 0.8}):
        assert poem_problems("白日" + s.text, 5, 4) == []
        assert check_text(own.form, s.text, own.prompt) is None


def test_a_seeded_poem_is_the_same_alone_and_batched(tang):
    prepared = prepare_form({"kind": "jueju", "chars_per_line": 7, "rhyme": True}, tang)
    alone = generate(tang, prepared.prompt, SamplingParams(n=1, seed=42),
                     constraint=lambda i: prepared.new_constraint())
    batched = generate(tang, prepared.prompt, SamplingParams(n=4, seed=42),
                       constraint=lambda i: prepared.new_constraint())
    assert alone[0].text == batched[0].text


# --------------------------------------------------------------------------- LaTeX: always closed
MIN_LETTERS = VocabularyConfig.min_env_letters  # what a lemma or proof holds, at least
# (tests/test_latex_compile.py compiles such samples with pdflatex; here the structure is checked.)
LATEX_CASES = [
    ({"kind": "latex", "environment": "lemma"}, ""),
    ({"kind": "latex", "environment": "proof"}, "Let $X$ be a scheme and $\\mathcal{F}$ a {sheaf"),
    ({"kind": "latex", "environment": "lemma"}, "\\begin{enumerate}\n\\item $x_{2"),
    ({"kind": "latex"}, ""),
    ({"kind": "latex", "environment": None}, "\\section{Intro}\n% a comment { $\nSee \\ref{"),
]


def grammar_of(loaded):
    return latex_tables(loaded.tokenizer, loaded.path)[0].grammar


@pytest.fixture(scope="module")
def shipped_grammar():
    """The grammar of the shipped Stacks models' vocabulary (checkpoints/stacks-gru/latex.json)."""
    return LatexGrammar(Vocabulary.from_json((REPO / "checkpoints" / "stacks-gru" / "latex.json").read_text()))


@pytest.mark.parametrize("form,prompt", LATEX_CASES, ids=lambda v: str(v)[:30])
def test_every_latex_sample_is_closed(stacks, form, prompt):
    prepared = prepare_form(form, stacks, prompt)
    environment = form.get("environment")
    opening = f"\\begin{{{environment}}}\n" if environment else ""
    assert prepared.prompt == prepared.echo == opening + prompt  # the returned text starts with it
    closing = prepared.new_constraint().state.closing()
    for seed, regime in enumerate(REGIMES):
        for budget in (3, 90):
            for s in sample(stacks, prepared, seed, regime, max_new_chars=budget):
                whole = prepared.prompt + s.text
                assert latex_problems(whole) == [], (regime, budget, whole)
                assert is_balanced(whole)
                assert check_text(prepared.form, s.text, prepared.prompt) is None, (regime, budget, whole)
                # never longer than asked, unless the prompt alone needs more to close
                assert s.generated_chars <= max(budget, closing), (regime, budget, s)
                if environment:
                    assert s.finish_reason == "form_complete"
                    assert whole.endswith(f"\\end{{{environment}}}")
                else:
                    assert s.finish_reason == "length"


def test_latex_closes_within_budget_without_a_prompt_overrun(stacks):
    prepared = prepare_form({"kind": "latex", "environment": "lemma"}, stacks)
    closing = len("\\end{lemma}") + MIN_LETTERS  # a lemma holds a few letters before it may end
    for s in sample(stacks, prepared, 3, {"temperature": 1.0}, max_new_chars=closing):
        # exactly the room to close: the letters it owes, then the closing, forced at once
        assert s.text.endswith("\\end{lemma}") and s.text[:MIN_LETTERS].isalpha() and len(s.text) == closing
    for s in sample(stacks, prepared, 4, {"temperature": 1.0}, max_new_chars=0):
        assert s.text.endswith("\\end{lemma}") and s.generated_chars == closing  # over budget by the closing


@pytest.mark.parametrize("environment", ["lemma", None])
def test_past_its_share_a_piece_closes_at_the_end_of_a_sentence(stacks, environment):
    # The paper's pieces: the same draws as without it up to the first sentence end past the share
    # (40 characters), then at once the closing; the budget (400) still bounds the rest.
    prepared = prepare_form({"kind": "latex", "environment": environment}, stacks)
    end = f"\\end{{{environment}}}" if environment else ""

    def closing_at_sentences(index):
        form = prepared.new_constraint()
        form.close_after_sentence(40)
        return form

    params = SamplingParams(n=16, seed=7, temperature=1.0, max_new_chars=400)
    plain = generate(stacks, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())
    closed = generate(stacks, prepared.prompt, params, constraint=closing_at_sentences)
    at_sentence = 0
    for a, b in zip(plain, closed):
        assert latex_problems(prepared.prompt + b.text) == [] and b.text.endswith(end)
        if b.text == a.text:
            continue  # no sentence ended past the share before the model or the budget did
        closing = re.search(r"[.?!][ \n]((?:\\end\{[a-z*]+\})*)$", b.text)  # a sentence end, then closings
        assert closing, b.text
        said = b.text[:len(b.text) - len(closing.group(1))]
        assert a.text.startswith(said) and len(said) > 40
        assert b.finish_reason == "form_complete"
        at_sentence += 1
    assert at_sentence >= 4


def test_the_vocabulary_comes_from_the_corpus_and_the_preamble():
    val, preamble = DATA_DIR / "stacks" / "val.txt", DATA_DIR / "stacks" / "preamble.tex"
    if not val.is_file() or not preamble.is_file():
        pytest.skip("shared Stacks corpus not found")
    theorems = theorem_environments(preamble.read_text(encoding="utf-8"))
    assert {"theorem", "lemma", "definition", "remark", "example"} <= theorems
    vocab = build_vocabulary(val.read_text(encoding="utf-8"), preamble.read_text(encoding="utf-8"))
    assert vocab.commands["mathcal"] == {"modes": ["math", "script"], "args": 1}
    assert vocab.commands["frac"]["args"] == 2 and vocab.commands["text"] == {"modes": ["math"], "args": 1}
    assert "ar" not in vocab.commands and "xymatrix" not in vocab.commands  # Xy-pic is left out
    assert "document" not in vocab.environments and "reference" not in vocab.environments
    assert vocab.environments["lemma"] == {"role": "theorem", "parents": ["top"], "max_tabs": 0, "rows": False,
                                           "labels": True}
    assert vocab.environments["equation"]["role"] == "display" and "list" in vocab.environments["enumerate"]["parents"]
    assert "^" not in vocab.chars["text"] and "&" not in vocab.chars["math"]  # the grammar places them itself


@pytest.mark.parametrize("text,closing", [
    ("", 0), ("{", 1), ("$x", 1), ("$x^", 2), ("$\\mathcal", 3), ("\\label", 3), ("\\", 1), ("% {", 1),
    ("\\begin{lemma}", 11 + MIN_LETTERS), ("\\begin{lemma}Pro", 11 + MIN_LETTERS - 3),  # letters owed first
    ("\\begin{lemma}Lemmas", 11), ("\\begin{lemma}Lemmas\\", 10), ("\\begin{lemma}Lemmas\\en", 8),
    ("\\begin{lemma}Lemmas\\end{", 6), ("\\begin{lemma}\\", 11 + MIN_LETTERS + 1),  # a control symbol, then
    ("\\begin", 20), ("\\begin{", 19), ("\\begin{al", 17),  # align* is the shortest to open and close
    ("\\begin{le", 15 + MIN_LETTERS),
    ("\\section{", 3), ("\\section{D", 2), ("\\section{Di", 1),  # a title's letters, then "}"
    ("\\begin{lemma}\\begin{enumerate}", 11 + MIN_LETTERS + len("\\item\\end{enumerate}")),
])
def test_closing_length_is_the_shortest_closing(shipped_grammar, text, closing):
    state = shipped_grammar.start().read(text)
    assert state is not None and state.closing() == closing


@pytest.mark.parametrize("text", [
    "}", "$a{$", "\\end{lemma}", "\\begin{lemma}\\end{proof}", "\\begin x", "\\begin{}", "\\begin{theorem*}",
    "$x^2^3$", "$x_1_2$", "$x^2'$", "a^b", "a_b", "a&b", "#", "\\item", "\\undefinedcommand", "\\mathcal{F}",
    "$\\mathcal$", "$\\mathcal F$", "$x\n\ny$", "$\\end{lemma}", "$$x$ $", "$a$$b$", "{a\n\nb}",
    "\\begin{lemma}\\begin{lemma}", "\\begin{lemma}\\section{A}", "\\begin{proof}",
    "\\begin{lemma}Lemmas\\end{lemma}\\begin{proof}Proofs\\end{proof}\\begin{proof}",
    "\\begin{lemma}\\end{lemma}", "\\begin{lemma}Short\\end{lemma}", "\\begin{lemma}\\label{a}$x$\\end{lemma}",
    "\\begin{lemma}\\begin{enumerate}x", "\\begin{lemma}\\item", "\\label{a}\\label{a}", "\\ref{a b}",
    "\\section{$x$}", "\\begin{lemma}[", "\\begin{lemma}\\begin{enumerate}\\item [",
    "$ab c$", "$Let us$", "\\begin{equation}\nLet us see\n\\end{equation}",  # no prose in math
    "\\section{D}",  # a title holds 2 letters
])
def test_latex_grammar_refuses_what_pdflatex_would_refuse(shipped_grammar, text):
    assert shipped_grammar.start().read(text) is None


@pytest.mark.parametrize("text", [
    "\\begin{lemma}Lemmas\\end{lemma}\n\\begin{proof}Omitted.\\end{proof}", "$x'^2_3$", "$x_3'$", "$x^{a}_{b}$", "$$x$$", "$a$ $b$",
    "\\label{a}\\label{ab}", "\\begin{lemma}Assume:\\begin{enumerate}\n\\item $x$\n\\end{enumerate}\\end{lemma}",
    "$\\text{a $x$ b}$", "\\section{Intro}\n\nText.",
    "$x y$", "$f g h$", "$ab \\alpha c$", "$\\text{as in} x$", "$ab_c d$",  # letters, but not prose
])
def test_latex_grammar_reads_what_compiles(shipped_grammar, text):
    state = shipped_grammar.start().read(text)
    assert state is not None and state.closing() == 0


# --------------------------------------------------------------------------- rhyme groups
@pytest.mark.parametrize("chars,group", [("东风中红", "庚"), ("花家沙涯", "麻"), ("山间天寒", "寒"), ("诗时知日", "支"),
                                         ("雨鱼居衣", "齐"), ("流楼愁秋", "尤"), ("月雪学", "皆")])
def test_rhyme_groups(chars, group):
    assert all(GROUPS[rhyme_group(c)] == group for c in chars), [GROUPS[rhyme_group(c)] for c in chars]


def test_finals():
    assert [final_of(s) for s in ("zhuang", "shi", "si", "ju", "yuan", "wen", "lv", "er", "xiong")] == \
        ["uang", "-i", "-i", "ü", "üan", "un", "ü", "er", "iong"]


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("form,prompt,field", [
    ("jueju", "", "form"),
    ({"kind": "sonnet"}, "", "form.kind"),
    ({"kind": {}}, "", "form.kind"),  # not a name: no key of the table of kinds
    ({"kind": ["jueju"]}, "", "form.kind"),
    ({"chars_per_line": 5}, "", "form.kind"),
    ({"kind": "jueju", "chars_per_line": 5, "meter": 1}, "", "form.meter"),
    ({"kind": "jueju"}, "", "form.chars_per_line"),
    ({"kind": "jueju", "chars_per_line": 6}, "", "form.chars_per_line"),
    ({"kind": "jueju", "chars_per_line": True}, "", "form.chars_per_line"),
    ({"kind": "jueju", "chars_per_line": "5"}, "", "form.chars_per_line"),
    ({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋"}, "", "form.acrostic"),
    ({"kind": "lushi", "chars_per_line": 5, "acrostic": "春夏秋冬"}, "", "form.acrostic"),
    ({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋a"}, "", "form.acrostic"),
    ({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋龘"}, "", "form.acrostic"),
    ({"kind": "jueju", "chars_per_line": 5, "acrostic": 4}, "", "form.acrostic"),
    ({"kind": "jueju", "chars_per_line": 5, "title": "a\nb"}, "", "form.title"),
    ({"kind": "jueju", "chars_per_line": 5, "title": "长" * 65}, "", "form.title"),
    ({"kind": "jueju", "chars_per_line": 5, "title": ["春"]}, "", "form.title"),
    ({"kind": "jueju", "chars_per_line": 5, "rhyme": "yes"}, "", "form.rhyme"),
    ({"kind": "jueju", "chars_per_line": 5, "rhyme": 1}, "", "form.rhyme"),
    ({"kind": "jueju", "chars_per_line": 5}, "白日依山尽。", "prompt"),
    ({"kind": "jueju", "chars_per_line": 5}, "白日 依山尽，", "prompt"),
    ({"kind": "jueju", "chars_per_line": 7}, "白日依山尽，", "prompt"),
    ({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}, "白日", "prompt"),
    ({"kind": "jueju", "chars_per_line": 5, "title": "登楼"}, "登鹳雀楼\n白日", "prompt"),
    ({"kind": "jueju", "chars_per_line": 5}, "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。", "prompt"),
    ({"kind": "jueju", "chars_per_line": 5, "rhyme": True}, "白日依山尽，黄河入海流。\n欲穷千里目，更上一层山", "prompt"),
    ({"kind": "latex"}, "", "form.kind"),  # a Tang model cannot write LaTeX
])
def test_tang_model_rejects_bad_forms(tang, form, prompt, field):
    with pytest.raises(FormError) as caught:
        prepare_form(form, tang, prompt)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError) and str(caught.value)


@pytest.mark.parametrize("form,prompt,field", [
    ({"kind": "jueju", "chars_per_line": 5}, "", "form.kind"),  # a LaTeX model has no '，'
    ({"kind": "latex", "environment": "lem ma"}, "", "form.environment"),
    ({"kind": "latex", "environment": 5}, "", "form.environment"),
    ({"kind": "latex", "environment": "lemma", "title": "x"}, "", "form.title"),
    ({"kind": "latex"}, "a}", "prompt"),
    ({"kind": "latex"}, "\\end{lemma}", "prompt"),
    ({"kind": "latex", "environment": "lemma"}, "Easy.\n\\end{lemma}", "prompt"),
    ({"kind": "latex", "environment": "lemma"}, "$a{$", "prompt"),
    ({"kind": "latex", "environment": "theorem*"}, "", "form.environment"),  # not in the model's LaTeX
    ({"kind": "latex"}, "$\\xymatrix{", "prompt"),
])
def test_stacks_model_rejects_bad_forms(stacks, form, prompt, field):
    with pytest.raises(FormError) as caught:
        prepare_form(form, stacks, prompt)
    assert caught.value.field == field


def test_no_form_is_none_and_tables_are_built_once(tang, stacks):
    assert prepare_form(None, tang) is None
    assert tang_tables(tang.tokenizer) is tang_tables(tang.tokenizer)
    assert latex_tables(stacks.tokenizer, stacks.path) is latex_tables(stacks.tokenizer, stacks.path)
    prepared = prepare_form({"kind": "latex", "environment": "proof"}, stacks)
    first, second = prepared.new_constraint(), prepared.new_constraint()
    assert first is not second
    mask = first.allowed()
    assert mask.dtype == torch.bool and mask.shape == (stacks.tokenizer.vocab_size,)
    assert isinstance(prepared.form, LatexForm)
    assert isinstance(prepare_form({"kind": "lushi", "chars_per_line": 7}, tang).form, TangForm)


# --------------------------------------------------------------------------- the sampling script
def run_sample(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textgen.sample", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_sample_script_writes_forms(tiny_tang, tiny_stacks):
    done = run_sample(f"checkpoint={tiny_tang}", "form=jueju", "chars_per_line=7", "acrostic=春夏秋冬", "title=春日",
                      "rhyme=true", "n=2", "seed=1")
    assert done.returncode == 0, done.stderr
    poems = re.findall(r"春日\n(.*?)\n(?=---|$)", done.stdout + "---", re.S)
    assert len(poems) == 2 and all(poem_problems(p, 7, 4, "春夏秋冬") == [] for p in poems), done.stdout
    assert "form_complete" in done.stderr
    done = run_sample(f"checkpoint={tiny_stacks}", "form=latex", "environment=lemma", "max_new_chars=60", "seed=2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("\\begin{lemma}\n") and done.stdout.rstrip().endswith("\\end{lemma}")
    assert latex_problems(done.stdout) == []
    done = run_sample(f"checkpoint={tiny_tang}", "form=lushi", "acrostic=春夏秋冬")
    assert done.returncode == 2 and "form.acrostic" in done.stderr
