"""Request and response bodies of the API (pydantic); their JSON schemas feed ``/openapi.json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from textgen.sampling import MAX_SAMPLES, MAX_STOP_STRINGS

StopString = Annotated[str, Field(min_length=1)]


class GenerateRequest(BaseModel):
    """POST /v1/generate and /v1/generate/stream (only ``model`` is required)."""

    # Strict: "0.5" is not a number and 1.0 is not an integer; unknown fields are an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, title="GenerateRequest")

    model: str = Field(min_length=1, description="Name of an exported model (see /v1/models).")
    prompt: str = Field("", description="Text the generated text continues.")
    max_new_chars: int = Field(200, ge=0, description="Characters to generate.")
    temperature: float = Field(0.8, ge=0, allow_inf_nan=False, description="0 is greedy decoding.")
    top_k: int = Field(0, ge=0, le=2**31 - 1, description="Keep the k most likely characters; 0 keeps all.")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="Nucleus sampling; 1.0 keeps all.")
    repetition_penalty: float = Field(1.0, gt=0, allow_inf_nan=False, description="> 1 discourages repeats.")
    min_p: float = Field(0.0, ge=0, le=1, allow_inf_nan=False,
                         description="Drop characters less likely than min_p times the most likely one; 0 keeps all.")
    seed: int | None = Field(None, ge=0, description="The same seed gives the same text, batched or not.")
    stop: list[StopString] = Field(default_factory=list, max_length=MAX_STOP_STRINGS,
                                   description="Generation ends before the first of these strings.")
    n: int = Field(1, ge=1, le=MAX_SAMPLES, description="Independent samples.")
    form: dict[str, Any] | None = Field(None, description="A form the text must follow (see the API contract).")
    return_logprobs: bool = Field(False, description="Report each sample's summed log-probability.")


class Sample(BaseModel):
    text: str
    finish_reason: Literal["length", "stop", "form_complete"]
    logprob: float | None = Field(None, description="Present only when return_logprobs is true.")


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


class ModelList(BaseModel):
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
