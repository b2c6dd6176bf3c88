"""``POST /v1/poems/revise``: alternatives for one verse of a finished poem (the Jiuge workflow).

The view decodes the request, plans the revision with :mod:`textgen.forms.revise` (a 422 naming the
rule that cannot be kept), draws the candidate verses through the model's batcher (they share its
batch with every other request) and ranks them by the model's log-probability of the whole poem.
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Blueprint, Response, jsonify

from server.api import model_batcher, read_json_object, wait_for
from server.batching import PromptRows
from server.openapi import GENERATION_ERRORS, describe, json_content
from server.revise_schemas import Candidate, ReviseRequest, ReviseResponse
from textgen.forms.revise import DRAWS_PER_CANDIDATE, prepare_revision, rank_candidates
from textgen.sampling import SamplingParams

bp = Blueprint("revise", __name__)


@bp.post("/v1/poems/revise")
@describe(summary="Alternatives for one verse of a poem, keeping every rule with the verses kept",
          operation_id="revisePoem", request="ReviseRequest",
          responses={HTTPStatus.OK: {"description": "The candidates, best first.",
                                     "content": json_content("ReviseResponse")}},
          errors=GENERATION_ERRORS)
def revise() -> Response:
    """Candidates for one verse: each keeps every rule of the form with the verses kept."""
    req = ReviseRequest.model_validate(read_json_object())
    batcher = model_batcher(req.model)
    plan = prepare_revision(req.form, batcher.loaded, req.poem, req.verse)  # FormError: a 422 naming the rule
    params = SamplingParams(n=req.n * DRAWS_PER_CANDIDATE, temperature=req.temperature, seed=req.seed,
                            max_new_chars=plan.form.chars_per_line)
    rows = [batcher.batch.make_row(plan.prompt, params, index=i, constraint=plan.new_constraint())
            for i in range(params.n)]
    job = batcher.submit([PromptRows(plan.prompt, "", rows)])
    wait_for(job, batcher)
    drawn = [job.samples[i].text for i in range(len(job.rows))]
    candidates = rank_candidates(batcher.loaded, plan, drawn, req.n)
    body = ReviseResponse(model=req.model, candidates=[Candidate(verse=c.verse, poem=c.poem, logprob=c.logprob)
                                                       for c in candidates])
    return jsonify(body.model_dump())
