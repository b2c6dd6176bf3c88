"""Request and response bodies of the API (pydantic); their JSON schemas feed ``/openapi.json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from textgen.sampling import MAX_SAMPLES, MAX_STOP_STRINGS, SamplingParams

StopString = Annotated[str, Field(min_length=1)]
DEFAULTS = SamplingParams()
"""The one source of the sampling defaults the request bodies show and use."""


class GenerateRequest(BaseModel):
    """POST /v1/generate and /v1/generate/stream (only ``model`` is required)."""

    # Strict: "0.5" is not a number and 1.0 is not an integer; unknown fields are an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, title="GenerateRequest")

    model: str = Field(min_length=1, description="Name of an exported model (see /v1/models).")
    prompt: str = Field("", description="Text the generated text continues.")
    max_new_chars: int = Field(DEFAULTS.max_new_chars, ge=0, description="Characters to generate.")
    temperature: float = Field(DEFAULTS.temperature, ge=0, allow_inf_nan=False, description="0 is greedy decoding.")
    top_k: int = Field(DEFAULTS.top_k, ge=0, le=2**31 - 1, description="Keep the k most likely characters; 0 keeps all.")
    top_p: float = Field(DEFAULTS.top_p, gt=0, le=1, allow_inf_nan=False, description="Nucleus sampling; 1.0 keeps all.")
    repetition_penalty: float = Field(DEFAULTS.repetition_penalty, gt=0, allow_inf_nan=False,
                                      description="> 1 discourages repeats.")
    min_p: float = Field(DEFAULTS.min_p, ge=0, le=1, allow_inf_nan=False,
                         description="Drop characters less likely than min_p times the most likely one; 0 keeps all.")
    seed: int | None = Field(DEFAULTS.seed, ge=0, description="The same seed gives the same text, batched or not.")
    stop: list[StopString] = Field(default_factory=list, max_length=MAX_STOP_STRINGS,
                                   description="Generation ends before the first of these strings.")
    n: int = Field(DEFAULTS.n, ge=1, le=MAX_SAMPLES, description="Independent samples.")
    best_of: int | None = Field(DEFAULTS.best_of, ge=1, le=MAX_SAMPLES,
                                description="Draw this many candidates (>= n) as one batch and return the n with "
                                            "the highest model log-probability per character, best first (their "
                                            "`logprob` is reported). Not with /v1/generate/stream.")
    form: dict[str, Any] | None = Field(None, description="A form the text must follow (see the API contract).")
    return_logprobs: bool = Field(DEFAULTS.return_logprobs, description="Report each sample's summed log-probability.")


class Sample(BaseModel):
    text: str
    finish_reason: Literal["length", "stop", "form_complete"]
    logprob: float | None = Field(None, description="The model's log-probability of the returned text (nats); "
                                                    "present when return_logprobs is true or best_of > n.")


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
