"""The pdflatex driver: compile a document in a temporary folder and read what pdflatex said.

Used by the vocabulary's check (:mod:`textgen.data.latex_scan`), the paper script
(:mod:`textgen.paper`), the server's paper route and the benchmarks; :func:`wrap_document` is the
document a ``latex`` form text compiles in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


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
