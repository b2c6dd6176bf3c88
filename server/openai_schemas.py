"""Bodies of the OpenAI-compatible routes (pydantic): OpenAI's legacy completions and its chat completions.

Every sampling default, bound and description is :class:`textgen.sampling.SamplingParams`'s (through
:func:`server.schemas.sampling_field`), never restated; where OpenAI names an option otherwise, the
one table :data:`OPENAI_NAMES` says so.  So ``max_tokens`` defaults to 200 characters and
``temperature`` to 0.8, not OpenAI's 16 and 1.  A ``null`` sampling value means its default, as
OpenAI's clients and vLLM treat it.  textgen's own options (``top_k``, ``min_p``,
``repetition_penalty``, ``form``) are extra body fields, the way vLLM takes them from ``extra_body``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.schemas import SAMPLING_FIELDS, StopString, sampling_field
from textgen.sampling import MAX_SAMPLES, MAX_STOP_STRINGS, MAX_TOP_LOGPROBS, SamplingError, SamplingParams

OPENAI_NAMES: dict[str, dict[str, str]] = {
    "completions": {"max_new_chars": "max_tokens", "top_logprobs": "logprobs", "return_logprobs": "logprobs"},
    "chat": {"max_new_chars": "max_tokens", "return_logprobs": "logprobs", "prompt": "messages"},
}
"""Per OpenAI route, the request field of each sampler option OpenAI names otherwise (the rest keep
their names): the one table of the renames, read by the requests, their errors' ``param`` and the tests.
(The chat route's prompt is its ``messages``: an error about the prompt names them.)"""
CHARACTERS = ("Characters to generate: textgen's tokens are characters (a character outside the vocabulary is "
              "still one).")


def nullable(name: str, **changes: Any) -> Any:
    """The field of sampler option ``name`` on an OpenAI route, where null means the default."""
    return sampling_field(name, **changes)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = Field(False, description="Send a last chunk with `usage` (and no choices) before [DONE].")


UNSUPPORTED_ZERO = ("presence_penalty", "frequency_penalty")


class OpenAIRequest(BaseModel):
    """What both OpenAI routes take: OpenAI's sampling fields and textgen's own as extra body fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, description="Name of an exported model (see /v1/models).")
    max_tokens: int | None = nullable("max_new_chars", description=CHARACTERS)
    temperature: float | None = nullable("temperature")
    top_p: float | None = nullable("top_p")
    n: int | None = nullable("n")
    best_of: int | None = nullable("best_of")
    stop: StopString | list[StopString] | None = Field(
        None, description=SAMPLING_FIELDS["stop"].metadata["description"],
        json_schema_extra={"maxItems": MAX_STOP_STRINGS})
    seed: int | None = nullable("seed")
    stream: bool = Field(False, description="Answer as Server-Sent Events: chunks, then `data: [DONE]`.")
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="Accepted and ignored.")
    presence_penalty: float | None = Field(None, description="Only 0 (use `repetition_penalty`).",
                                           json_schema_extra={"minimum": 0, "maximum": 0})
    frequency_penalty: float | None = Field(None, description="Only 0 (use `repetition_penalty`).",
                                            json_schema_extra={"minimum": 0, "maximum": 0})
    logit_bias: dict[str, float] | None = Field(None, description="Only empty.", json_schema_extra={"maxProperties": 0})
    # textgen's own fields
    top_k: int | None = nullable("top_k")
    repetition_penalty: float | None = nullable("repetition_penalty")
    min_p: float | None = nullable("min_p")
    form: dict[str, Any] | None = Field(None, description="A form the text must follow (see the API contract).")

    ROUTE: ClassVar[str] = ""

    def sampling_params(self, **derived: Any) -> SamplingParams:
        """The sampler's parameters: each option read under its route's name (a null or absent one takes
        its default), ``derived`` for the options this route spells otherwise (``logprobs``)."""
        names = OPENAI_NAMES[self.ROUTE]
        values: dict[str, Any] = {}
        for option in SAMPLING_FIELDS:
            if option in derived:
                values[option] = derived[option]
                continue
            value = getattr(self, names.get(option, option), None)
            if value is not None:
                values[option] = value
        if isinstance(values.get("stop"), str):
            values["stop"] = [values["stop"]]
        return SamplingParams(**values)

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

    @field_validator("logit_bias", "suffix", check_fields=False)  # suffix: completions only
    @classmethod
    def _only_empty(cls, value: Any) -> Any:
        if value:
            raise ValueError("is not supported (only empty or null)")
        return value


class CompletionRequest(OpenAIRequest):
    """POST /v1/completions: OpenAI's fields, and textgen's own (``top_k``, ``min_p``,
    ``repetition_penalty``, ``form``) as extra body fields."""

    model_config = ConfigDict(extra="forbid", strict=True, title="CompletionRequest")
    ROUTE: ClassVar[str] = "completions"

    prompt: str | list[str] = Field(
        "", description="A string, or a list of strings answered in order (choice i*n+j is prompt i's sample j).",
        json_schema_extra={"minItems": 1, "maxItems": MAX_SAMPLES})
    logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS,
        description="Report each character's log-probability, and this many most likely characters at each.")
    echo: bool = Field(False, description="Return the prompt (as the model read it) before the completion.")
    suffix: str | None = Field(None, description="Only empty.", json_schema_extra={"maxLength": 0})

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

    def prompts(self) -> list[str]:
        """The prompts, in order."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def params(self) -> SamplingParams:
        """The sampler's parameters (``logprobs`` k: each character's log-probability and its top k)."""
        return self.sampling_params(return_logprobs=self.logprobs is not None, top_logprobs=self.logprobs or 0)


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


# --------------------------------------------------------------------------- chat completions
MAX_MESSAGES = 256


class TextPart(BaseModel):
    """A text part of a message's content (the only kind a character model reads)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`system` and `developer` messages are not part of the text the model reads "
                    "(a character model follows no instructions); see the conversation rule.")
    content: str | list[TextPart] | None = Field(None, description="The text, or a list of text parts.")
    name: str | None = Field(None, description="Accepted and ignored.")

    def text(self) -> str:
        """The message's text (its parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(OpenAIRequest):
    """POST /v1/chat/completions: OpenAI's chat fields, and textgen's own (``top_k``, ``min_p``,
    ``repetition_penalty``, ``best_of``, ``form``) as extra body fields."""

    model_config = ConfigDict(extra="forbid", strict=True, title="ChatCompletionRequest")
    ROUTE: ClassVar[str] = "chat"

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES, description=(
        "The conversation. The model reads the text of its user and assistant messages, in order, one line "
        "each, and the answer continues the last one; from a poetry model, a last user message that asks "
        "for a form in words (`写一首七言绝句，题为春日，藏头春夏秋冬`) is answered with that form."))
    max_completion_tokens: int | None = nullable("max_new_chars", default=None,
                                                 description=CHARACTERS + " Wins over `max_tokens`.")
    logprobs: bool | None = nullable("return_logprobs", default=None)
    top_logprobs: int | None = nullable("top_logprobs", default=None)

    def params(self) -> SamplingParams:
        """The sampler's parameters (``max_completion_tokens`` before ``max_tokens``)."""
        derived: dict[str, Any] = {}
        if self.max_completion_tokens is not None:
            derived["max_new_chars"] = self.max_completion_tokens
        if self.top_logprobs and not self.logprobs:
            raise SamplingError("top_logprobs", "`top_logprobs` needs `logprobs: true`")
        return self.sampling_params(**derived)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    """One entry per character of the answer (textgen's tokens are characters)."""

    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: ChatLogprobs | None


class Understood(BaseModel):
    """What textgen made of the request: the text the model read and the form it wrote."""

    prompt: str = Field(description="The text the model read (a form's title line included).")
    form: dict[str, Any] | None = Field(description="The form the answer follows: the request's `form`, or the "
                                                    "one its last user message asked for in words; null: none.")
    understood: list[str] = Field(default_factory=list, description="The words the form was read from.")
    ignored: list[str] = Field(default_factory=list, description="Words of that message no rule reads.")
    notes: list[str] = Field(default_factory=list, description="What was understood but is not honoured.")


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    textgen: Understood


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """One ``data:`` event of a streamed chat completion; ``textgen`` is on the first chunk of each choice."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    textgen: Understood | None = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error.")
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail
