"""Bits per character of an export on a UTF-8 file: ``python -m textgen.evaluate checkpoint=... file=...``.

Windows and contexts are exactly those of validation during training, so the val file of a
corpus reproduces the export's recorded ``val_bpc``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig

from textgen.cli import hydra_command
from textgen.evaluation import evaluate_text
from textgen.export import ExportError, load_export, resolve_export
from textgen.tokenizer import TokenizerError


def run(cfg: DictConfig) -> int:
    """Evaluate as ``cfg`` says; returns a process exit code."""
    try:
        loaded = load_export(resolve_export(cfg.checkpoint), device=cfg.device, quantize=str(cfg.quantize),
                             encoder_runtime=str(cfg.encoder_runtime))
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
                          "encoder_runtime": loaded.encoder_runtime, **result.to_dict()}))
    else:
        weights = "" if loaded.quantize == "none" else f" ({loaded.quantize} weights)"
        weights += "" if loaded.encoder_runtime == "torch" else f" ({loaded.encoder_runtime} encoder)"
        print(f"{loaded.name}{weights} on {path}: {result.bpc:.4f} bits/char ({result.loss:.4f} nats/char), "
              f"{result.chars:,} characters in {result.seconds:.1f} s ({result.chars_per_second:,.0f} chars/s)")
    return 0


main = hydra_command("evaluate", run)


if __name__ == "__main__":
    main()
