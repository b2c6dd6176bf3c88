"""The rules that make papers read like papers (issue 33), on the shipped Stacks vocabulary and the
Stacks bibliography: references resolve, citations name the bibliography's works, formulas stay
narrower than the page, pieces end at a sentence end outside math; then the same through sampling
with the tiny trained model, and a citation through real BibTeX and pdflatex."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace

import pytest
from conftest import DATA_DIR, REPO

from textgen.export import load_export
from textgen.forms.bibliography import bib_entries, cited_entries, cited_keys
from textgen.forms.latex import LatexGrammar, Rules, prepare_latex
from textgen.forms.latex_vocab import Vocabulary
from textgen.paper import paper_document
from textgen.pdflatex import compile_latex, wrap_document
from textgen.sampling import SamplingParams, generate

SHIPPED = REPO / "checkpoints" / "stacks-gru"
LEMMA = "\\begin{lemma}\n\\label{lemma-foo}\nLet $X$ be a scheme.\n\\end{lemma}\n"
PAPER = Rules(sentences=True, sections=False)


@pytest.fixture(scope="module")
def bibliography() -> str:
    return (SHIPPED / "bibliography.bib").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def grammar(bibliography):
    vocab = Vocabulary.from_json((SHIPPED / "latex.json").read_text(encoding="utf-8"))
    return LatexGrammar(vocab, frozenset(bib_entries(bibliography)))


def writing(grammar, text: str = "", rules: Rules = Rules()):
    """The state after ``text`` read as a prompt, from which the model writes."""
    return replace(grammar.start(rules=rules).read(text), writing=True)


def test_the_shipped_models_carry_the_stacks_bibliography(bibliography):
    entries = bib_entries(bibliography)
    assert len(entries) == 704 and "EGA" in entries and entries["EGA"].startswith("@")
    source = DATA_DIR / "stacks" / "my.bib"
    if source.is_file():
        assert source.read_text(encoding="utf-8") == bibliography
    assert (REPO / "checkpoints" / "stacks-lstm" / "bibliography.bib").read_text(encoding="utf-8") == bibliography


def test_a_reference_completes_only_to_a_label_already_defined(grammar):
    fresh = writing(grammar)
    assert fresh.read("see \\ref{") is None  # nothing to refer to yet: no reference starts
    assert grammar.start().read("see \\ref{anything}") is not None  # a prompt may refer to anything
    after = writing(grammar, LEMMA)
    assert after.read("By Lemma \\ref{lemma-foo}.") is not None
    assert after.read("By Lemma \\ref{lemma-fox") is None and after.read("\\ref{lemma-foo-bar}") is None
    assert after.read("By \\ref{").closing() == len("lemma-foo}")


def test_labels_go_where_numbers_are(grammar):
    assert writing(grammar, "Some text. ").read("\\label{x-y}") is None  # in a paragraph: no number
    assert writing(grammar, "\\begin{lemma}\n").read("\\label{lemma-bar}") is not None
    assert writing(grammar, "\\begin{equation}\n").read("\\label{equation-bar}") is not None
    assert writing(grammar, LEMMA + "\\begin{lemma}\n").read("\\label{lemma-foo}") is None  # never twice


def test_a_citation_names_a_work_of_the_bibliography(grammar, bibliography):
    state = writing(grammar, "See ")
    assert state.read("\\cite{EGA}") is not None and state.read("\\cite{Nobody-1999}") is None
    no_bib = LatexGrammar(grammar.vocab)
    assert replace(no_bib.start().read("See "), writing=True).read("\\cite{") is None
    assert cited_keys("\\cite{EGA} and \\cite{F, EGA}") == ["EGA", "F"]
    assert cited_entries(bibliography, "\\cite{EGA}").count("@") == 1


def test_a_formula_stays_narrower_than_the_page(grammar):
    chain = "A \\longrightarrow " * 20
    assert grammar.start().read("\\begin{equation}\n" + chain) is not None  # a prompt is read as written
    state = writing(grammar, "\\begin{equation}\n")
    for i in range(20):
        step = state.read("A \\longrightarrow ")
        if step is None:
            break
        state = step
    assert 5 <= i < 20 and state.width <= grammar.vocab.display_width_pt
    assert state.read("A") is not None or state.read("\\end{equation}") is not None  # it can always close
    assert state.read("\\end{equation}") is not None
    inline = writing(grammar, "Then ")
    assert inline.read("$" + "x + " * 40 + "$") is None  # an inline formula, too
    assert inline.read("$" + "x + " * 5 + "y$") is not None


def test_a_line_before_an_unbreakable_inline_formula_stretches_rather_than_runs_over(grammar):
    """Seed 2's lemma (stacks-gru): its first line holds few spaces, and the formula after it breaks
    only after its arrow, 80 pt in; plain LaTeX ran the line 18 pt past the margin."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is needed (apt-get install texlive-latex-base)")
    preamble = (SHIPPED / "preamble.tex").read_text(encoding="utf-8")
    body = ("\\begin{lemma}\n\\label{lemma-a}\nLet $\\mathcal{A}$ be a triangulated category. Note that the map\n"
            "$\\QCoh(\\mathcal{O}_\\QCoh(\\mathcal{O}_X) \\to \\QCoh^*$.\n\\end{lemma}\n")
    assert writing(grammar, "", PAPER).read(body) is not None  # the form writes it: its widths are in bounds
    overfull = re.compile(r"^Overfull \\hbox \(([\d.]+)pt too wide\)", re.M)
    plain = compile_latex(wrap_document(preamble, body), timeout_s=120)
    assert plain.ok and [float(w) > 10 for w in overfull.findall(plain.log)] == [True]  # what the paper had
    paper = compile_latex(paper_document(preamble, body, grammar.vocab), timeout_s=120)
    assert paper.ok, paper.error
    assert overfull.findall(paper.log) == [] and paper.pages == 1


def test_a_piece_ends_at_a_sentence_end_outside_math(grammar):
    state = writing(grammar, "\\begin{lemma}\n\\label{lemma-a}\nLet $X$ be a scheme and let us see", PAPER)
    assert state.read("\\end{lemma}") is None  # not mid-sentence
    assert state.read(".\n\\end{lemma}") is not None
    assert state.closing() == len(".\\end{lemma}")
    math = writing(grammar, "\\begin{lemma}\n\\label{lemma-a}\nLet $X$ be a scheme over $X", PAPER)
    assert math.closing() == len("$.\\end{lemma}")
    display = writing(grammar, "\\begin{lemma}\n\\label{lemma-a}\nThen we see\n$$\nn", PAPER)  # seed 13 ended "\\{!$$"
    assert display.read("!$$\n\\end{lemma}") is None  # in math "!" is a factorial: the sentence goes on
    assert display.read(".$$\n\\end{lemma}") is not None  # the period of a display ends its sentence
    assert writing(grammar, "", PAPER).read("\\section{Foo}") is None  # the paper writes its own sections
    assert writing(grammar, "").read("\\section{Foo}") is not None


def test_a_sentence_the_budget_closes_begins_nothing_new():
    """In the last ``word_chars`` no word, formula, command, bracket or quote starts (a sentence
    the budget closed ended "((?")."""
    loaded = load_export(SHIPPED)
    prepared = prepare_latex(loaded, "lemma", "\\label{lemma-a}\nLet $X$ be a scheme and", "", PAPER)
    form = prepared.new_constraint()
    form.close_after_sentence(10, word_chars=16)
    form.advance(0, " ")
    closing = len(".\\end{lemma}")
    form.set_remaining(closing + 8)
    allowed = {loaded.tokenizer.decode([i]) for i in form.allowed().nonzero().flatten().tolist()}
    assert "." in allowed and not allowed & set("(x[{`$\\")
    form.set_remaining(closing + 40)  # far from the end: anything
    allowed = {loaded.tokenizer.decode([i]) for i in form.allowed().nonzero().flatten().tolist()}
    assert set("(x$\\") <= allowed


def test_sampled_pieces_refer_back_and_end_sentences(tiny_stacks):
    loaded = load_export(tiny_stacks)
    context = ("\\begin{lemma}\n\\label{lemma-one}\nLet $X$ be a scheme.\n\\end{lemma}\n\n"
               "\\begin{lemma}\n\\label{lemma-other}\nLet $Y$ be a scheme.\n\\end{lemma}\n\n")
    prepared = prepare_latex(loaded, None, "By Lemma \\ref{", context, PAPER)
    for budget in (40, 120):
        samples = generate(loaded, prepared.prompt, SamplingParams(n=16, seed=budget, temperature=1.2,
                                                                   max_new_chars=budget),
                           constraint=lambda i: prepared.new_constraint())
        for sample in samples:
            whole = prepared.echo + sample.text
            for name in re.findall(r"\\(?:eq)?ref\{([^}]*)\}", whole):
                assert name in ("lemma-one", "lemma-other"), whole
            text = re.sub(r"(\\end\{[^}]*\}\s*)+$", "", whole.rstrip()).rstrip()
            assert text[-1] in ".?!" and len(re.findall(r"(?<!\\)\$", text)) % 2 == 0, whole
            assert "\\label{" not in sample.text and "\\section" not in sample.text


def test_a_citation_compiles_through_bibtex(bibliography):
    if shutil.which("pdflatex") is None or shutil.which("bibtex") is None:
        pytest.skip("pdflatex and bibtex are needed (apt-get install texlive-latex-base texlive-binaries)")
    preamble = (SHIPPED / "preamble.tex").read_text(encoding="utf-8")
    body = "As in \\cite{EGA} and \\cite{Hartshorne}.\n\n\\bibliographystyle{amsalpha}\n\\bibliography{paper}"
    result = compile_latex(wrap_document(preamble, body), timeout_s=120, passes=2, bibtex=True,
                           files={"paper.bib": cited_entries(bibliography, body)})
    assert result.ok, result.error
    assert "Citation" not in result.log and "I didn't find" not in result.bibtex_log
    assert "References" in result.log or result.pages >= 1
