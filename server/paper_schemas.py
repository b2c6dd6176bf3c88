"""The body of ``POST /v1/paper`` (:mod:`server.paper_api`), with the paper command's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field

from textgen.cli import sampling_defaults

CONFIG = Path(__file__).resolve().parent.parent / "conf" / "paper.yaml"
PAPER_DEFAULTS: dict[str, Any] = {**sampling_defaults(), **{
    k: v for k, v in OmegaConf.to_container(OmegaConf.load(CONFIG)).items() if k not in ("defaults", "hydra")}}
"""What ``python -m textgen.paper`` composes: the sampler's defaults (the ``sampling`` node) under
``conf/paper.yaml``'s own settings (the route's defaults and bounds)."""
_DEFAULTS = PAPER_DEFAULTS


class PaperRequest(BaseModel):
    """What the page may choose; the rest is the command's configuration."""

    model_config = ConfigDict(extra="forbid")

    model: str
    title: str | None = Field(default=_DEFAULTS["title"], max_length=120, pattern=r"^[^\n\r{}\\%$#]*$")
    sections: int = Field(default=_DEFAULTS["sections"], ge=1, le=_DEFAULTS["max_sections"])
    max_chars: int | None = Field(default=None, ge=0)
    """None: the command's ``max_chars``, or the server's ``limits.max_new_chars`` when that is lower."""
    temperature: float = Field(default=_DEFAULTS["temperature"], gt=0, le=2)
    seed: int | None = Field(default=_DEFAULTS["seed"], ge=0)


SCHEMAS = (PaperRequest,)
