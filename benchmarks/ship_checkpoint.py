"""Make an export a shipped model: copy it into ``checkpoints/`` and record its score on the
first 20,000 characters of its corpus's validation text (what ``tests/test_shipped_models.py``
checks it against).

    TEXTGEN_DATA_DIR=../shared/data python benchmarks/ship_checkpoint.py .bench/checkpoints/X \
        --name shakespeare-gru --dtype float16

The export is written again with the same weights, tokenizer, training config and metrics (the
training command is in ``metrics.json``), stored in ``--dtype`` if given (``float16`` keeps a
2x512 model under 20 MB); ``metrics.json`` gains ``val_first_20000_bpc``, scored on the weights as
stored, ``"shipped": true`` (so that training never writes over it), and, when renamed,
``shipped_from``; ``config.json`` lists the pieces that never occur in
the corpus's train split (counted now for exports older than that field), which sampling masks;
a LaTeX export's ``preamble.tex``, ``latex.json`` and ``bibliography.bib`` are carried over unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from safetensors import safe_open

from textgen.data.corpus import CorpusConfig, load_corpus
from textgen.data.tokens import absent_pieces
from textgen.evaluation import evaluate_text
from textgen.export import DTYPES, SHIPPED, TRAINING, WEIGHTS, export_model, load_export, read_metrics
from textgen.forms.bibliography import BIBLIOGRAPHY_FILE
from textgen.latex_export import PREAMBLE_FILE, VOCABULARY_FILE

FIRST_CHARS = 20_000


def corpus_splits(corpus: str) -> tuple[str, str]:
    """The train and validation splits of a registered corpus, as training saw them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from textgen.train import CONFIG_PATH

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        data = compose("train", overrides=[f"data={corpus}"]).data
    loaded = load_corpus(CorpusConfig.from_mapping(OmegaConf.to_container(data, resolve=True)))
    return loaded.train, loaded.val


def stored_dtype(export: Path) -> str:
    """The dtype an export's weights are stored in (its safetensors metadata)."""
    with safe_open(str(export / WEIGHTS), framework="pt") as weights:
        return (weights.metadata() or {}).get("dtype", "float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--name", help="folder name under checkpoints/ (default: the export's)")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--dtype", choices=sorted(DTYPES),
                        help="store the weights in this dtype (default: as the export stores them)")
    args = parser.parse_args()

    loaded = load_export(args.export)
    name = args.name or args.export.name
    dtype = args.dtype or stored_dtype(args.export)
    # Score the weights as they will be stored: rounded to the shipped dtype, computed in float32.
    loaded.model.load_state_dict({k: v.to(DTYPES[dtype]).float() for k, v in loaded.model.state_dict().items()})
    metrics = read_metrics(args.export)
    train, val = corpus_splits(loaded.info.corpus)
    score = evaluate_text(loaded, val[:FIRST_CHARS])
    untrained = loaded.info.untrained_pieces  # exports older than the field: count them now
    if not untrained:
        untrained = absent_pieces(np.asarray(loaded.tokenizer.encode(train)), loaded.tokenizer.vocab_size)
    metrics["val_first_20000_bpc"] = round(score.bpc, 5)
    metrics[SHIPPED] = True
    if name != args.export.name:
        metrics["shipped_from"] = args.export.name
    training = (args.export / TRAINING).read_text(encoding="utf-8")
    # A LaTeX export's preamble and vocabulary go with it: the latex form cannot run without them.
    extras = {file: (args.export / file).read_text(encoding="utf-8")
              for file in (PREAMBLE_FILE, VOCABULARY_FILE, BIBLIOGRAPHY_FILE) if (args.export / file).is_file()}
    dest = export_model(
        args.checkpoints / name, loaded.model, loaded.tokenizer, name=name, corpus=loaded.info.corpus,
        context_chars=loaded.info.context_chars, target_chars=loaded.info.target_chars,
        document_separator=loaded.info.document_separator, training_config=training, metrics=metrics, dtype=dtype, untrained_pieces=untrained,
        extra_files=extras,
    )
    print(f"shipped {dest} ({dtype}): val bpc {metrics['val_bpc']:.4f}, "
          f"first {FIRST_CHARS:,} val chars {score.bpc:.4f}; {len(untrained)} untrained pieces masked")


if __name__ == "__main__":
    main()
