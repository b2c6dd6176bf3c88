"""Bits per character of an export on a UTF-8 file: ``python -m textgen.evaluate checkpoint=... file=...``.

Windows and contexts are exactly those of validation during training, so the val file of a
corpus reproduces the export's recorded ``val_bpc``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from textgen.cli import command_line
from textgen.evaluation import evaluate_text
from textgen.export import ExportError, load_export, resolve_export
from textgen.tokenizer import TokenizerError

CONFIG_PATH = str(Path(__file__).resolve().parent.parent / "conf")


def run(cfg: DictConfig) -> int:
    """Evaluate as ``cfg`` says; returns a process exit code."""
    try:
        loaded = load_export(resolve_export(cfg.checkpoint), device=cfg.device, quantize=str(cfg.quantize))
        path = Path(cfg.file)
        text = path.read_text(encoding="utf-8")
        if not text:
            raise ValueError(f"{path} is empty")
        result = evaluate_text(loaded, text, batch_size=cfg.batch_size, max_chars=cfg.max_chars,
                               progress=cfg.progress and not cfg.json)
    except UnicodeDecodeError as error:
        print(f"error: {cfg.file} is not UTF-8 text ({error.reason} at byte {error.start})", file=sys.stderr)
        return 2
    except (ExportError, TokenizerError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if cfg.json:
        print(json.dumps({"checkpoint": str(loaded.path), "file": str(path), "quantize": loaded.quantize,
                          **result.to_dict()}))
    else:
        weights = "" if loaded.quantize == "none" else f" ({loaded.quantize} weights)"
        print(f"{loaded.name}{weights} on {path}: {result.bpc:.4f} bits/char ({result.loss:.4f} nats/char), "
              f"{result.chars:,} characters in {result.seconds:.1f} s ({result.chars_per_second:,.0f} chars/s)")
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


def main() -> None:
    """Entry point; ``--json`` is accepted as a spelling of ``json=true``, non-ASCII values as typed."""
    sys.argv[1:] = command_line(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
