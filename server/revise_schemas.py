"""Bodies of ``POST /v1/poems/revise`` (:mod:`server.revise`); its ``/openapi.json`` entry is declared
beside the route."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from server.schemas import sampling_field
from textgen.forms.revise import DRAWS_PER_CANDIDATE
from textgen.sampling import MAX_SAMPLES

MAX_CANDIDATES = MAX_SAMPLES // DRAWS_PER_CANDIDATE
"""At most this many candidates a request: each is the best of DRAWS_PER_CANDIDATE drawn verses."""


class ReviseRequest(BaseModel):
    """POST /v1/poems/revise."""

    model_config = ConfigDict(extra="forbid", strict=True, title="ReviseRequest")

    model: str = Field(min_length=1, description="Name of an exported model (see /v1/models).")
    form: dict[str, Any] = Field(description="The poem's form (a PoemForm: jueju or lushi), as it was generated.")
    poem: str = Field(min_length=1, max_length=512,
                      description="The complete poem, as generate returned it (a title line may lead).")
    verse: int = Field(ge=1, le=8, description="The verse to rewrite, counted from 1.")
    n: int = Field(3, ge=1, le=MAX_CANDIDATES, description="Candidates to return, the most likely first.")
    temperature: float = sampling_field("temperature")
    seed: int | None = sampling_field("seed")


class Candidate(BaseModel):
    verse: str = Field(description="The new verse.")
    poem: str = Field(description="The whole poem with the new verse (verses only, as generate returns them).")
    logprob: float = Field(description="The model's log-probability of that poem after its title line (nats).")


class ReviseResponse(BaseModel):
    model: str
    candidates: list[Candidate] = Field(description="Distinct verses that keep every rule with the verses kept, "
                                                    "best first; fewer than n when fewer distinct ones were drawn.")


SCHEMAS = (ReviseRequest, ReviseResponse)
