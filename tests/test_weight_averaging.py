"""callbacks=ema: training validates, checkpoints and exports an exponential moving average of the weights."""

import json

import torch
from test_cli import quick_train

from textgen.export import load_export


def test_ema_exports_the_averaged_weights_and_checkpoints_keep_the_raw_ones(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400, encoding="utf-8")
    quick_train(tmp_path, corpus, "export.name=ema", f"hydra.run.dir={tmp_path / 'run'}", "callbacks=ema",
                "callbacks.ema.decay=0.5", "optim.lr=0.01", "trainer.max_steps=6", "trainer.val_check_interval=3")
    best_step = json.loads((tmp_path / "ck" / "ema" / "metrics.json").read_text())["best_step"]
    # Our own Lightning checkpoint: its format needs the full unpickler.
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / f"best-{best_step}.ckpt", weights_only=False)
    averaged = {name.removeprefix("model."): value for name, value in checkpoint["state_dict"].items()}
    raw = {name.removeprefix("model."): value for name, value in checkpoint["current_model_state"].items()}
    exported = load_export(tmp_path / "ck" / "ema").model.state_dict()
    assert set(exported) == set(averaged) == set(raw)
    assert all(torch.equal(exported[name], averaged[name]) for name in exported)
    assert not all(torch.equal(averaged[name], raw[name]) for name in raw)  # 0.5 per step: far from the raw
