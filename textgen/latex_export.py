"""Give an export trained on LaTeX its ``latex.json`` and ``preamble.tex`` (weights untouched).

``python -m textgen.latex_export checkpoints/stacks-gru --corpus train.txt --preamble preamble.tex``
builds the vocabulary of :mod:`textgen.forms.latex_vocab` from the corpus the export was trained
on, checks it with pdflatex when installed, and writes both files into the export folder.  New
exports of a corpus with ``data.preamble`` get them at training time.
"""

from __future__ import annotations

from pathlib import Path

from textgen.forms.latex_vocab import build_checked, write_latex_files


def main(argv: list[str] | None = None) -> int:
    """``python -m textgen.latex_export EXPORT --corpus FILE --preamble FILE``: give an existing
    export (one trained before exports carried them) its ``latex.json`` and ``preamble.tex``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m textgen.latex_export", description=main.__doc__)
    parser.add_argument("export", type=Path, help="export folder (its weights are not touched)")
    parser.add_argument("--corpus", type=Path, required=True, help="the LaTeX text it was trained on")
    parser.add_argument("--preamble", type=Path, required=True, help="the preamble that text compiles with")
    args = parser.parse_args(argv)
    if not (args.export / "config.json").is_file():
        parser.error(f"{args.export} is not an export folder")
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
