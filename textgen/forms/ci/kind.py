"""The ``ci`` form kind: ``{"kind": "ci", "tune": "浣溪沙", ...}``, a 词 written to a tune of the book.

The prompt fed to the model is the tune line (and the 词题 line, ``title``), then ``prompt``, as
the corpus writes a ci (the tune on the first line); ``prompt`` is the beginning of the ci's own
text.  The text has exactly the tune's shape (:mod:`textgen.forms.ci.tunebook`), rhymes in one
部 of 词林正韵 per rhyme group, keeps the tune's fixed tones, and ends with ``form_complete``
after its last ``。``; it is never cut short (:mod:`textgen.forms.ci.constraint`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from textgen.export import LoadedModel
from textgen.forms.base import MAX_KEYWORDS, MAX_TITLE_CHARS, FormError, PreparedForm, keyword_list, optional_bool
from textgen.forms.ci.constraint import (
    CiConstraint,
    CiPlan,
    CiRules,
    CiTables,
    ShapeError,
    ci_tables,
)
from textgen.forms.ci.tunebook import Tune, Variant, tune_book
from textgen.tokenizer import TokenizerError

KIND = "ci"
CI_DEFAULTS = {"rhyme": True, "tones": True}
"""What a ``ci`` form that leaves ``rhyme`` or ``tones`` out (or null) gets: the tune's rhymes and
its fixed tones (every tune of the book fixes some)."""


def _api(description: str, schema: dict, **extra) -> dict:
    return {"schema": {**schema, "description": description}, **extra}


@dataclass(frozen=True)
class CiForm:
    """A validated ``ci`` form; its API fields (and their metadata) are the API's ``CiForm`` object."""

    tune: str = field(metadata=_api(
        "The tune (词牌), as the tune book names it (traditional characters are converted); "
        "GET /v1/models/{name}/tunes lists them.", {"type": "string", "examples": ["浣溪沙", "水调歌头"]},
        required=True))
    kind: str = field(default=KIND, metadata=_api("A 词 written to a tune.", {"const": KIND}, required=True))
    variant: int | str | None = field(default=None, metadata=_api(
        "Which shape of the tune (又一体): its index, its name (正体, 又一体1, ...) or its signature "
        "(7/7/7/7,7/7); default the most common.", {"anyOf": [{"type": "integer", "minimum": 0},
                                                              {"type": "string"}, {"type": "null"}]}))
    title: str = field(default="", metadata=_api("The 词题, written as a line under the tune.", {"type": "string"}))
    rhyme: bool = field(default=True, metadata=_api(
        "Each rhyme group of the tune ends in one 部 of 词林正韵 (default true).", {"type": ["boolean", "null"]}))
    tones: bool = field(default=True, metadata=_api(
        "Keep the tones (平仄 by 平水韵) the tune fixes (default true).", {"type": ["boolean", "null"]}))
    no_repeat: bool = field(default=False, metadata=_api(
        "No Chinese character twice in the ci (keywords count).", {"type": "boolean"}))
    keywords: tuple[str, ...] = field(default=(), metadata=_api(
        "Words (one or more Chinese characters) that each appear inside a sentence of the ci.",
        {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": MAX_KEYWORDS}))
    shape: Variant | None = field(default=None, compare=False, repr=False, metadata={"api": False})
    """The tune's shape the ``variant`` names (filled in by :meth:`CiKind.parse`)."""

    def rules(self) -> CiRules:
        return CiRules(self.rhyme, self.tones, self.no_repeat, self.keywords)


# The rules a form adds to the shape, in the order a conflict is looked for (and named).
_RULES = ("rhyme", "tones", "no_repeat", "keywords")


def rules_one_by_one(spec: CiForm) -> Iterator[tuple[str, CiRules]]:
    """``("", the shape alone)``, then ``(rule, the rules so far)`` for each rule ``spec`` sets."""
    trial = CiRules(False, False, False, ())
    yield "", trial
    for rule in _RULES:
        if getattr(spec, rule) != getattr(trial, rule):
            trial = dataclasses.replace(trial, **{rule: getattr(spec, rule)})
            yield rule, trial


def _tune(form: Mapping, loaded: LoadedModel) -> Tune:
    if "tune" not in form or form["tune"] is None:
        raise FormError("form.tune", f"`form.tune` is required (a tune of the book, e.g. 浣溪沙; "
                                     f"GET /v1/models/{loaded.name}/tunes lists them)")
    name = form["tune"]
    if not isinstance(name, str):
        raise FormError("form.tune", f"`form.tune` must be a string, got {type(name).__name__}")
    name = name.strip()
    if not name or len(name) > MAX_TITLE_CHARS or not name.isprintable() or not _is_utf8(name):
        raise FormError("form.tune", f"`form.tune` must be a tune's name (one line of at most {MAX_TITLE_CHARS} "
                                     f"characters), got {name[:80]!r}")
    book = tune_book()
    tune = book.find(name)
    if tune is None:
        near = "、".join(book.nearest(name))
        raise FormError("form.tune", f"`form.tune`: unknown tune {name!r}; the nearest known tunes are {near} "
                                     f"(GET /v1/models/{loaded.name}/tunes lists all {len(book.tunes)})")
    return tune


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return True


def _variant(form: Mapping, tune: Tune) -> Variant:
    key = form.get("variant")
    if key is None:
        return tune.variants[0]
    names = ", ".join(f"{v.index} ({v.name}, {v.signature})" for v in tune.variants)
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise FormError("form.variant", f"`form.variant` must be an index, a name or null, got {key!r}")
    try:
        return tune.variant(key)
    except KeyError:
        raise FormError("form.variant", f"`form.variant`: {tune.name} has no shape {key!r} (its shapes: {names})") \
            from None


def _keywords(form: Mapping, tables: CiTables, loaded: LoadedModel, shape: Variant) -> tuple[str, ...]:
    return keyword_list(form, most=min(len(shape.sentences), MAX_KEYWORDS), longest=max(s.length for s in shape.sentences),
                        place="sentence", writes=tables.has_head, model=loaded.name)


class CiKind:
    """The ``ci`` form kind (:class:`textgen.forms.base.FormKind`): ``form.kind`` ``"ci"``."""

    kinds = (KIND,)
    spec_class = CiForm
    schema_title = "CiForm"

    def schema_extras(self) -> dict:
        return {"x-defaults": CI_DEFAULTS}

    def parse(self, form: Mapping, loaded: LoadedModel) -> CiForm:
        """The validated :class:`CiForm` of the API object (FormError names the culprit)."""
        tune = _tune(form, loaded)
        shape = _variant(form, tune)
        tables = ci_tables(loaded.tokenizer)
        lacks = tables.layout_lacks()
        if lacks:
            raise FormError("form.kind", f"model {loaded.name!r} cannot write a ci: its vocabulary lacks "
                                         f"{', '.join(lacks)}")
        title = form.get("title")
        if title is None:
            title = ""
        if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS or "\n" in title or "\r" in title:
            raise FormError("form.title", f"`form.title` must be one line of at most {MAX_TITLE_CHARS} characters")
        try:
            loaded.tokenizer.encode(title)
        except TokenizerError as error:
            raise FormError("form.title", f"`form.title`: {error}") from error
        rhyme = optional_bool(form, "rhyme", CI_DEFAULTS["rhyme"])
        tones = optional_bool(form, "tones", CI_DEFAULTS["tones"])
        no_repeat = optional_bool(form, "no_repeat", False)
        keywords = _keywords(form, tables, loaded, shape)
        if no_repeat:
            text = "".join(keywords)
            twice = sorted({c for c in text if text.count(c) > 1})
            if twice:
                raise FormError("form.keywords", f"`form.keywords` use {''.join(twice)!r} twice, which "
                                                 "`form.no_repeat` forbids")
        return CiForm(tune.name, KIND, form.get("variant"), title, rhyme, tones, no_repeat, keywords, shape)

    def prepare(self, spec: CiForm, loaded: LoadedModel, prompt: str) -> PreparedForm:
        """The constraint after ``prompt`` (FormError on "prompt" if it breaks the shape, on the first
        rule no completion can keep otherwise)."""
        tables = ci_tables(loaded.tokenizer)
        named: list[str] = []
        template = None
        for rule, rules in rules_one_by_one(spec):
            template = CiConstraint(CiPlan(spec.shape, rules), tables)
            try:
                for char in prompt:
                    template.feed(char)
            except ShapeError as error:
                with_rules = " with " + ", ".join(named + [f"form.{rule}"]) if rule else ""
                raise FormError("prompt", f"the prompt cannot begin a {spec.tune} ({spec.shape.signature})"
                                          f"{with_rules}: {error}") from error
            if template.is_complete():
                raise FormError("prompt", f"the prompt is already a complete {spec.tune}")
            if not template.feasible():
                others = " together with " + ", ".join(named) if named else ""
                after = " after this prompt" if prompt else ""
                homeless = [w for w in rules.keywords if not template.plan.placements[w]] if rule == "keywords" else []
                if homeless:
                    raise FormError("form.keywords", f"`form.keywords`: {homeless[0]!r} fits no sentence of {spec.tune} "
                                                     f"({spec.shape.signature}){others}: the tones the tune fixes, "
                                                     "off the rhyming ends")
                raise FormError(f"form.{rule}" if rule else "form.kind",
                                f"`form.{rule or 'kind'}` cannot be met{others}{after}: model {loaded.name!r} has "
                                f"too few characters that fit {spec.tune}")
            if rule:
                named.append(f"form.{rule}")
        fed = spec.tune + "\n" + (spec.title + "\n" if spec.title else "") + prompt
        return PreparedForm(fed, template.clone, spec)

    def check(self, spec: CiForm, text: str, prompt: str = "") -> str | None:
        """Why ``text`` generated after ``prompt`` (the prepared prompt, tune line included, or the
        user's own) breaks ``spec``; None if it holds."""
        whole = prompt + text
        head = spec.tune + "\n" + (spec.title + "\n" if spec.title else "")
        if whole.startswith(spec.tune + "\n"):
            if not whole.startswith(head):
                return "no title line"
            whole = whole[len(head):]
        constraint = CiConstraint(CiPlan(spec.shape, spec.rules()), None)
        try:
            for char in whole:
                constraint.feed(char)
        except ShapeError as error:
            return str(error)
        if not constraint.is_complete():
            return f"the ci is incomplete ({constraint.where()})"
        if constraint.pending:
            return f"keyword(s) missing: {', '.join(constraint.pending)}"
        return None


FORM_KIND = CiKind()


def writable_tunes(loaded: LoadedModel) -> list[Tune]:
    """The tune book's tunes, most written first, when ``loaded``'s vocabulary can write a ci; else []."""
    if ci_tables(loaded.tokenizer).layout_lacks():
        return []
    return list(tune_book().tunes.values())


def tunes_for(loaded: LoadedModel,
              shape_extras: Callable[[Variant], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The tunes ``loaded`` can write (``GET /v1/models/<name>/tunes``), most written first: each
    ``{"tune", "ci", "variants": [shape, ...]}`` (:meth:`Variant.to_api`, with ``shape_extras(shape)``
    added when given); [] when its vocabulary cannot write a ci."""
    def shape(v: Variant) -> dict[str, Any]:
        return {**v.to_api(), **shape_extras(v)} if shape_extras else v.to_api()

    return [{"tune": t.name, "ci": t.ci, "variants": [shape(v) for v in t.variants]} for t in writable_tunes(loaded)]
