"""Bodies of the OpenAI-compatible routes (pydantic), in the shapes of OpenAI's legacy completions API.

Every sampling default and bound is the native request's (:class:`server.schemas.GenerateRequest`,
itself from :class:`textgen.sampling.SamplingParams`): the fields are copied from it, never restated.
So ``max_tokens`` defaults to 200 characters and ``temperature`` to 0.8, not OpenAI's 16 and 1.
A ``null`` sampling value means its default, as OpenAI's clients and vLLM treat it.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

from server.schemas import DEFAULTS, GenerateRequest, StopString
from textgen.sampling import MAX_SAMPLES, MAX_STOP_STRINGS, MAX_TOP_LOGPROBS


def native(name: str, **changes: Any) -> FieldInfo:
    """A copy of the native request's field ``name`` (its default, bounds and description)."""
    field = copy.copy(GenerateRequest.model_fields[name])
    for key, value in changes.items():
        setattr(field, key, value)
    return field


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = Field(False, description="Send a last chunk with `usage` (and no choices) before [DONE].")


UNSUPPORTED_ZERO = ("presence_penalty", "frequency_penalty")


class CompletionRequest(BaseModel):
    """POST /v1/completions: OpenAI's fields, and textgen's own (``top_k``, ``repetition_penalty``,
    ``form``) as extra body fields, the way vLLM takes them from a client's ``extra_body``."""

    model_config = ConfigDict(extra="forbid", strict=True, title="CompletionRequest")

    model: str = native("model")
    prompt: str | list[str] = Field(
        "", description="A string, or a list of strings answered in order (choice i*n+j is prompt i's sample j).",
        json_schema_extra={"minItems": 1, "maxItems": MAX_SAMPLES})
    max_tokens: int | None = Field(
        DEFAULTS.max_new_chars, ge=0,
        description="Characters to generate: textgen's tokens are characters (a character outside the "
                    "vocabulary is still one).")
    temperature: float | None = native("temperature")
    top_p: float | None = native("top_p")
    n: int | None = native("n")
    best_of: int | None = native("best_of")
    stop: StopString | list[StopString] | None = Field(
        None, description=f"Up to {MAX_STOP_STRINGS} strings; the text ends before the first, which is not returned.",
        json_schema_extra={"maxItems": MAX_STOP_STRINGS})
    seed: int | None = native("seed")
    stream: bool = Field(False, description="Answer as Server-Sent Events: completion chunks, then `data: [DONE]`.")
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS,
        description="Report each character's log-probability, and this many most likely characters at each.")
    echo: bool = Field(False, description="Return the prompt (as the model read it) before the completion.")
    user: str | None = Field(None, description="Accepted and ignored.")
    presence_penalty: float | None = Field(None, description="Only 0 (use `repetition_penalty`).",
                                           json_schema_extra={"minimum": 0, "maximum": 0})
    frequency_penalty: float | None = Field(None, description="Only 0 (use `repetition_penalty`).",
                                            json_schema_extra={"minimum": 0, "maximum": 0})
    logit_bias: dict[str, float] | None = Field(None, description="Only empty.", json_schema_extra={"maxProperties": 0})
    suffix: str | None = Field(None, description="Only empty.", json_schema_extra={"maxLength": 0})
    # textgen's own fields
    top_k: int = native("top_k")
    repetition_penalty: float = native("repetition_penalty")
    form: dict[str, Any] | None = native("form")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompts(cls, value: Any) -> Any:
        texts = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not texts:
            raise ValueError("must be a string or a list of strings (token ids are not accepted: "
                             "textgen's tokens are characters)")
        if isinstance(value, list) and not 1 <= len(value) <= MAX_SAMPLES:
            raise ValueError(f"a list of prompts must hold 1 to {MAX_SAMPLES} strings, got {len(value)}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(value)}")
        return value

    @field_validator(*UNSUPPORTED_ZERO)
    @classmethod
    def _zero(cls, value: float | None) -> float | None:
        if value not in (None, 0):
            raise ValueError("only 0 is supported (textgen penalises repeats with `repetition_penalty`)")
        return value

    @field_validator("logit_bias", "suffix")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        if value:
            raise ValueError("is not supported (only empty or null)")
        return value

    def prompts(self) -> list[str]:
        """The prompts, in order."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class CompletionLogprobs(BaseModel):
    """Per character of the choice's text: the character, its log-probability, its offset, the top characters."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = Field(
        description="`stop`: a stop string or a completed form; `length`: max_tokens; null in a stream's "
                    "text chunks.")
    logprobs: CompletionLogprobs | None


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(description="Characters of the prompts as the model read them.")
    completion_tokens: int = Field(description="Characters generated, every best_of candidate included.")
    total_tokens: int


class Completion(BaseModel):
    """The answer, and (with ``stream``) each ``data:`` chunk; a chunk's ``usage`` is null but the last's."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error.")
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail
