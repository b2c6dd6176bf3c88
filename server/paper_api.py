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
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, jsonify
from omegaconf import OmegaConf

from server.api import check_limits, model_batcher, read_json_object, state
from server.error_kinds import ErrorKind
from server.errors import APIError
from server.openapi import describe
from server.paper_schemas import PAPER_DEFAULTS as _DEFAULTS
from server.paper_schemas import PaperRequest

bp = Blueprint("paper", __name__)
_WRITING = threading.Lock()
_FIELD = re.compile(r"^\s*(AUTHOR|TITLE|YEAR)\s*=\s*\{(.*)\},?\s*$", re.M | re.I)


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
@describe(summary="Write a whole paper (LaTeX, and its PDF when the server has pdflatex)", operation_id="paper",
          request="PaperRequest",
          responses={HTTPStatus.OK: {"description": "title, abstract, body, document, bib, references, pdf (base64 "
                                                    "or null), pages, chars, seconds",
                                     "content": {"application/json": {"schema": {"type": "object"}}}}},
          errors=(ErrorKind.BAD_JSON, ErrorKind.UNKNOWN_MODEL, ErrorKind.TOO_LARGE, ErrorKind.UNSUPPORTED_MEDIA,
                  ErrorKind.INVALID, ErrorKind.PAPER_BUSY, ErrorKind.PAPER_FAILED, ErrorKind.MODEL_UNAVAILABLE,
                  ErrorKind.SHUTTING_DOWN))
def paper() -> Response:
    """Write (and, with pdflatex, compile) one paper."""
    from textgen.forms import FormError
    from textgen.forms.latex import prepare_latex
    from textgen.paper import PaperWriter
    from textgen.pdflatex import pdflatex_available

    req = PaperRequest.model_validate(read_json_object())
    if req.max_chars is None:
        req.max_chars = min(int(_DEFAULTS["max_chars"]), state().settings.limits.max_new_chars)
    check_limits("", req.max_chars, length_field="max_chars")
    loaded = model_batcher(req.model).loaded  # 404 / 503 from the registry
    try:
        prepare_latex(loaded)
    except FormError as error:  # no LaTeX files: this model cannot write a paper
        raise APIError(ErrorKind.INVALID, str(error), field="model") from error
    if not _WRITING.acquire(blocking=False):
        raise APIError(ErrorKind.PAPER_BUSY, "a paper is being written; one at a time",
                       headers={"Retry-After": str(_DEFAULTS["busy_retry_after_s"])})
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
                raise APIError(ErrorKind.PAPER_FAILED, f"pdflatex failed on the paper: {result.error}")
            answer["pdf"] = base64.b64encode(result.pdf).decode("ascii")
            answer["pages"] = result.pages
    finally:
        _WRITING.release()
    return jsonify(answer)
