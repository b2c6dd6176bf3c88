"""Every kind of error the server answers, each declared once: its status, its codes, its description.

A raise site names a kind (``raise APIError(ErrorKind.UNSUPPORTED_MEDIA, "...")``), never a status;
:mod:`server.errors` writes the answer in the shape of the route, and :mod:`server.openapi` builds
the error table of ``/openapi.json`` from this enumeration.  A kind's OpenAI ``type`` and ``code``
are what the official ``openai`` client maps to its exceptions (401 ``AuthenticationError``,
404 ``NotFoundError``, 422 ``UnprocessableEntityError``, 429 ``RateLimitError``, 5xx ``InternalServerError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class ErrorSpec:
    """The declaration of one error kind."""

    status: int
    code: str
    """textgen's ``error.code`` (the HTTP reason phrase's words)."""
    description: str
    """What the kind means, for the OpenAPI error table."""
    openai_type: str = "invalid_request_error"
    """OpenAI's ``error.type``, read by clients' retry logic."""
    openai_code: str | None = None
    """OpenAI's ``error.code``; None: textgen's ``code``."""
    retry_after: bool = False
    """The answer carries a ``Retry-After`` header."""


class ErrorKind(Enum):
    """The errors of every route (the OpenAPI error table is generated from this list)."""

    BAD_JSON = ErrorSpec(400, "bad_request", "The body is not valid JSON, not UTF-8, or not an object.")
    UNAUTHORIZED = ErrorSpec(401, "unauthorized", "An API key is required (`Authorization: Bearer <key>`) and "
                                                  "none, or an unknown one, was given.",
                             openai_code="invalid_api_key")
    NO_SUCH_PATH = ErrorSpec(404, "not_found", "No such path.")
    UNKNOWN_MODEL = ErrorSpec(404, "not_found", "Unknown model.", openai_code="model_not_found")
    NO_LATEX = ErrorSpec(404, "not_found", "The model does not write LaTeX.")
    METHOD_NOT_ALLOWED = ErrorSpec(405, "method_not_allowed", "This path does not take this method.")
    TOO_LARGE = ErrorSpec(413, "payload_too_large", "The body or the prompt is over its limit.")
    UNSUPPORTED_MEDIA = ErrorSpec(415, "unsupported_media_type", "Content-Type is not application/json (UTF-8).")
    INVALID = ErrorSpec(422, "validation_error", "A field has the wrong type or is out of range (the field is "
                                                 "named); a form the prompt or model cannot satisfy; a prompt the "
                                                 "model cannot represent.")
    QUEUE_FULL = ErrorSpec(429, "too_many_requests", "The generation queue is full.",
                           openai_type="rate_limit_error", openai_code="rate_limit_exceeded", retry_after=True)
    KEY_RATE_LIMIT = ErrorSpec(429, "too_many_requests", "This API key made more requests in the last minute "
                                                         "than the server's `auth.requests_per_minute`.",
                               openai_type="rate_limit_error", openai_code="rate_limit_exceeded", retry_after=True)
    PAPER_BUSY = ErrorSpec(429, "too_many_requests", "A paper is being written: the server writes one at a time.",
                           openai_type="rate_limit_error", openai_code="rate_limit_exceeded", retry_after=True)
    PAPER_FAILED = ErrorSpec(500, "internal_error", "pdflatex failed on the written paper.", openai_type="server_error")
    INTERNAL = ErrorSpec(500, "internal_error", "An unexpected error (details are in the server log).",
                         openai_type="server_error")
    GENERATION_FAILED = ErrorSpec(500, "internal_error", "Generation failed unexpectedly (details are in the "
                                                         "server log).", openai_type="server_error")
    MODEL_UNAVAILABLE = ErrorSpec(503, "unavailable", "The model failed to load.", openai_type="server_error")
    SHUTTING_DOWN = ErrorSpec(503, "unavailable", "The server is shutting down.", openai_type="server_error",
                              retry_after=True)
    CANCELLED = ErrorSpec(503, "unavailable", "The request was cancelled (its model was stopped or reloaded).",
                          openai_type="server_error")

    @property
    def status(self) -> int:
        return self.value.status

    @classmethod
    def of_status(cls, status: int) -> ErrorKind:
        """The first kind with this status (for werkzeug's own errors, which carry only a status)."""
        return next((kind for kind in cls if kind.status == status), cls.INTERNAL)
