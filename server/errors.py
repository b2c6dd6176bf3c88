"""Every failure becomes one JSON error answer, never a stack trace; statuses are mapped here, once.

Views raise :class:`APIError` naming an :class:`~server.error_kinds.ErrorKind` (the one place a
status is declared) or let the library's own exceptions through (a bad sampling value, an unknown
model, a full queue, ...); :data:`LIBRARY_ERRORS` maps each of those to its kind.
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
from server.error_kinds import ErrorKind
from server.registry import ModelUnavailable, UnknownModel
from textgen.forms import FormError
from textgen.sampling import SamplingError
from textgen.tokenizer import TokenizerError

log = logging.getLogger("server")

class APIError(Exception):
    """An error answer: ``raise APIError(ErrorKind.INVALID, "`top_p` must be in (0, 1]", field="top_p")``."""

    def __init__(self, kind: ErrorKind, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return self.kind.value.status

    @property
    def code(self) -> str:
        return self.kind.value.code

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
        return APIError(ErrorKind.INVALID, f"unknown field `{where}`", field=field)
    if first["type"] == "missing":
        return APIError(ErrorKind.INVALID, f"`{where}` is required", field=field)
    message = first["msg"].removeprefix("Value error, ")  # our validators' own words
    return APIError(ErrorKind.INVALID, f"`{where}`: {message}", field=field)


def _queue_full(error: QueueFull) -> APIError:
    return APIError(ErrorKind.QUEUE_FULL, str(error), headers={"Retry-After": str(error.retry_after)})


#: The library's exceptions a request can raise, and the answer each one is.
LIBRARY_ERRORS: dict[type[Exception], Callable[[Exception], APIError]] = {
    ValidationError: validation_error,
    SamplingError: lambda e: APIError(ErrorKind.INVALID, str(e), field=e.field),
    FormError: lambda e: APIError(ErrorKind.INVALID, str(e), field=e.field or "form"),
    TokenizerError: lambda e: APIError(ErrorKind.INVALID, f"`prompt`: {e}", field="prompt"),
    UnknownModel: lambda e: APIError(ErrorKind.UNKNOWN_MODEL, str(e), field="model"),
    ModelUnavailable: lambda e: APIError(ErrorKind.MODEL_UNAVAILABLE, str(e), field="model"),
    QueueFull: _queue_full,
    JobFailed: lambda e: APIError(e.kind, str(e)),
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
        kind = ErrorKind.of_status(error.code or 500)
        messages = {
            ErrorKind.NO_SUCH_PATH: "no such path",
            ErrorKind.METHOD_NOT_ALLOWED: "method not allowed here",
            ErrorKind.TOO_LARGE: f"request body is over the limit of {app.config.get('MAX_CONTENT_LENGTH')} bytes",
        }
        response = APIError(kind, messages.get(kind, error.description or error.name)).response()
        if kind is ErrorKind.METHOD_NOT_ALLOWED and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return APIError(ErrorKind.INTERNAL, "internal error (logged on the server)").response()
