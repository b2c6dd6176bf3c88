"""A LaTeX export's bibliography: the BibTeX file its ``\\cite`` keys come from.

An export trained on a corpus with ``data.bibliography`` (the Stacks project's ``my.bib``) carries
it as ``bibliography.bib``.  The ``latex`` form lets ``\\cite{`` complete only to its keys
(:class:`textgen.forms.latex.LatexGrammar`), and :mod:`textgen.paper` ends a paper with the
entries it cited, through BibTeX.  Entries come from the file, never from the model: a cited work
must exist, and BibTeX entries are a language of their own that the model was not trained on.
"""

from __future__ import annotations

import re
from pathlib import Path

BIBLIOGRAPHY_FILE = "bibliography.bib"
BIBLIOGRAPHY_STYLE = "amsalpha"  # the Stacks project's style; in every TeX Live with amscls
_ENTRY = re.compile(r"^@([A-Za-z]+)\s*\{\s*([^,\s]+)\s*,", re.M)
_CITE = re.compile(r"\\cite\{([^}]*)\}")
_SKIPPED_TYPES = frozenset({"string", "preamble", "comment"})


def bib_entries(text: str) -> dict[str, str]:
    """key -> the whole entry (``@TYPE{key, ...}``) of a BibTeX file, in file order."""
    entries: dict[str, str] = {}
    starts = list(_ENTRY.finditer(text))
    for i, match in enumerate(starts):
        if match.group(1).lower() in _SKIPPED_TYPES:
            continue
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[match.start():end]
        close = _entry_end(body)
        entries[match.group(2)] = body[:close].rstrip() + "\n"
    return entries


def _entry_end(body: str) -> int:
    """Where the entry that ``body`` starts with ends (after its closing brace)."""
    depth = 0
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(body)


def cited_keys(latex: str) -> list[str]:
    """The keys ``latex`` cites, in order of first citation (``\\cite{a,b}`` gives both)."""
    keys: list[str] = []
    for match in _CITE.finditer(latex):
        for key in match.group(1).split(","):
            key = key.strip()
            if key and key not in keys:
                keys.append(key)
    return keys


def cited_entries(bibliography: str, latex: str) -> str:
    """The entries of ``bibliography`` that ``latex`` cites (a .bib file of its own)."""
    entries = bib_entries(bibliography)
    return "\n".join(entries[key] for key in cited_keys(latex) if key in entries)


def read_bibliography(folder: str | Path) -> str | None:
    """The export's ``bibliography.bib``, or None when it has none."""
    path = Path(folder) / BIBLIOGRAPHY_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None
