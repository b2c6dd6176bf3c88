"""Server settings: ``conf/server.yaml`` composed with Hydra, environment overrides, typed checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from textgen.encoder_runtime import resolve_encoder_runtime
from textgen.models.fused_step import resolve_decode_step
from textgen.quantization import resolve_quantize

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class _Section(BaseModel):
    # Values from the environment arrive as strings: lax mode turns "32" into 32, "false" into False.
    model_config = ConfigDict(extra="forbid")


class Batching(_Section):
    max_batch_size: int = Field(32, ge=1)
    """Rows stepped together per model (1 turns batching off: one request at a time)."""
    max_wait_ms: float = Field(2.0, ge=0)
    """How long an idle model waits for more requests before it starts a batch."""
    queue_length: int = Field(64, ge=0)
    """Requests that may wait per model beyond the running batch; more are answered 429."""
    retry_after_max_s: int = Field(60, ge=1)
    """The longest ``Retry-After`` of a 429 (estimated from the waiting rows' steps at the recent pace)."""
    step_time_weight: float = Field(0.1, gt=0, le=1)
    """Weight of the latest step in the moving average of a step's duration, the pace ``Retry-After`` assumes."""
    first_step_s: float = Field(0.01, gt=0)
    """The step duration that average starts from, before a model's first step."""
    close_timeout_s: float = Field(5.0, ge=0)
    """How long stopping a model's worker (server exit, a changed model reloaded) waits for its jobs."""


class Limits(_Section):
    max_body_bytes: int = Field(65536, ge=1)
    max_prompt_chars: int = Field(4096, ge=0)
    max_new_chars: int = Field(4000, ge=0)


class Streaming(_Section):
    keepalive_s: float = Field(1.0, gt=0)
    """A stream with nothing to say sends a comment this often (and so notices a client that went away)."""


class Shutdown(_Section):
    drain_timeout_s: float = Field(60.0, ge=0)
    retry_after_s: int = Field(5, ge=1)
    """The ``Retry-After`` of a 503 answered while the server drains (another process will answer)."""


class Auth(_Section):
    api_keys: str = ""
    """Comma-separated keys, or ``@path`` of a file with one key a line; empty: no key needed
    (:mod:`server.auth`)."""
    metrics_need_key: bool = False
    """``/metrics`` needs a key too (``/health`` never does)."""
    requests_per_minute: int = Field(0, ge=0)
    """Requests one key may make per minute (each server process counts its own); 0: no limit."""


class ServerSettings(_Section):
    """Everything ``conf/server.yaml`` holds, checked."""

    checkpoints: Path = Path("checkpoints")
    device: str = "cpu"
    preload: bool = False
    torch_threads: int = Field(0, ge=0)
    onednn: bool = False
    """Let torch use oneDNN (mkldnn) while decoding; its LSTM step is slower than the native one on CPU."""
    quantize: Literal["none", "int8", "auto"] = "auto"
    """Weights of the decoding step: float32, int8 (CPU only), or the faster on this machine, timed at load
    (:mod:`textgen.quantization`, :mod:`textgen.runtime_choice`)."""
    encoder_runtime: Literal["torch", "onnxruntime", "auto"] = "auto"
    """What runs the context encoder: torch, onnxruntime (CPU only), or the faster, timed (:mod:`textgen.encoder_runtime`)."""
    decode_step: Literal["torch", "fused", "auto"] = "auto"
    """How a float32 model steps: its modules, fused (:mod:`textgen.models.fused_step`), or the faster, timed."""
    retry_failed_s: float = Field(30.0, ge=0)
    """A model that failed to load is answered 503 this long before it is tried again (at once if its files change)."""
    batching: Batching = Batching()
    limits: Limits = Limits()
    streaming: Streaming = Streaming()
    shutdown: Shutdown = Shutdown()
    auth: Auth = Auth()

    @model_validator(mode="after")
    def _runtime_fits_device(self) -> ServerSettings:
        resolve_quantize(self.quantize, self.device)  # int8 on a GPU: a ValueError naming `quantize`
        resolve_encoder_runtime(self.encoder_runtime, self.device)  # likewise, naming `encoder_runtime`
        resolve_decode_step(self.decode_step, self.device)
        return self


def load_settings(overrides: Mapping[str, Any] | None = None) -> ServerSettings:
    """Compose ``conf/server.yaml`` (resolving ``oc.env``) and apply ``overrides`` (nested mapping)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="textgen-server"):
        cfg = compose(config_name="server")
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(overrides)))
    values = OmegaConf.to_container(cfg, resolve=True)
    return ServerSettings.model_validate(values)
