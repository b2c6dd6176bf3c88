"""``GET /v1/models/<name>/tunes``: the tunes a model can write a ``ci`` form to, with their shapes.

The view loads the model (its vocabulary decides whether it can write a ci at all), lists the tune
book's tunes (:func:`textgen.forms.ci.tunes_for`) and adds each shape's stanzas
(:func:`textgen.forms.ci.stanzas.stanzas_api`), which the page shows a ci in.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, jsonify

from server.api import model_batcher
from server.error_kinds import ErrorKind
from server.openapi import describe, json_content
from server.tunes_schemas import TuneList
from textgen.export import LoadedModel
from textgen.forms.ci import tunes_for
from textgen.forms.ci.stanzas import stanzas_api

bp = Blueprint("tunes", __name__)


def tune_listing(loaded: LoadedModel) -> list[dict[str, Any]]:
    """:func:`tunes_for` with each shape's ``stanzas``."""
    return tunes_for(loaded, lambda shape: {"stanzas": stanzas_api(shape)})


@bp.get("/v1/models/<name>/tunes")
@describe(summary="The tunes (词牌) a model writes `form: ci` to, with their shapes and stanzas",
          operation_id="modelTunes",
          parameters=({"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},),
          responses={HTTPStatus.OK: {"description": "The tunes, the most written first.",
                                     "content": json_content("TuneList")}},
          errors=(ErrorKind.UNKNOWN_MODEL, ErrorKind.MODEL_UNAVAILABLE, ErrorKind.SHUTTING_DOWN))
def model_tunes(name: str) -> Response:
    """Every tune of the book with its shapes, or none when the model's vocabulary cannot write a ci."""
    loaded = model_batcher(name).loaded  # UnknownModel / ModelUnavailable: 404 / 503 (server.errors)
    return jsonify(TuneList.model_validate({"model": name, "tunes": tune_listing(loaded)}).model_dump())
