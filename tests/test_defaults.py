"""Defaults written in two places must agree: the dataclasses are the source, the YAML a copy Hydra reads."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from server.settings import ServerSettings, load_settings
from textgen.data.corpus import CorpusConfig
from textgen.models import ModelConfig

CONF = Path(__file__).resolve().parent.parent / "conf"
ENV = ("TEXTGEN_DATA_DIR", "TEXTGEN_CACHE_DIR", "TEXTGEN_MIRROR", "TEXTGEN_CHECKPOINTS")


def composed(group: str, *overrides: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The ``group`` node of the training config, resolved."""
    for name in ENV:  # the YAML reads these; the dataclass defaults are what holds without them
        monkeypatch.delenv(name, raising=False)
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="train", overrides=list(overrides))
    return OmegaConf.to_container(cfg[group], resolve=True)


def field_defaults(cls: type) -> dict:
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            values[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return values


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_model_yaml_holds_model_config_defaults(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = composed("model", f"model={cell}", monkeypatch=monkeypatch)
    assert model == {**field_defaults(ModelConfig), "cell": cell}


def test_corpus_yaml_holds_corpus_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    data = composed("data", "data=text", "data.path=x.txt", monkeypatch=monkeypatch)
    defaults = field_defaults(CorpusConfig)
    assert {key: data[key] for key in defaults} == {**defaults, "path": "x.txt"}
    assert set(data) - set(defaults) == {"name", "context_chars", "target_chars", "batch_size",
                                         "val_batch_size", "stride", "num_workers", "document_contexts",
                                         "prompt_windows", "layout_chars", "layout_loss_weight"}


def test_server_yaml_holds_every_server_setting_at_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/server.yaml names each setting with its TEXTGEN_* override; without them it is ServerSettings'
    defaults (a value the YAML lacked would silently take the default, a second one would drift)."""
    for name in [name for name in os.environ if name.startswith("TEXTGEN_")]:
        monkeypatch.delenv(name)
    yaml = OmegaConf.to_container(OmegaConf.load(CONF / "server.yaml"), resolve=True)
    defaults = ServerSettings().model_dump()
    assert {key: sorted(value) if isinstance(value, dict) else None for key, value in yaml.items()} == \
        {key: sorted(value) if isinstance(value, dict) else None for key, value in defaults.items()}
    assert load_settings().model_dump() == defaults


def test_old_exports_without_attention_residual_read_as_the_model_they_were() -> None:
    """Not a second default: exports written before the field existed had no residual."""
    assert ModelConfig(vocab_size=10).attention_residual is True
    assert ModelConfig.from_dict({"vocab_size": 10}).attention_residual is False
    assert ModelConfig.from_dict({"vocab_size": 10, "attention_residual": True}).attention_residual is True


# --------------------------------------------------------------------------- one declaration per option / error
def test_every_sampling_option_is_on_every_route_and_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """A field added to SamplingParams must reach the native request, both OpenAI requests (under the
    names of the one rename table) and the script's options, at its one default."""
    from server.openai_schemas import OPENAI_NAMES, ChatCompletionRequest, CompletionRequest
    from server.schemas import GenerateRequest
    from textgen.cli import store_sampling_options
    from textgen.sampling import SamplingParams

    options = dataclasses.fields(SamplingParams)
    defaults = field_defaults(SamplingParams)
    for option in options:
        native = GenerateRequest.model_fields[option.name]
        default = defaults[option.name]
        assert native.get_default(call_default_factory=True) == (list(default) if isinstance(default, tuple) else default)
        assert native.description == option.metadata["description"]
        for route, request in (("completions", CompletionRequest), ("chat", ChatCompletionRequest)):
            name = OPENAI_NAMES[route].get(option.name, option.name)
            assert name in request.model_fields, f"{request.__name__} lacks {name} (SamplingParams.{option.name})"
    store_sampling_options()
    for config in ("sample", "paper"):
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            cfg = OmegaConf.to_container(compose(config_name=config, overrides=["checkpoint=x"]), resolve=True)
        for option in options:
            assert option.name in cfg, f"python -m textgen.{config} lacks the option {option.name}"
            if config == "sample":
                default = defaults[option.name]
                assert cfg[option.name] == (list(default) if isinstance(default, tuple) else default)


def test_no_yaml_repeats_a_sampling_default() -> None:
    from textgen.sampling import SamplingParams

    for config in ("sample.yaml", "paper.yaml"):
        own = OmegaConf.load(CONF / config)
        repeated = [f.name for f in dataclasses.fields(SamplingParams)
                    if f.name in own and own[f.name] == f.default]
        assert repeated == [], f"conf/{config} repeats the default of {repeated}"


def test_the_native_routes_write_no_status_number() -> None:
    """Statuses are declared once, in server.error_kinds: no number from 100 to 599 in server/api.py's code."""
    import io
    import tokenize

    source = (CONF.parent / "server" / "api.py").read_text(encoding="utf-8")
    numbers = [token for token in tokenize.generate_tokens(io.StringIO(source).readline)
               if token.type == tokenize.NUMBER and token.string.isdigit() and 100 <= int(token.string) <= 599]
    assert numbers == [], [f"line {t.start[0]}: {t.string}" for t in numbers]


def test_every_error_kind_is_declared_once_with_a_distinct_meaning() -> None:
    from server.error_kinds import ErrorKind

    assert len({kind.value for kind in ErrorKind}) == len(ErrorKind)  # no alias: each kind its own entry
    for kind in ErrorKind:
        assert 400 <= kind.status <= 599 and kind.value.description
        if kind.status == 429:
            assert kind.value.retry_after and kind.value.openai_type == "rate_limit_error"
        if kind.status >= 500:
            assert kind.value.openai_type == "server_error"
