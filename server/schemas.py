"""Request and response bodies of the API (pydantic); their JSON schemas feed ``/openapi.json``."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from textgen.sampling import SamplingParams, option_type

StopString = Annotated[str, Field(min_length=1)]
DEFAULTS = SamplingParams()
"""The one source of the sampling defaults the request bodies show and use."""
SAMPLING_FIELDS = {spec.name: spec for spec in fields(SamplingParams)}


def sampling_field(name: str, **changes: Any) -> Any:
    """The request field of sampler option ``name``: its default, bounds and description from
    :class:`SamplingParams` (``changes`` override, e.g. another ``description``)."""
    spec = SAMPLING_FIELDS[name]
    kind, _ = option_type(spec)
    settings: dict[str, Any] = {"description": spec.metadata["description"], **spec.metadata["bounds"]}
    if kind is float:
        settings["allow_inf_nan"] = False
    if "max_items" in spec.metadata:
        settings["max_length"] = spec.metadata["max_items"]
    if isinstance(spec.default, tuple):
        settings["default_factory"] = list
    else:
        settings["default"] = spec.default
    settings.update(changes)
    return Field(**settings)


class GenerateRequest(BaseModel):
    """POST /v1/generate and /v1/generate/stream (only ``model`` is required); the sampler's fields
    come from :class:`SamplingParams` (``tests/test_defaults.py`` checks that none is missing)."""

    # Strict: "0.5" is not a number and 1.0 is not an integer; unknown fields are an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, title="GenerateRequest")

    model: str = Field(min_length=1, description="Name of an exported model (see /v1/models).")
    prompt: str = Field("", description="Text the generated text continues.")
    max_new_chars: int = sampling_field("max_new_chars")
    temperature: float = sampling_field("temperature")
    top_k: int = sampling_field("top_k")
    top_p: float = sampling_field("top_p")
    repetition_penalty: float = sampling_field("repetition_penalty")
    min_p: float = sampling_field("min_p")
    seed: int | None = sampling_field("seed")
    stop: list[StopString] = sampling_field("stop")
    n: int = sampling_field("n")
    best_of: int | None = sampling_field("best_of")
    form: dict[str, Any] | None = Field(None, description="A form the text must follow (see the API contract).")
    return_logprobs: bool = sampling_field("return_logprobs")
    top_logprobs: int = sampling_field("top_logprobs")


class Sample(BaseModel):
    text: str
    finish_reason: Literal["length", "stop", "form_complete"]
    logprob: float | None = Field(None, description="The model's log-probability of the returned text (nats); "
                                                    "present when return_logprobs is true or best_of > n.")
    top_logprobs: list[dict[str, float]] | None = Field(
        None, description="Per character of `text`, the `top_logprobs` most likely characters there and their "
                          "log-probabilities; present when `top_logprobs` > 0.")


class Usage(BaseModel):
    prompt_chars: int
    generated_chars: int


class Timing(BaseModel):
    queue_ms: float
    generate_ms: float


class GenerateResponse(BaseModel):
    model: str
    samples: list[Sample]
    usage: Usage
    timing: Timing


class ModelCard(BaseModel):
    name: str
    corpus: str
    cell: str
    encoder: dict[str, int] = Field(description="Bidirectional encoder: layers (0: decoder only) and hidden units.")
    params: int
    vocab_size: int
    val_bpc: float | None
    shipped: bool = Field(description="One of textgen's shipped models, not one trained on this machine.")
    created: str
    runtime: dict[str, Any] | None = Field(
        None, description="How the model decodes once loaded (null before its first use): `quantize`, `decode_step`, "
                          "`encoder_runtime`, and under `measured` what `auto` timed on this machine (ms per step or "
                          "context read, by candidate and rows; `cached` when read from an earlier load's measurement).")


class ModelEntry(ModelCard):
    """An OpenAI model object (``id``, ``object``, ``created``, ``owned_by``) with textgen's card fields."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When the model was exported, in seconds since 1970 (the card's `created`).")
    owned_by: str


class ModelList(BaseModel):
    """The OpenAI list shape (``object``, ``data``) and textgen's own ``models`` list, the same exports."""

    object: Literal["list"] = "list"
    data: list[ModelEntry]
    models: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "unavailable", "draining"]
    models: int


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def dump(model: BaseModel) -> dict[str, Any]:
    """A response body: optional fields that are unset (``logprob``, ``field``) are left out."""
    return model.model_dump(exclude_none=True)
