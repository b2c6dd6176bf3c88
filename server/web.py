"""``/``: the page where a person tries the models (plain HTML + JS in ``server/static``, no build step)."""

from __future__ import annotations

from http import HTTPStatus

from flask import Blueprint, Response, current_app

from server.openapi import describe

bp = Blueprint("web", __name__)


@bp.get("/")
@describe(summary="The web page", operation_id="page", responses={
    HTTPStatus.OK: {"description": "HTML page to try the models.", "content": {"text/html": {"schema": {"type": "string"}}}}})
def index() -> Response:
    """The page; it talks to the API like any client (``/v1/models``, ``/v1/generate/stream``)."""
    return current_app.send_static_file("index.html")
