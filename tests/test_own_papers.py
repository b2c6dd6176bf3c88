"""Imitate your own papers: a folder of .tex files and their preamble -> a model -> a paper in that
style, compiled with that preamble.  The corpus is built here and differs from the Stacks project in
every way the paper command depends on: the document class's preamble, the macros, and theorem-like
environments named ``thm``/``lem``/``defn`` (none of the paper's default ``blocks``)."""

from __future__ import annotations

import random
import re
import shutil

import pytest
from conftest import TINY_MODEL, cli

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage{amsmath,amssymb,amsthm}
\newtheorem{thm}{Theorem}[section]
\newtheorem{lem}[thm]{Lemma}
\theoremstyle{definition}
\newtheorem{defn}[thm]{Definition}
\newcommand{\RR}{\mathbb{R}}
\newcommand{\PP}{\mathbb{P}}
\DeclareMathOperator{\Var}{Var}
"""

NOUNS = ["estimator", "random walk", "martingale", "sample mean", "test statistic", "kernel density"]
ADJECTIVES = ["unbiased", "consistent", "bounded", "ergodic", "stationary", "integrable"]


def paper_text(rng: random.Random, index: int) -> str:
    """One small probability paper: sections, definitions, lemmas with proofs, labelled displays."""
    parts = []
    for section in range(3):
        tag = f"{index}-{section}"
        noun, adjective = rng.choice(NOUNS), rng.choice(ADJECTIVES)
        parts.append(f"\\section{{On the {noun}}}\n\nLet $X_1, \\ldots, X_n$ be random variables in $\\RR$ "
                     f"with $\\Var(X_i) \\leq \\sigma^2$. We study the {adjective} {noun}.\n")
        parts.append(f"\\begin{{defn}}\n\\label{{defn:{tag}}}\nA {noun} $T$ is {adjective} if "
                     f"$\\PP(T > t) \\leq e^{{-t}}$ for all $t \\geq 0$.\n\\end{{defn}}\n")
        parts.append(f"\\begin{{lem}}\n\\label{{lem:{tag}}}\nEvery {adjective} {noun} satisfies\n"
                     f"\\begin{{equation}}\n\\label{{eq:{tag}}}\n\\Var(T) \\leq 2 \\sigma^2 + n.\n\\end{{equation}}\n"
                     f"\\end{{lem}}\n")
        parts.append(f"\\begin{{proof}}\nBy Definition~\\ref{{defn:{tag}}} and \\eqref{{eq:{tag}}} the "
                     f"{noun} is {adjective}. Hence $\\PP(T > t) \\leq \\sigma^2 / t^2$.\n\\end{{proof}}\n")
        parts.append(f"\\begin{{thm}}\n\\label{{thm:{tag}}}\nIf $T$ is {adjective} then Lemma~\\ref{{lem:{tag}}} "
                     f"holds for every $n \\geq 1$.\n\\end{{thm}}\n")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def own_papers(tmp_path_factory):
    """A tiny model trained on a folder of such papers, with their preamble."""
    tmp = tmp_path_factory.mktemp("own-papers")
    folder = tmp / "papers"
    folder.mkdir()
    rng = random.Random(0)
    for index in range(40):
        (folder / f"paper{index:02d}.tex").write_text(paper_text(rng, index), encoding="utf-8")
    preamble = tmp / "preamble.tex"
    preamble.write_text(PREAMBLE, encoding="utf-8")
    cli("train", "data=text", f"data.path={folder}", "data.name=own-papers", f"data.preamble={preamble}",
        f"export.dir={tmp / 'checkpoints'}", "export.name=own-papers", f"hydra.run.dir={tmp / 'runs'}",
        "trainer.max_steps=150", *TINY_MODEL)
    return tmp / "checkpoints" / "own-papers"


def test_a_paper_in_the_style_of_your_own_compiles_with_their_preamble(own_papers, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    assert (own_papers / "preamble.tex").read_text(encoding="utf-8") == PREAMBLE
    out = tmp_path / "mine.pdf"
    done = cli("paper", f"checkpoint={own_papers}", f"out={out}", "sections=2", "max_chars=1500", "seed=3",
               "title=Tail bounds")
    # the default blocks name Stacks environments: the command says which of the model's own it uses
    assert "lacks some of blocks=" in done.stderr and "lemma -> lem" in done.stderr
    assert "definition -> defn" in done.stderr
    tex = (tmp_path / "mine.tex").read_text(encoding="utf-8")
    assert tex.startswith(PREAMBLE.rstrip()) and "\\newcommand{\\RR}" in tex
    assert "\\begin{lem}" in tex and "\\begin{defn}" in tex and "\\begin{lemma}" not in tex
    # numbered pieces carry labels, and every reference names one defined before it
    labels = re.findall(r"\\label\{([^}]*)\}", tex)
    assert labels and len(labels) == len(set(labels))
    body = tex.index("\\maketitle")  # the abstract, written last, may refer to anything in the body
    for match in re.finditer(r"\\(?:eq)?ref\{([^}]*)\}", tex):
        assert match.group(1) in labels, match.group(0)
        assert match.start() < body or f"\\label{{{match.group(1)}}}" in tex[:match.start()], match.group(0)
    assert out.read_bytes().startswith(b"%PDF") and f"wrote {out}: " in done.stdout


def test_blocks_follow_the_models_environments(own_papers):
    from textgen.export import load_export
    from textgen.forms.latex import latex_tables
    from textgen.paper import resolve_blocks

    grammar = latex_tables(*(lambda m: (m.tokenizer, m.path))(load_export(own_papers)))[0].grammar
    blocks, notes = resolve_blocks(["text", "definition", "lemma", "proof", "equation", "remark", "proposition",
                                    "proof"], grammar)
    theorems = set(grammar.vocab.theorem_names())
    assert theorems == {"thm", "lem", "defn"}
    assert blocks[:4] == ["text", "defn", "lem", "proof"] and "equation" in blocks
    assert all(b in theorems or b in ("text", "proof", "equation") for b in blocks)
    # a proof only ever follows a theorem-like environment
    assert all(blocks[i - 1] in theorems for i, b in enumerate(blocks) if b == "proof")
    assert any(n.startswith("remark -> ") for n in notes)
