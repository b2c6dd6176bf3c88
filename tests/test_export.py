"""Exports: self-contained, loadable without pickles, written atomically, broken ones explained."""

import json

import pytest
import torch
from safetensors.torch import load_file

from textgen.export import ExportError, export_model, load_export, resolve_export
from textgen.models import EncoderConfig, ModelConfig, Seq2SeqLM
from textgen.tokenizer import CharTokenizer


@pytest.fixture()
def exported(tmp_path):
    tok = CharTokenizer.train_on_text("hello world\n你好\n")
    model = Seq2SeqLM(ModelConfig(vocab_size=tok.vocab_size, embedding=8, hidden=16, layers=1,
                                  encoder=EncoderConfig(layers=1, hidden=8)))
    path = export_model(tmp_path / "checkpoints" / "demo", model, tok, name="demo", corpus="test",
                        context_chars=8, target_chars=8, training_config="seed: 1\n", metrics={"val_bpc": 1.5})
    return path, model, tok


def test_export_round_trip(exported):
    path, model, tok = exported
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "metrics.json", "model.safetensors", "tokenizer.model", "training.yaml"]
    loaded = load_export(path)
    assert loaded.info.name == "demo" and loaded.metrics == {"val_bpc": 1.5}
    assert loaded.tokenizer.pieces == tok.pieces
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)
    assert not loaded.model.training
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_half_precision_export_loads_as_float32(exported, tmp_path):
    _, model, tok = exported
    path = export_model(tmp_path / "half", model, tok, name="half", corpus="t", context_chars=8,
                        target_chars=8, dtype="float16")
    assert load_file(str(path / "model.safetensors"))["head.weight"].dtype == torch.float16
    assert next(load_export(path).model.parameters()).dtype == torch.float32


def test_reexport_replaces_and_a_failed_export_keeps_the_old_one(exported):
    path, model, tok = exported
    with pytest.raises(ExportError):
        export_model(path, model, tok, name="demo", corpus="t", context_chars=8, target_chars=8, dtype="int3")
    assert load_export(path).metrics == {"val_bpc": 1.5}
    export_model(path, model, tok, name="demo", corpus="t", context_chars=8, target_chars=8, metrics={"val_bpc": 1.2})
    assert load_export(path).metrics == {"val_bpc": 1.2}


@pytest.mark.parametrize("damage,message", [
    (lambda p: (p / "model.safetensors").unlink(), "missing model.safetensors"),
    (lambda p: (p / "config.json").write_text("{not json"), "config.json is broken"),
    (lambda p: (p / "model.safetensors").write_bytes(b"\x00" * 10), "cannot be read"),
    (lambda p: (p / "tokenizer.model").write_bytes(b"junk"), "tokenizer.model"),
    (lambda p: (p / "config.json").write_text(json.dumps({
        **json.loads((p / "config.json").read_text()),
        "model": {**json.loads((p / "config.json").read_text())["model"], "hidden": 32}})), "does not match"),
])
def test_broken_export_folders_are_explained(exported, damage, message):
    path = exported[0]
    damage(path)
    with pytest.raises(ExportError, match=message):
        load_export(path)


def test_exports_are_found_by_name_or_path(exported, monkeypatch):
    path = exported[0]
    monkeypatch.setenv("TEXTGEN_CHECKPOINTS", str(path.parent))
    assert resolve_export("demo") == path and resolve_export(str(path)) == path
    with pytest.raises(ExportError, match="exports in .*: demo"):
        resolve_export("nope")
    with pytest.raises(ExportError):
        export_model(path.parent / "x", exported[1], exported[2], name="../evil", corpus="t",
                     context_chars=8, target_chars=8)


def test_exports_are_readable_like_any_file_the_user_writes(tmp_path):
    import os
    import stat

    from textgen.atomic import atomic_directory, atomic_write_text

    tok = CharTokenizer.train_on_text("hello world\n")
    model = Seq2SeqLM(ModelConfig(vocab_size=tok.vocab_size, embedding=8, hidden=16, layers=1))
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "folder") as staging:
            (staging / "f").write_text("y")
        export = export_model(tmp_path / "export", model, tok, name="perm", corpus="t", context_chars=8,
                              target_chars=8)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    assert stat.S_IMODE(export.stat().st_mode) == 0o755
    # safetensors writes its file 0600 whatever the umask: the export must not keep that.
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in export.iterdir()} == {
        name: 0o644 for name in ("config.json", "metrics.json", "model.safetensors", "tokenizer.model",
                                 "training.yaml")}
