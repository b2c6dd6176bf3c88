"""Make an export a shipped model: copy it into ``checkpoints/`` and record its score on the
first 20,000 characters of its corpus's validation text (what ``tests/test_shipped_models.py``
checks it against).

    TEXTGEN_DATA_DIR=../shared/data python benchmarks/ship_checkpoint.py .bench/checkpoints/X \
        --name shakespeare-lstm

The export is copied as it is (weights, tokenizer, config, the training command in
``metrics.json``); only ``metrics.json`` gains ``val_first_20000_bpc`` and, when renamed,
``shipped_from``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from textgen.atomic import atomic_directory
from textgen.data.corpus import CorpusConfig, load_corpus
from textgen.evaluation import evaluate_text
from textgen.export import load_export, read_info, read_metrics

FIRST_CHARS = 20_000


def validation_text(corpus: str) -> str:
    """The validation split of a registered corpus, as training saw it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from textgen.train import CONFIG_PATH

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        data = compose("train", overrides=[f"data={corpus}"]).data
    return load_corpus(CorpusConfig.from_mapping(OmegaConf.to_container(data, resolve=True))).val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--name", help="folder name under checkpoints/ (default: the export's)")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    args = parser.parse_args()

    info = read_info(args.export)
    name = args.name or args.export.name
    metrics = read_metrics(args.export)
    score = evaluate_text(load_export(args.export), validation_text(info.corpus)[:FIRST_CHARS])
    metrics["val_first_20000_bpc"] = round(score.bpc, 5)
    if name != args.export.name:
        metrics["shipped_from"] = args.export.name
    dest = args.checkpoints / name
    with atomic_directory(dest) as tmp:
        for item in args.export.iterdir():
            if item.is_file() and item.name not in ("metrics.json", "config.json"):
                shutil.copy2(item, tmp / item.name)
        config = json.loads((args.export / "config.json").read_text(encoding="utf-8"))
        config["name"] = name
        (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print(f"shipped {dest}: val bpc {metrics['val_bpc']:.4f}, first {FIRST_CHARS:,} val chars {score.bpc:.4f}")


if __name__ == "__main__":
    main()
