"""One error shape for every failure: ``{"error": {"code", "message", "field"?}}``, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

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
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    def response(self) -> Response:
        response = jsonify(self.body())
        response.status_code = self.status
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


def init_app(app: Flask) -> None:
    """Turn every error (ours, werkzeug's, unexpected ones) into the JSON shape."""

    @app.errorhandler(APIError)
    def _api_error(error: APIError) -> Response:
        return error.response()

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
