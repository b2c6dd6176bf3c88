"""A LaTeX export's files: ``latex.json`` and ``preamble.tex`` (their names, writing and reading
them), and the command that gives an export trained on LaTeX them and ``bibliography.bib``
(weights untouched).

``python -m textgen.latex_export checkpoints/stacks-gru --corpus train.txt --preamble preamble.tex``
builds the vocabulary (:mod:`textgen.data.latex_scan`) from the corpus the export was trained
on, checks it with pdflatex when installed, and writes both files into the export folder
(:func:`write_latex_files`; the ``latex`` form reads them with :func:`read_latex_files`).
``--bibliography my.bib`` (alone, or with them) copies the corpus' BibTeX file in, checked to hold
entries: ``\\cite`` then completes only to its keys.  New exports of a corpus with ``data.preamble``
(and ``data.bibliography``) get them at training time.
"""

from __future__ import annotations

from pathlib import Path

from textgen.atomic import atomic_write_text
from textgen.data.latex_scan import build_checked
from textgen.forms.bibliography import BIBLIOGRAPHY_FILE, bib_entries
from textgen.forms.latex_vocab import Vocabulary

VOCABULARY_FILE, PREAMBLE_FILE = "latex.json", "preamble.tex"
"""The LaTeX files of an export: its vocabulary (:class:`~textgen.forms.latex_vocab.Vocabulary`) and preamble."""


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


def main(argv: list[str] | None = None) -> int:
    """``python -m textgen.latex_export EXPORT [--corpus FILE --preamble FILE] [--bibliography FILE]``:
    give an existing export (one trained before exports carried them) its LaTeX files."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m textgen.latex_export", description=main.__doc__)
    parser.add_argument("export", type=Path, help="export folder (its weights are not touched)")
    parser.add_argument("--corpus", type=Path, help="the LaTeX text it was trained on")
    parser.add_argument("--preamble", type=Path, help="the preamble that text compiles with")
    parser.add_argument("--bibliography", type=Path, help="the BibTeX file the text cites")
    args = parser.parse_args(argv)
    if not (args.export / "config.json").is_file():
        parser.error(f"{args.export} is not an export folder")
    if (args.corpus is None) != (args.preamble is None):
        parser.error("--corpus and --preamble go together")
    if args.corpus is None and args.bibliography is None:
        parser.error("nothing to add: give --corpus and --preamble, or --bibliography, or all three")
    if args.bibliography is not None:
        text = args.bibliography.read_text(encoding="utf-8")
        entries = bib_entries(text)
        if not entries:
            parser.error(f"{args.bibliography} holds no BibTeX entry")
        atomic_write_text(args.export / BIBLIOGRAPHY_FILE, text)
        print(f"{args.export}: {BIBLIOGRAPHY_FILE} with {len(entries)} entries")
    if args.corpus is not None:
        preamble = args.preamble.read_text(encoding="utf-8")
        vocab = build_checked(args.corpus.read_text(encoding="utf-8"), preamble,
                              source={"corpus": args.corpus.name, "preamble": args.preamble.name})
        write_latex_files(args.export, vocab, preamble)
        print(f"{args.export}: {len(vocab.commands)} commands, {len(vocab.environments)} environments, "
              f"{'checked with pdflatex' if vocab.verified else 'NOT checked (no pdflatex)'}; "
              f"dropped: {', '.join(vocab.source.get('dropped_by_pdflatex', [])) or 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
