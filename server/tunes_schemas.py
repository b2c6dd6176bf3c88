"""The body of ``GET /v1/models/<name>/tunes`` (:mod:`server.tunes_api`): the tune book's shapes
(:meth:`textgen.forms.ci.tunebook.Variant.to_api`) with their stanzas (:mod:`textgen.forms.ci.stanzas`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field the tune book adds must be described here


class TuneSentence(_Strict):
    length: int = Field(description="Chinese characters.")
    mark: str = Field(description="The mark after it: 。 ends a line of the layout; another (its commonest) does not.")
    tones: str = Field(description="One of 平/仄 (fixed by the tune) or 中 (free) per character.")
    rhyme: int = Field(description="The rhyme group its last character rhymes in (-1: it does not rhyme).")


class TuneStanza(_Strict):
    name: str = Field(description="上阕 or 下阕; 全阕 for a single-stanza shape.")
    start: int = Field(description="Its first sentence (an index of `sentences`).")
    sentences: int = Field(description="How many sentences it holds.")
    lines: int = Field(description="How many lines of the layout (sentence groups ending 。) it holds.")
    chars: int = Field(description="Chinese characters.")


class TuneShape(_Strict):
    index: int = Field(description="The shape's index: `form.variant`.")
    name: str = Field(description="正体 (the commonest shape) or 又一体1, 又一体2, ...; also a `form.variant`.")
    signature: str = Field(description="Sentence lengths, `,` inside a line, `/` between lines; also a `form.variant`.")
    ci: int = Field(description="Ci of the corpus in this shape.")
    chars: int = Field(description="Chinese characters of a ci of this shape.")
    rhyme_groups: int = Field(description="Rhyme groups (more than one: the tune changes rhyme, 换韵).")
    layout: str = Field(description="The shape written out, a line per line of the layout: 平/仄/中 per character, "
                                    "(韵k) before a mark where group k rhymes.")
    sentences: list[TuneSentence]
    stanzas: list[TuneStanza] = Field(description="The stanzas (阕), read off the shape (the corpus does not mark "
                                                  "them): two for a double-stanza tune, in order.")


class TuneEntry(_Strict):
    tune: str = Field(description="The tune's name: `form.tune`.")
    ci: int = Field(description="Ci of the tune in the corpus the tune book was built from (every shape).")
    variants: list[TuneShape] = Field(description="Its shapes, the commonest first.")


class TuneList(_Strict):
    """GET /v1/models/{name}/tunes."""

    model_config = ConfigDict(extra="forbid", title="TuneList")

    model: str
    tunes: list[TuneEntry] = Field(description="The tunes the model can write a `ci` form to, the most written "
                                               "first; empty when its vocabulary cannot write a ci.")


SCHEMAS = (TuneList,)
