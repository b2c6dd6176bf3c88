"""What a KaTeX renderer needs to show a LaTeX model's math as pdflatex would: the preamble's macros
(``GET /v1/models/<name>/latex``, read by the page)."""

from __future__ import annotations

import re

from textgen.data.latex_scan import skip_group


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
        end = skip_group(line, start)
        if end > len(line) or line[end - 1] != "}":
            continue
        body = line[start + 1:end - 1]
        macros["\\" + match.group(2)] = f"\\operatorname{{{body}}}" if match.group(1).startswith("Declare") else body
    return macros
