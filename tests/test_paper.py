"""``python -m textgen.paper``: a whole paper from the tiny Stacks model, compiled by real pdflatex;
without pdflatex it writes the .tex and says how to install LaTeX; LaTeX's error reaches the user."""

from __future__ import annotations

import os
import shutil
import stat
import sys

import pytest
from conftest import cli

SMALL = ["sections=1", "max_chars=900", "seed=1"]


def test_a_paper_compiles_to_pdf(tiny_stacks, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended "
                    "texlive-pictures lmodern)")
    out = tmp_path / "paper.pdf"
    done = cli("paper", f"checkpoint={tiny_stacks}", f"out={out}", "title=On tiny schemes", *SMALL)
    assert out.read_bytes().startswith(b"%PDF")
    tex = (tmp_path / "paper.tex").read_text(encoding="utf-8")
    assert "\\title{On tiny schemes}" in tex and "\\begin{abstract}" in tex and "\\maketitle" in tex
    assert tex.count("\\section{") == 1 and "\\begin{lemma}" in tex and "\\begin{proof}" in tex
    assert tex.index("\\begin{lemma}") < tex.index("\\begin{proof}")
    assert "[paper 1/" in done.stderr and "abstract" in done.stderr  # progress while writing
    assert f"wrote {out}: " in done.stdout and " page" in done.stdout


def test_without_pdflatex_the_tex_is_written_and_latex_named(tiny_stacks, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "paper.pdf"
    done = cli("paper", f"checkpoint={tiny_stacks}", f"out={out}", *SMALL, env={"PATH": str(empty)})
    assert (tmp_path / "paper.tex").is_file() and not out.exists()
    hint = [line for line in done.stdout.splitlines() if "pdflatex not found" in line]
    assert len(hint) == 1 and "apt-get install texlive-latex-base" in hint[0]


def test_a_latex_error_is_shown_and_the_tex_kept(tiny_stacks, tmp_path):
    # A pdflatex that fails as TeX does (its log names the error), to reach the error path.
    fake = tmp_path / "bin" / "pdflatex"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '! Undefined control sequence.\\nl.7 \\\\foo\\n' > text.log\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "paper.pdf"
    done = cli("paper", f"checkpoint={tiny_stacks}", f"out={out}", *SMALL, check=False,
               env={"PATH": f"{fake.parent}{os.pathsep}{os.path.dirname(sys.executable)}"})
    assert done.returncode == 1
    assert "! Undefined control sequence. l.7 \\foo" in done.stderr and "(kept)" in done.stderr
    assert (tmp_path / "paper.tex").is_file() and not out.exists()
