"""Every failure becomes one JSON error answer, never a stack trace; statuses are mapped here, once.

Views raise :class:`APIError` or let the library's own exceptions through (a bad sampling value,
an unknown model, a full queue, ...); :data:`LIBRARY_ERRORS` maps each of those to its status.
The body's shape depends on the blueprint that served the request: textgen's own
``{"error": {"code", "message", "field"?}}``, or one a blueprint registers with
:func:`register_shape` (the OpenAI-compatible routes answer in the OpenAI shape).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from server.batching import JobFailed, QueueFull
from server.registry import ModelUnavailable, UnknownModel
from textgen.forms import FormError
from textgen.sampling import SamplingError
from textgen.tokenizer import TokenizerError

log = logging.getLogger("server")

# Status -> code, in the words of the HTTP reason phrases.
CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
    500: "internal_error", 503: "unavailable",
}


class APIError(Exception):
    """An error answer: ``raise APIError(422, "`top_p` must be in (0, 1]", field="top_p")``."""

    def __init__(self, status: int, message: str, *, field: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or CODES.get(status, "error")
        self.headers = headers or {}

    def body(self) -> dict:
        """textgen's own shape."""
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    def response(self) -> Response:
        """The answer, in the shape of the blueprint serving the request (or owning its path)."""
        shape = _SHAPES.get(request.blueprint or _PATHS.get(request.path, ""), APIError.body)
        response = jsonify(shape(self))
        response.status_code = self.status
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


_SHAPES: dict[str, Callable[[APIError], dict]] = {}
_PATHS: dict[str, str] = {}  # path -> blueprint, for errors raised before a route matched (405)


def register_shape(blueprint: str, shape: Callable[[APIError], dict], paths: tuple[str, ...] = ()) -> None:
    """Answer the errors of ``blueprint``'s routes (and of requests to ``paths``) with ``shape(error)``."""
    _SHAPES[blueprint] = shape
    _PATHS.update({path: blueprint for path in paths})


def validation_error(error: ValidationError) -> APIError:
    """A pydantic error as a 422 naming the first field at fault."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field = loc[0] if loc else None
    where = ".".join(loc)
    if first["type"] == "extra_forbidden":
        return APIError(422, f"unknown field `{where}`", field=field)
    if first["type"] == "missing":
        return APIError(422, f"`{where}` is required", field=field)
    message = first["msg"].removeprefix("Value error, ")  # our validators' own words
    return APIError(422, f"`{where}`: {message}", field=field)


def _queue_full(error: QueueFull) -> APIError:
    return APIError(429, str(error), headers={"Retry-After": str(error.retry_after)})


#: The library's exceptions a request can raise, and the answer each one is.
LIBRARY_ERRORS: dict[type[Exception], Callable[[Exception], APIError]] = {
    ValidationError: validation_error,
    SamplingError: lambda e: APIError(422, str(e), field=e.field),
    FormError: lambda e: APIError(422, str(e), field=e.field or "form"),
    TokenizerError: lambda e: APIError(422, f"`prompt`: {e}", field="prompt"),
    UnknownModel: lambda e: APIError(404, str(e), field="model"),
    ModelUnavailable: lambda e: APIError(503, str(e), field="model"),
    QueueFull: _queue_full,
    JobFailed: lambda e: APIError(503, str(e)),
}


def init_app(app: Flask) -> None:
    """Turn every error (ours, the library's, werkzeug's, unexpected ones) into the JSON shape."""

    @app.errorhandler(APIError)
    def _api_error(error: APIError) -> Response:
        return error.response()

    for kind, convert in LIBRARY_ERRORS.items():
        app.register_error_handler(kind, lambda error, convert=convert: convert(error).response())

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        messages = {
            404: "no such path",
            405: "method not allowed here",
            413: f"request body is over the limit of {app.config.get('MAX_CONTENT_LENGTH')} bytes",
        }
        response = APIError(status, messages.get(status, error.description or error.name)).response()
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return APIError(500, "internal error (logged on the server)").response()
