"""Fine-tuning an export on new text (``init_from``): through the real CLI, and served without a restart."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, cli, corpus_file
from hydra import compose as compose_config
from hydra import initialize_config_dir
from live_server import LiveServer

from textgen.data.corpus import CorpusConfig, load_corpus
from textgen.evaluation import evaluate_text
from textgen.export import export_model, load_export
from textgen.sampling import SamplingParams, generate
from textgen.training.start import FineTuneError, apply_init_from, architecture_conflicts

pytestmark = pytest.mark.slow

# Smaller than conftest's TINY_MODEL: these tests train three times.
SMALL = ["model.embedding=32", "model.hidden=48", "model.layers=1", "model.encoder.hidden=24", "model.dropout=0.0",
         "data.context_chars=32", "data.target_chars=48", "data.batch_size=32", "data.stride=5",
         "trainer.val_check_interval=1000", "trainer.enable_progress_bar=false",
         "scheduler.warmup_steps=0", "scheduler.min_lr_ratio=1.0", "optim.lr=0.01"]
UNSEEN = "Ω鼹鼠"  # not in the source's training text: they must fall back to bytes


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A tiny Tang export (the 'shipped' model) and a user's file of new poems."""
    tmp = tmp_path_factory.mktemp("finetune")
    tang = corpus_file("tang").read_text(encoding="utf-8")
    (tmp / "base.txt").write_text(tang[:60_000], encoding="utf-8")
    # The user's poems: other poems (the end of the corpus), one with characters the model never saw.
    poems = tang[-24_000:].split("\n\n", 1)[1] + f"\n\n{UNSEEN}\n春眠不觉晓，处处闻啼鸟。\n"
    (tmp / "my_poems.txt").write_text(poems, encoding="utf-8")
    checkpoints = tmp / "checkpoints"
    cli("train", "data=text", f"data.path={tmp / 'base.txt'}", "data.name=tang", f"export.dir={checkpoints}",
        "export.name=tang", f"hydra.run.dir={tmp / 'runs' / 'tang'}", "trainer.max_steps=60", *SMALL)
    return {"tmp": tmp, "checkpoints": checkpoints, "source": checkpoints / "tang", "poems": tmp / "my_poems.txt"}


def finetune(ws: dict[str, Path], *extra: str, check: bool = True, steps: int = 60, export_dir: Path | None = None):
    return cli("train", "data=text", f"data.path={ws['poems']}", f"init_from={ws['source']}",
               f"export.dir={export_dir or ws['checkpoints']}", f"hydra.run.dir={ws['tmp'] / 'runs' / str(time.monotonic_ns())}",
               f"trainer.max_steps={steps}", "data.batch_size=16", "trainer.val_check_interval=1000",
               "trainer.enable_progress_bar=false", "optim.lr=0.01", "scheduler.warmup_steps=0", *extra, check=check)


def test_finetuning_lowers_bpc_keeps_the_tokenizer_and_leaves_the_source_untouched(workspace):
    source = workspace["source"]
    before = digest(source)
    result = finetune(workspace, "export.name=my-poems")
    assert "fall back to bytes" in result.stdout + result.stderr
    new = workspace["checkpoints"] / "my-poems"
    assert digest(source) == before  # the source export was only read
    assert (new / "tokenizer.model").read_bytes() == (source / "tokenizer.model").read_bytes()

    val = load_corpus(CorpusConfig(name="poems", path=str(workspace["poems"]))).val
    old_model, new_model = load_export(source), load_export(new)
    assert new_model.info.model == old_model.info.model  # the export's architecture
    assert (new_model.info.context_chars, new_model.info.target_chars) == (32, 48)  # and windows
    old_bpc, new_bpc = evaluate_text(old_model, val).bpc, evaluate_text(new_model, val).bpc
    assert new_bpc < old_bpc - 0.1, (old_bpc, new_bpc)

    metrics = json.loads((new / "metrics.json").read_text())
    text = workspace["poems"].read_text(encoding="utf-8")
    assert metrics["byte_fallback_chars"] == old_model.tokenizer.byte_fallback_count(text) >= len(UNSEEN)
    assert metrics["init_from_name"] == "tang" and metrics["text_chars"] == len(text)
    # The source was scored on the new val text before training, as evaluate scores it.
    assert metrics["source_val_bpc"] == pytest.approx(old_bpc, rel=1e-4)
    assert metrics["val_bpc"] == pytest.approx(new_bpc, rel=1e-3)

    sample = generate(new_model, "春", SamplingParams(max_new_chars=40, seed=1))[0]
    assert len(sample.text) == 40 and "\ufffd" not in sample.text


def test_document_contexts_are_trained_exported_and_evaluated_alike(workspace):
    """``data.document_contexts=true`` (the ci model's setting): the export records the separator and
    evaluation reads the windows as validation did, so the recorded val bpc is what evaluate gives."""
    result = finetune(workspace, "export.name=doc-contexts", "data.document_contexts=true", "data.prompt_windows=true")
    logged = re.search(r"training windows: [\d,]+ every 1 tokens and ([\d,]+) under a document's first line",
                       result.stdout + result.stderr)
    assert logged and int(logged[1].replace(",", "")) > 100  # a poem each (the file holds hundreds)
    new = load_export(workspace["checkpoints"] / "doc-contexts")
    assert new.info.document_separator == "\n\n"
    assert load_export(workspace["source"]).info.document_separator is None
    val = load_corpus(CorpusConfig(name="poems", path=str(workspace["poems"]))).val
    metrics = json.loads((workspace["checkpoints"] / "doc-contexts" / "metrics.json").read_text())
    assert metrics["val_bpc"] == pytest.approx(evaluate_text(new, val).bpc, rel=1e-4)
    new.info.document_separator = None  # read across documents instead: not what it was validated on
    assert metrics["val_bpc"] != pytest.approx(evaluate_text(new, val).bpc, rel=1e-4)


def test_layout_positions_can_be_added_when_fine_tuning_and_start_from_the_source(workspace):
    """The ci model's recipe: an export without layout positions gains them (their vectors start at
    zero, so before training the model scores what its source does); an export's own are kept."""
    finetune(workspace, "export.name=with-layout", "model.line_positions=6", "model.column_positions=12",
             "data.layout_chars=，。", "data.layout_loss_weight=1.0")
    new_path = workspace["checkpoints"] / "with-layout"
    new = load_export(new_path)
    assert (new.info.model.line_positions, new.info.model.column_positions) == (6, 12)
    assert new.info.model.newline_id == new.tokenizer.encode("\n")[0]
    assert new.model.line_embedding.weight.abs().sum() > 0  # trained
    val = load_corpus(CorpusConfig(name="poems", path=str(workspace["poems"]))).val
    metrics = json.loads((new_path / "metrics.json").read_text())
    assert metrics["source_val_bpc"] == pytest.approx(evaluate_text(load_export(workspace["source"]), val).bpc, rel=1e-4)
    assert metrics["val_bpc"] == pytest.approx(evaluate_text(new, val).bpc, rel=1e-3)
    sample = generate(new, "春", SamplingParams(max_new_chars=30, seed=1))[0]
    assert len(sample.text) == 30
    for runtime in ({"quantize": "int8"}, {"encoder_runtime": "onnxruntime"}):  # the CPU runtimes count alike
        assert generate(load_export(new_path, **runtime), "春", SamplingParams(max_new_chars=30, seed=1))[0].text
    result = cli("train", "data=text", f"data.path={workspace['poems']}", f"init_from={new_path}",
                 "model.line_positions=8", "export.name=other-layout", check=False)
    assert result.returncode == 2 and "model.line_positions=8 (the export has 6)" in result.stderr
    result = finetune(workspace, "export.name=bad-layout", f"data.layout_chars=，{UNSEEN[0]}",
                      "data.layout_loss_weight=1.0", check=False)
    assert result.returncode != 0 and f"data.layout_chars: ['{UNSEEN[0]}'] not in the tokenizer" in result.stderr


def test_an_architecture_override_that_contradicts_the_export_fails_before_training(workspace):
    started = time.monotonic()
    result = finetune(workspace, "model.hidden=64", "model=lstm", "model.peephole=true", "export.name=wrong",
                      check=False)
    assert result.returncode == 2
    assert "model.hidden=64 (the export has 48)" in result.stderr  # (printed as error: ...)
    assert "model.cell=lstm (the export has gru)" in result.stderr
    assert "model.peephole=True (the export has False)" in result.stderr
    assert not (workspace["checkpoints"] / "wrong").exists()
    assert time.monotonic() - started < 60  # no training happened (a run takes longer)


def test_the_source_name_is_refused_and_the_default_name_is_new(workspace):
    import textgen.train  # noqa: F401  (registers the run-name resolver)

    def compose(*overrides: str):
        overrides = ("data=text", f"data.path={workspace['poems']}", f"init_from={workspace['source']}",
                     f"export.dir={workspace['checkpoints']}", *overrides)
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
            return compose_config(config_name="train", overrides=list(overrides)), list(overrides)

    cfg, overrides = compose("export.name=tang")
    with pytest.raises(FineTuneError, match="never over its source"):
        apply_init_from(cfg, overrides)
    cfg, overrides = compose("model.dropout=0.2")
    apply_init_from(cfg, overrides)
    assert cfg.export.name == "tang-text" and cfg.model.hidden == 48 and cfg.model.dropout == 0.2
    assert (cfg.data.context_chars, cfg.data.target_chars) == (32, 48)


def test_architecture_conflicts_allow_what_may_change():
    exported = {"vocab_size": 99, "cell": "lstm", "hidden": 48, "layers": 1, "dropout": 0.0,
                "encoder": {"layers": 1, "hidden": 24}}
    cfg = {**exported, "hidden": 512, "dropout": 0.3, "encoder": {"layers": 1, "hidden": 256}}
    assert architecture_conflicts(exported, cfg, ["model.dropout=0.3", "optim.lr=1e-3"]) == []
    assert architecture_conflicts(exported, cfg, ["model.hidden=512", "+model.encoder.hidden=256"]) == [
        "model.hidden=512 (the export has 48)", "model.encoder.hidden=256 (the export has 24)"]
    assert architecture_conflicts(exported, {**cfg, "hidden": 48}, ["model.hidden=48"]) == []


def test_a_new_export_is_served_without_a_restart(workspace, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "tang").symlink_to(workspace["source"].resolve(), target_is_directory=True)
    server = LiveServer({"checkpoints": served})
    try:
        assert [m["name"] for m in server.get("/v1/models").json()["models"]] == ["tang"]
        assert server.post("/v1/generate", {"model": "poems-ft", "max_new_chars": 5}).status_code == 404
        finetune(workspace, "export.name=poems-ft", steps=10, export_dir=served)
        models = {m["name"]: m for m in server.get("/v1/models").json()["models"]}
        assert sorted(models) == ["poems-ft", "tang"]
        assert models["poems-ft"]["vocab_size"] == models["tang"]["vocab_size"]
        response = server.post("/v1/generate", {"model": "poems-ft", "prompt": "春", "max_new_chars": 12, "seed": 1})
        assert response.status_code == 200, response.text
        first = response.json()["samples"][0]["text"]
        # Exported again under the same name: the next request uses the new weights.
        loaded = load_export(served / "poems-ft")
        with torch.no_grad():
            for parameter in loaded.model.parameters():
                parameter.add_(torch.randn_like(parameter))
        export_model(served / "poems-ft", loaded.model, loaded.tokenizer, name="poems-ft", corpus="poems",
                     context_chars=32, target_chars=48)
        again = server.post("/v1/generate", {"model": "poems-ft", "prompt": "春", "max_new_chars": 12, "seed": 1})
        assert again.status_code == 200 and again.json()["samples"][0]["text"] != first
    finally:
        server.close()
