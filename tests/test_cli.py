"""The three commands as a user runs them: train -> export -> sample -> evaluate, resume, multirun."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import TINY_CORPUS_CHARS, TINY_STEPS, cli, corpus_file

from textgen.export import load_export

pytestmark = pytest.mark.slow
QUICK = ["trainer.enable_progress_bar=false", "model.embedding=16", "model.hidden=32", "model.layers=1",
         "model.encoder.hidden=16", "data.context_chars=16", "data.target_chars=24", "data.batch_size=8",
         "data.val_batch_size=64", "data.stride=11"]


@pytest.fixture()
def small_text(tmp_path):
    path = tmp_path / "小文本.txt"  # non-ASCII: Hydra's grammar needs such values quoted
    path.write_text(corpus_file("shakespeare").read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return path


def quick_train(tmp_path, corpus, *extra, check=True):
    return cli("train", "data=text", f"data.path={corpus}", f"export.dir={tmp_path / 'ck'}", *QUICK, *extra,
               cwd=tmp_path, check=check)


def test_export_is_complete_and_recorded(tiny_shakespeare):
    metrics = json.loads((tiny_shakespeare / "metrics.json").read_text())
    assert metrics["steps"] == TINY_STEPS and metrics["val_bpc"] < 3.5  # 8.3 bits/char untrained
    assert metrics["chars_seen"] == TINY_STEPS * 32 * 48
    assert {"machine", "train_seconds", "params", "command"} <= set(metrics)
    config = json.loads((tiny_shakespeare / "config.json").read_text())
    assert config["model"]["encoder"]["layers"] == 1 and config["window"] == {"context_chars": 32, "target_chars": 48,
                                                                              "document_separator": None}
    assert f"max_steps: {TINY_STEPS}" in (tiny_shakespeare / "training.yaml").read_text()
    # Shakespeare is ASCII: none of the 256 UTF-8 byte pieces is ever a training target.
    byte_pieces = [i for i, b in enumerate(load_export(tiny_shakespeare).tokenizer.byte_values) if b >= 0]
    assert len(byte_pieces) == 256 and set(byte_pieces) <= set(config["untrained_pieces"])


def test_sample_streams_and_is_deterministic_with_a_seed(tiny_shakespeare):
    args = ["sample", f"checkpoint={tiny_shakespeare}", "prompt=ROMEO:", "max_new_chars=120", "seed=7"]
    first = cli(*args)
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) >= 120
    assert "chars/s" in first.stderr
    assert cli(*args).stdout == first.stdout
    assert cli(*args[:-1], "seed=8").stdout != first.stdout
    several = cli("sample", f"checkpoint={tiny_shakespeare}", "n=3", "max_new_chars=40", "seed=1",
                  "temperature=0.5", "top_k=10", "top_p=0.9", "repetition_penalty=1.2")
    assert several.stdout.count("--- sample") == 3


def test_evaluate_reproduces_the_recorded_val_bpc(tiny_shakespeare, tmp_path):
    from textgen.data.corpus import CorpusConfig, load_corpus

    text = corpus_file("shakespeare").read_text(encoding="utf-8")[: TINY_CORPUS_CHARS["shakespeare"]]
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    val = tmp_path / "验证.txt"  # non-ASCII name; the fixture's own split: data=text splits this text by documents
    val.write_text(load_corpus(CorpusConfig(name="x", path=str(tmp_path / "corpus.txt"))).val, encoding="utf-8")
    result = json.loads(cli("evaluate", f"checkpoint={tiny_shakespeare}", f"file={val}", "--json").stdout)
    recorded = json.loads((tiny_shakespeare / "metrics.json").read_text())["val_bpc"]
    assert result["bpc"] == pytest.approx(recorded, rel=1e-4)
    assert result["chars"] == len(val.read_text(encoding="utf-8")) and result["chars_per_second"] > 0
    human = cli("evaluate", f"checkpoint={tiny_shakespeare}", f"file={val}").stdout
    assert "bits/char" in human


def test_resume_continues_from_the_last_checkpoint(tmp_path, small_text):
    run = [f"hydra.run.dir={tmp_path / 'run'}", "trainer.val_check_interval=10", "export.name=resumed"]
    quick_train(tmp_path, small_text, *run, "trainer.max_steps=20")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    second = quick_train(tmp_path, small_text, *run, "trainer.max_steps=30", "resume=true")
    assert "resuming from" in second.stdout + second.stderr
    metrics = json.loads((tmp_path / "ck" / "resumed" / "metrics.json").read_text())
    assert metrics["steps"] == 30
    # Resumed after its last step with export.weights=last (ci-gru's recipe): nothing is trained, the
    # final weights are validated and exported, not the best validated ones.
    third = quick_train(tmp_path, small_text, *run[:-1], "export.name=resumed-last", "trainer.max_steps=30",
                        "resume=true", "export.weights=last")
    last = json.loads((tmp_path / "ck" / "resumed-last" / "metrics.json").read_text())
    assert last["steps"] == 30 and last["best_step"] == 30
    final = load_export(tmp_path / "ck" / "resumed-last")
    assert torch.equal(final.model.head.weight, torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt",
                                                           weights_only=False)["state_dict"]["model.head.weight"])
    assert "resuming from" in third.stdout + third.stderr


def test_multirun_trains_and_exports_each_model(tmp_path, small_text):
    result = cli("train", "-m", "model=lstm,gru", "data=text", f"data.path={small_text}",
                 f"export.dir={tmp_path / 'ck'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                 "trainer.max_steps=6", "trainer.val_check_interval=3", *QUICK, cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["text-gru", "text-lstm"]
    assert len(list((tmp_path / "sweep").glob("*-text-*"))) == 2, result.stdout


def test_decoder_only_layer_norm_and_other_cells_train(tmp_path, small_text):
    quick_train(tmp_path, small_text, "model=rnn", "model.encoder.layers=0", "model.tie_weights=true",
                "model.layer_norm=true", "trainer.max_steps=4", "optim=sgd", "scheduler=plateau",
                "trainer.val_check_interval=2")
    out = cli("sample", f"checkpoint={tmp_path / 'ck' / 'text-rnn-dec'}", "max_new_chars=20", "temperature=0")
    assert len(out.stdout) >= 20


def test_training_never_replaces_a_shipped_model(tmp_path, small_text):
    quick_train(tmp_path, small_text, "trainer.max_steps=2", "export.name=mine")
    shipped = tmp_path / "ck" / "mine"
    metrics = json.loads((shipped / "metrics.json").read_text())
    (shipped / "metrics.json").write_text(json.dumps({**metrics, "shipped": True}))  # as ship_checkpoint.py marks
    weights = (shipped / "model.safetensors").read_bytes()
    result = quick_train(tmp_path, small_text, "trainer.max_steps=2", "export.name=mine")
    assert (shipped / "model.safetensors").read_bytes() == weights
    assert f"{shipped} is a shipped model, which training never replaces: this run will export as mine-1" in (
        result.stdout + result.stderr)
    assert load_export(tmp_path / "ck" / "mine-1").info.name == "mine-1"
    assert not json.loads((tmp_path / "ck" / "mine-1" / "metrics.json").read_text()).get("shipped")


def test_a_peephole_lstm_trains_exports_and_samples(tmp_path, small_text):
    quick_train(tmp_path, small_text, "model=lstm", "model.peephole=true", "model.layers=2", "trainer.max_steps=4",
                "trainer.val_check_interval=2", "export.name=peep")
    loaded = load_export(tmp_path / "ck" / "peep")
    assert loaded.model.config.peephole and loaded.model.decoder.weight_co_l1.abs().sum() > 0  # trained, not zero
    out = cli("sample", f"checkpoint={tmp_path / 'ck' / 'peep'}", "max_new_chars=20", "seed=1")
    assert len(out.stdout) >= 20
    result = quick_train(tmp_path, small_text, "model=gru", "model.peephole=true", check=False)
    assert result.returncode != 0 and "peephole only with cell=lstm" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("setup,args,message", [
    (None, ["data=text", "data.path=/nonexistent/corpus.txt"], "no such file or folder"),
    ("", ["data=text", "data.path={path}"], "is empty"),
    ("tiny", ["data=text", "data.path={path}"], "fewer than one batch"),
    (None, ["data=text"], "data.path"),
    (None, ["data=text", "data.path={path}", "export.weights=worst"], "export.weights=worst: use one of best, last"),
    (None, ["data=text", "data.path={path}", "data.layout_loss_weight=2"], "data.layout_loss_weight=2 needs data.layout_chars"),
    (None, ["data=text", "data.path={path}", "data.layout_loss_weight=-1"], "data.layout_loss_weight=-1: must be >= 0"),
    (None, ["data=text", "data.path={path}", "data.prompt_windows=true"], "data.prompt_windows=true needs data.document_contexts=true"),
])
def test_training_errors_are_clear(tmp_path, setup, args, message):
    path = tmp_path / "corpus.txt"
    if setup is not None:
        path.write_text({"": "", "tiny": "just a few words\n" * 2}[setup], encoding="utf-8")
    result = cli("train", *[a.format(path=path) for a in args], *QUICK, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()  # a run that failed before its first step leaves no folder


def test_offline_quick_start_prints_one_error_line(tmp_path):
    """The README's quick start offline, without TEXTGEN_DATA_DIR: one line naming the URL and the ways out."""
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TEXTGEN_CACHE_DIR": str(tmp_path / "cache"), "TEXTGEN_MIRROR": f"http://127.0.0.1:{port}/"}
    env.pop("TEXTGEN_DATA_DIR", None)
    result = subprocess.run([sys.executable, "-m", "textgen.train", "model.hidden=256", "model.layers=1",
                             "trainer.max_steps=300", "export.name=quickstart"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines() == errors, result.stderr
    assert f"http://127.0.0.1:{port}/karpathy/char-rnn/" in errors[0] and "Connection refused" in errors[0]
    assert "TEXTGEN_DATA_DIR" in errors[0] and "TEXTGEN_MIRROR" in errors[0]
    assert not (tmp_path / "cache" / "shakespeare" / "train.txt").exists()


def test_sample_and_evaluate_errors_are_clear(tmp_path, tiny_shakespeare):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    for module, args, message in [
        ("sample", [f"checkpoint={broken}"], "missing model.safetensors"),
        ("sample", ["checkpoint=nope"], "no such export folder"),
        ("sample", [f"checkpoint={tiny_shakespeare}", "temperature=-1"], "`temperature` must be >= 0"),
        ("evaluate", [f"checkpoint={tiny_shakespeare}", f"file={tmp_path / 'missing.txt'}"], "No such file"),
    ]:
        result = cli(module, *args, check=False)
        assert result.returncode == 2, (module, args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = cli("evaluate", f"checkpoint={tiny_shakespeare}", f"file={empty}", check=False)
    assert result.returncode == 2 and "is empty" in result.stderr


def test_training_with_the_same_seed_gives_the_same_model(tmp_path, small_text):
    from safetensors.torch import load_file

    for name in ("first", "second"):
        quick_train(tmp_path, small_text, "trainer.max_steps=8", "trainer.val_check_interval=4", "seed=5",
                    f"export.name={name}", f"hydra.run.dir={tmp_path / name}")
    first = load_file(str(tmp_path / "ck" / "first" / "model.safetensors"))
    second = load_file(str(tmp_path / "ck" / "second" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)


def test_sampling_never_imports_lightning():
    code = ("import sys, textgen.sampling, textgen.export, textgen.evaluation, textgen.sample, textgen.evaluate; "
            "print(sorted(m for m in sys.modules if 'lightning' in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
