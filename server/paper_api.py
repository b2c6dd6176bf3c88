"""``POST /v1/paper``: a whole paper, as ``python -m textgen.paper`` writes it, for the page's paper mode.

The request names a model that writes LaTeX and, optionally, ``title``, ``sections``, ``max_chars``,
``temperature`` and ``seed``; every default is ``conf/paper.yaml``'s (the command's own), and
``max_chars`` is bounded by the server's ``limits.max_new_chars`` (its default too, when lower).  The answer holds the LaTeX
(``document``: the whole file; ``title``, ``abstract``, ``body``: its parts; ``bib``: the BibTeX
entries it cites, with ``references`` for display) and, when pdflatex is installed on the server,
the compiled ``pdf`` (base64) and its ``pages``.  A paper takes a while (tens of seconds on a CPU),
so one is written at a time: a second request meanwhile is answered 429 with ``Retry-After``.
The model is read, never changed: its batcher keeps serving other requests.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify
from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field

from server.api import check_limits, model_batcher, read_json_object, state
from server.errors import APIError

bp = Blueprint("paper", __name__)
CONFIG = Path(__file__).resolve().parent.parent / "conf" / "paper.yaml"
_DEFAULTS: dict[str, Any] = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(CONFIG)).items()
                             if k not in ("defaults", "hydra")}
_WRITING = threading.Lock()
RETRY_AFTER_S = 30  # what a 429 suggests: about the time a default paper takes
_FIELD = re.compile(r"^\s*(AUTHOR|TITLE|YEAR)\s*=\s*\{(.*)\},?\s*$", re.M | re.I)


class PaperRequest(BaseModel):
    """What the page may choose; the rest is the command's configuration."""

    model_config = ConfigDict(extra="forbid")

    model: str
    title: str | None = Field(default=_DEFAULTS["title"], max_length=120, pattern=r"^[^\n\r{}\\%$#]*$")
    sections: int = Field(default=_DEFAULTS["sections"], ge=1, le=_DEFAULTS["max_sections"])
    max_chars: int | None = Field(default=None, ge=0)
    """None: the command's ``max_chars``, or the server's ``limits.max_new_chars`` when that is lower."""
    temperature: float = Field(default=_DEFAULTS["temperature"], gt=0, le=2)
    seed: int | None = Field(default=_DEFAULTS["seed"], ge=0)


def references(bib: str) -> list[dict[str, str]]:
    """key, author, title and year of each BibTeX entry (for a reader; the PDF has the real list)."""
    from textgen.forms.bibliography import bib_entries

    out = []
    for key, entry in bib_entries(bib).items():
        fields = {name.lower(): " ".join(value.replace("{", "").replace("}", "").split())
                  for name, value in _FIELD.findall(entry)}
        out.append({"key": key, **{name: fields.get(name, "") for name in ("author", "title", "year")}})
    return out


@bp.post("/v1/paper")
def paper() -> Response:
    """Write (and, with pdflatex, compile) one paper."""
    from textgen.forms import FormError, prepare_latex
    from textgen.forms.latex_vocab import pdflatex_available
    from textgen.paper import PaperWriter

    req = PaperRequest.model_validate(read_json_object())
    if req.max_chars is None:
        req.max_chars = min(int(_DEFAULTS["max_chars"]), state().settings.limits.max_new_chars)
    check_limits("", req.max_chars, length_field="max_chars")
    loaded = model_batcher(req.model).loaded  # 404 / 503 from the registry
    try:
        prepare_latex(loaded)
    except FormError as error:  # no LaTeX files: this model cannot write a paper
        raise APIError(422, str(error), field="model") from error
    if not _WRITING.acquire(blocking=False):
        raise APIError(429, "a paper is being written; one at a time", headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        cfg = OmegaConf.create({**_DEFAULTS, **req.model_dump(exclude={"model"}), "checkpoint": req.model})
        started = time.perf_counter()
        written = PaperWriter(loaded, cfg).write()
        seconds = time.perf_counter() - started
        answer: dict[str, Any] = {
            "model": req.model, "title": written.title, "abstract": written.abstract, "body": written.body,
            "document": written.document, "bib": written.bib, "references": references(written.bib),
            "chars": written.chars, "seconds": round(seconds, 1), "pdflatex": pdflatex_available(),
            "pdf": None, "pages": None}
        if answer["pdflatex"]:
            result = written.compile(float(_DEFAULTS["latex_timeout_s"]))
            if not result.ok or result.pdf is None:
                raise APIError(500, f"pdflatex failed on the paper: {result.error}")
            answer["pdf"] = base64.b64encode(result.pdf).decode("ascii")
            answer["pages"] = result.pages
    finally:
        _WRITING.release()
    return jsonify(answer)


OPENAPI = {"post": {
    "summary": "Write a whole paper (LaTeX, and its PDF when the server has pdflatex)", "operationId": "paper",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model"], "additionalProperties": False,
        "properties": {"model": {"type": "string"}, "title": {"type": ["string", "null"]},
                       "sections": {"type": "integer", "minimum": 1, "maximum": _DEFAULTS["max_sections"]},
                       "max_chars": {"type": "integer", "minimum": 0}, "temperature": {"type": "number"},
                       "seed": {"type": ["integer", "null"]}}}}}},
    "responses": {"200": {"description": "title, abstract, body, document, bib, references, pdf (base64 or null), "
                                         "pages, chars, seconds"}}}}
"""The route's OpenAPI entry, kept beside the route.  Not yet in ``/openapi.json``: the contract
tests pin its paths and fuzz every described route with schemathesis (which would write papers),
and ``server/openapi.py`` is being moved to route metadata next to routes; this dict is ready for that."""
