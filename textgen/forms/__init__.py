"""Forms that hold by construction: Tang 绝句/律诗 (acrostic, title, rhyme) and balanced LaTeX.

A form never retries or filters: its constraint masks the model's choices at every step (see
:class:`textgen.sampling.Constraint`), so every sample obeys it whatever the temperature, top-k
or top-p.  The REST server and ``python -m textgen.sample`` use it the same way::

    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}, loaded)
    samples = generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())

:func:`prepare_form` validates the ``form`` object of ``/work/shared/api.md`` and raises
:class:`FormError` (a 422, naming the field) for anything the form, the prompt or the model
cannot satisfy.  What each form writes:

* ``{"kind": "jueju" | "lushi", "chars_per_line": 5 | 7, "acrostic"?, "title"?, "rhyme"?, "tones"?,
  "no_repeat"?, "keywords"?, "book"?, "first_verse_rhymes"?}`` (``rhyme`` and ``tones`` default by
  kind, :data:`KIND_DEFAULTS`; ``book`` is 平水韵 or 中华新韵, :mod:`textgen.forms.books`): the
  verses in the corpus layout (``，`` after odd verses, ``。`` after even ones, one couplet a
  line), ending with ``finish_reason: form_complete`` after the last ``。``.  The prompt fed to the
  model is ``title + "\\n" + prompt`` (the title line, as in the corpus); ``prompt`` is the
  beginning of the verses (it may also carry its own title line: a first line without ``，``/``。``
  followed by a line break).  A poem is never cut short: the row runs past ``max_new_chars`` until
  it is complete (at most 67 characters, a 7-character 律诗).
* ``{"kind": "latex", "environment"?}``: the prompt fed is ``\\begin{environment}\\n + prompt``;
  the text is complete when that environment is closed.  When ``max_new_chars`` runs out, the
  sampler has already been steered into the shortest closing sequence, so the text ends balanced
  and never longer than ``max_new_chars`` -- unless the prompt alone leaves open more than
  ``max_new_chars`` characters can close, in which case it runs past by exactly that difference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from textgen.export import LoadedModel
from textgen.forms.books import BOOKS, DEFAULT_BOOK, rhyme_book
from textgen.forms.latex import ENV_NAME, LatexConstraint, LatexGrammar, Rules, is_balanced, latex_tables
from textgen.forms.latex_vocab import PROOF_ENVS
from textgen.forms.lookahead import PoemPlan
from textgen.forms.rhyme import GROUPS, rhyme_group
from textgen.forms.tang import (
    COMMA,
    KIND_DEFAULTS,
    NEWLINE,
    PERIOD,
    VERSES,
    LayoutError,
    TangConstraint,
    TangForm,
    check_poem,
    even_verse_ends,
    is_han,
    poem_length,
    tang_tables,
)
from textgen.forms.tones import PATTERN_COUNT, PATTERNS
from textgen.sampling import Constraint
from textgen.tokenizer import TokenizerError

__all__ = [
    "FormError", "PreparedForm", "prepare_form", "prepare_latex", "TangForm", "LatexForm", "check_text", "check_poem",
    "is_balanced", "rhymes", "rhyme_group", "even_verse_ends", "GROUPS", "KINDS", "MAX_TITLE_CHARS",
    "api_fields", "form_keys", "form_schema", "FORM_CLASSES", "KIND_DEFAULTS", "BOOKS", "DEFAULT_BOOK",
    "rhyme_book", "tang_spec",
]


def rhymes(chars: str, book: str = DEFAULT_BOOK) -> bool:
    """Whether all of ``chars`` share one rhyme group of ``book`` (any reading of each)."""
    return rhyme_book(book).rhymes(chars)

KINDS = ("jueju", "lushi", "latex")
MAX_TITLE_CHARS = 64
MAX_KEYWORDS = 8


class FormError(ValueError):
    """A form that cannot be used (a 422); ``field`` names the culprit, e.g. ``form.acrostic``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LatexForm:
    """A validated LaTeX form; its API fields (and their metadata) are the API's ``LatexForm`` object.

    ``grammar`` (the model's LaTeX, which :func:`check_text` reads with) and ``preamble`` come from
    the export, not from the request: their metadata ``api: False`` keeps them out of the API.
    """

    environment: str | None = field(default=None, metadata={"schema": {
        "type": "string", "examples": ["theorem", "lemma", "proof", "definition"],
        "description": "Write one such environment, balanced."}})
    kind: str = field(default="latex", metadata={"schema": {"const": "latex"}, "required": True})
    grammar: LatexGrammar | None = field(default=None, compare=False, repr=False, metadata={"api": False})
    preamble: str = field(default="", compare=False, repr=False, metadata={"api": False})
    """The preamble the text compiles with (the export's ``preamble.tex``)."""


FORM_CLASSES = {"jueju": TangForm, "lushi": TangForm, "latex": LatexForm}
"""The dataclass of each kind: the one source of the fields a ``form`` object may hold."""


def api_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that a ``form`` object may hold (not those filled in from the export)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("api", True)]


def form_keys(cls: type) -> set[str]:
    """The keys a ``form`` object of ``cls`` may hold."""
    return {f.name for f in api_fields(cls)}


def form_schema(cls: type, title: str) -> dict[str, Any]:
    """The JSON schema of a ``form`` object of ``cls`` (for ``/openapi.json``), from its fields' metadata."""
    properties, required = {}, []
    for f in api_fields(cls):
        properties[f.name] = dict(f.metadata.get("schema", {}))
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default or f.metadata.get("required"):
            required.append(f.name)
    schema = {"type": "object", "title": title, "required": required, "additionalProperties": False,
              "properties": properties}
    if cls is TangForm:
        schema["x-defaults-by-kind"] = KIND_DEFAULTS  # what null or a missing rhyme/tones means, per kind
    return schema


@dataclass
class PreparedForm:
    """What sampling under a form needs."""

    prompt: str
    """The prompt to feed the model (the title line or ``\\begin{environment}`` added)."""
    new_constraint: Callable[[], Constraint]
    """A fresh constraint object, one per sample."""
    form: TangForm | LatexForm | None = None
    """The validated form."""
    echo: str = ""
    """Text returned before each sample's own text: under ``latex``, the prompt as fed
    (``\\begin{environment}`` included), so that the returned text is the whole LaTeX."""


def prepare_form(form: Mapping | None, loaded: LoadedModel, prompt: str = "") -> PreparedForm | None:
    """Validate ``form`` (the API's ``form`` object) for ``loaded`` and ``prompt``; None for no form."""
    if form is None:
        return None
    if not isinstance(form, Mapping):
        raise FormError("form", f"`form` must be an object or null, got {type(form).__name__}")
    kind = form.get("kind")
    if kind not in KINDS:
        raise FormError("form.kind", f"`form.kind` must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = form_keys(FORM_CLASSES[kind])
    for key in form:
        if key not in allowed:
            raise FormError(f"form.{key}", f"unknown field `form.{key}` for kind {kind!r} "
                                           f"(fields: {', '.join(sorted(allowed))})")
    if kind == "latex":
        return _prepare_latex(form, loaded, prompt)
    return _prepare_tang(kind, form, loaded, prompt)


# --------------------------------------------------------------------------- Tang
def _optional_str(form: Mapping, key: str) -> str:
    value = form.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"form.{key}", f"`form.{key}` must be a string or null, got {type(value).__name__}")
    return value


def _optional_bool(form: Mapping, key: str, default: bool | None = False) -> bool | None:
    value = form.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FormError(f"form.{key}", f"`form.{key}` must be true, false or null, got {value!r}")
    return value


def _tones(form: Mapping, default: bool) -> bool | str:
    value = form.get("tones")
    if value is None:
        return default
    if value is False:
        return False
    if value is True or (isinstance(value, str) and value in PATTERNS):
        return value
    raise FormError("form.tones", f"`form.tones` must be true, false, null, {' or '.join(map(repr, PATTERNS))}, "
                                  f"got {value!r}")


def _keywords(form: Mapping, tables, loaded: LoadedModel, chars: int, verses: int) -> tuple[str, ...]:
    value = form.get("keywords")
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
        raise FormError("form.keywords", f"`form.keywords` must be a list of strings or null, got {value!r}")
    if len(value) > min(verses, MAX_KEYWORDS):
        raise FormError("form.keywords", f"`form.keywords`: at most one keyword a verse, so at most {verses} "
                                         f"for a {verses}-verse poem, got {len(value)}")
    for word in value:
        if not word:
            raise FormError("form.keywords", "`form.keywords`: a keyword must not be empty")
        if len(word) > chars:
            raise FormError("form.keywords", f"`form.keywords`: {word!r} has {len(word)} characters, more than a "
                                             f"verse of {chars} holds")
        for char in word:
            if not tables.has_head(char):
                raise FormError("form.keywords", f"`form.keywords`: model {loaded.name!r} cannot write {char!r} of "
                                                 f"{word!r} (not a Chinese character of its vocabulary)")
    if len(set(value)) != len(value):
        raise FormError("form.keywords", f"`form.keywords` repeats a keyword: {value!r}")
    for word in value:
        for other in value:
            if other != word and other in word:
                raise FormError("form.keywords", f"`form.keywords`: {other!r} is part of {word!r} (one keyword "
                                                 "a verse: give the longer one alone)")
    return tuple(value)


def _book(form: Mapping) -> str:
    book = form.get("book")
    if book is None:
        return DEFAULT_BOOK
    if book not in BOOKS:
        raise FormError("form.book", f"`form.book` must be one of {', '.join(BOOKS)}, got {book!r}")
    return book


def tang_spec(form: Mapping, loaded: LoadedModel) -> TangForm:
    """The validated :class:`TangForm` of a jueju/lushi API object (FormError names the culprit)."""
    kind = form.get("kind")
    if kind not in VERSES:
        raise FormError("form.kind", f"`form.kind` must be one of {', '.join(VERSES)}, got {kind!r}")
    allowed = form_keys(TangForm)
    for key in form:
        if key not in allowed:
            raise FormError(f"form.{key}", f"unknown field `form.{key}` for kind {kind!r} "
                                           f"(fields: {', '.join(sorted(allowed))})")
    return _tang_spec(kind, form, loaded, tang_tables(loaded.tokenizer, _book(form)))


def _tang_spec(kind: str, form: Mapping, loaded: LoadedModel, tables) -> TangForm:
    """The :class:`TangForm` of the API object, each field checked (FormError names the culprit)."""
    verses = VERSES[kind]
    book = _book(form)
    if "chars_per_line" not in form:
        raise FormError("form.chars_per_line", "`form.chars_per_line` is required (5 or 7)")
    chars = form["chars_per_line"]
    if isinstance(chars, bool) or chars not in (5, 7):
        raise FormError("form.chars_per_line", f"`form.chars_per_line` must be 5 or 7, got {chars!r}")
    acrostic = _optional_str(form, "acrostic")
    if acrostic and len(acrostic) != verses:
        raise FormError("form.acrostic", f"`form.acrostic` must give one character for each of the "
                                         f"{verses} verses of a {kind}, got {len(acrostic)}")
    for head in acrostic:
        if not tables.has_head(head):
            raise FormError("form.acrostic", f"`form.acrostic`: model {loaded.name!r} cannot write {head!r} "
                                             "(not a Chinese character of its vocabulary)")
    title = _optional_str(form, "title")
    if len(title) > MAX_TITLE_CHARS or "\n" in title or "\r" in title:
        raise FormError("form.title", f"`form.title` must be one line of at most {MAX_TITLE_CHARS} characters")
    try:
        loaded.tokenizer.encode(title)
    except TokenizerError as error:
        raise FormError("form.title", f"`form.title`: {error}") from error
    defaults = KIND_DEFAULTS[kind]
    rhyme, tones = _optional_bool(form, "rhyme", defaults["rhyme"]), _tones(form, defaults["tones"])
    first_verse_rhymes = _optional_bool(form, "first_verse_rhymes", None)
    if first_verse_rhymes is not None and not rhyme and not tones:
        raise FormError("form.first_verse_rhymes", "`form.first_verse_rhymes` needs `form.rhyme` or `form.tones` "
                                                   "(it says whether the first verse rhymes, or ends level)")
    no_repeat = _optional_bool(form, "no_repeat")
    keywords = _keywords(form, tables, loaded, chars, verses)
    missing = [c for c in (COMMA, PERIOD, NEWLINE) if c not in tables.ids]
    if missing or not bool(tables.han.any()):
        lacks = ", ".join(map(repr, missing)) or "Chinese characters"
        raise FormError("form.kind", f"model {loaded.name!r} cannot write a {kind}: its vocabulary lacks {lacks}")
    if no_repeat:
        for name, text in (("form.acrostic", acrostic), ("form.keywords", "".join(keywords))):
            twice = sorted({c for c in text if text.count(c) > 1})
            if twice:
                raise FormError(name, f"`{name}` uses {''.join(twice)!r} twice, which `form.no_repeat` forbids")
    return TangForm(kind, chars, acrostic, title, rhyme, tones, no_repeat, keywords, book, first_verse_rhymes)


# The rules a form adds to the layout, in the order a conflict is looked for (and named).
_RULES = ("acrostic", "rhyme", "tones", "first_verse_rhymes", "no_repeat", "keywords")


def rules_one_by_one(spec: TangForm) -> Iterator[tuple[str, TangForm]]:
    """``("", the layout alone)``, then ``(rule, the form with the rules so far)`` for each rule of
    :data:`_RULES` that ``spec`` sets, in that order: how a conflict is found and named."""
    trial = dataclasses.replace(spec, acrostic="", rhyme=False, tones=False, no_repeat=False, keywords=(),
                                first_verse_rhymes=None)
    yield "", trial
    for rule in _RULES:
        if getattr(spec, rule) != getattr(trial, rule):
            trial = dataclasses.replace(trial, **{rule: getattr(spec, rule)})
            yield rule, trial


def _template(spec: TangForm, tables, verses_text: str, kind: str) -> TangConstraint:
    """The constraint after the prompt's verses; FormError if the prompt breaks the form or no
    completion can keep every rule (the first rule that makes it impossible is named)."""
    named: list[str] = []
    for rule, trial in rules_one_by_one(spec):
        template = TangConstraint(trial, tables)
        try:
            for char in verses_text:
                template.feed(char)
        except LayoutError as error:
            raise FormError("prompt", f"the prompt cannot begin a {spec.chars_per_line}-character {kind}"
                                      f"{' with ' + ', '.join(named + [f'form.{rule}']) if rule else ''}: "
                                      f"{error}") from error
        if not template.feasible():
            raise FormError(f"form.{rule}", _conflict(rule, trial, tables, verses_text, named))
        if rule:
            named.append(f"form.{rule}")
    return template


def _conflict(rule: str, trial: TangForm, tables, verses_text: str, named: list[str]) -> str:
    """Why no poem can keep ``rule`` once the rules before it (``named``) are on."""
    others = " together with " + ", ".join(named) if named else ""
    prompt = " after this prompt" if verses_text else ""
    if rule == "keywords":
        for word in trial.keywords:
            alone = TangConstraint(dataclasses.replace(trial, keywords=(word,)), tables)
            for char in verses_text:
                alone.feed(char)
            if not alone.feasible():
                return f"`form.keywords`: {word!r} fits no verse{others}{prompt}"
        return f"`form.keywords`: the keywords {list(trial.keywords)!r} do not all fit, one a verse{others}{prompt}"
    if rule == "":
        return f"`form.kind`: the model's vocabulary cannot fill this form{prompt}"
    if rule == "tones" and trial.acrostic and not PoemPlan(trial, None).patterns:
        return (f"`form.tones`: the acrostic heads {trial.acrostic!r} fit no tonal pattern by {trial.book}"
                + (" (against 孤平, a head that opens a five-character verse ending 仄平 must be level)"
                   if trial.fine_tones and trial.chars_per_line == 5 else ""))
    return f"`form.{rule}` cannot be met{others}{prompt}: the model's vocabulary has too few characters that fit"


def _prepare_tang(kind: str, form: Mapping, loaded: LoadedModel, prompt: str) -> PreparedForm:
    tables = tang_tables(loaded.tokenizer, _book(form))
    spec = _tang_spec(kind, form, loaded, tables)
    own_title, verses_text = _split_title(prompt)
    if own_title and spec.title:
        raise FormError("prompt", "the prompt has a title line and `form.title` is given too")
    template = _template(spec, tables, verses_text, kind)
    if template.is_complete():
        raise FormError("prompt", f"the prompt is already a complete {kind}")
    if spec.rhyme and not any(bool(tables.rhyme_mask(template.rhyme_bits[p]).any())
                              for p in range(PATTERN_COUNT) if template.patterns >> p & 1):
        raise FormError("prompt", f"model {loaded.name!r} has no character that rhymes with the prompt")
    full_prompt = f"{spec.title}\n{prompt}" if spec.title else prompt
    return PreparedForm(full_prompt, template.clone, spec)


# --------------------------------------------------------------------------- LaTeX
def _prepare_latex(form: Mapping, loaded: LoadedModel, prompt: str, context: str = "",
                   rules: Rules = Rules()) -> PreparedForm:
    environment = form.get("environment")
    if environment is not None and (not isinstance(environment, str) or not ENV_NAME.match(environment)):
        raise FormError("form.environment", "`form.environment` must be null or a LaTeX environment name "
                                            f"(letters, then an optional '*'), got {environment!r}")
    found = latex_tables(loaded.tokenizer, loaded.path)
    if found is None:
        raise FormError("form.kind", f"model {loaded.name!r} cannot write LaTeX that compiles: its export has no "
                                     "latex.json and preamble.tex (train it on a LaTeX corpus with a preamble, or "
                                     "add them with python -m textgen.latex_export)")
    tables, preamble = found
    grammar, vocab = tables.grammar, tables.grammar.vocab
    start = grammar.start(proof_ok=environment in PROOF_ENVS and not context, rules=rules)
    if context:
        start = start.read(context)
        if start is not None:
            start = dataclasses.replace(start, open_sentence=False)  # the piece's own sentences count
        if start is None or start.closing():
            raise FormError("context", "the context must be complete LaTeX of the model's vocabulary")
    if environment is not None and not grammar.can_begin(start, environment):
        usable = sorted(e for e in vocab.environments if grammar.can_begin(start, e))
        raise FormError("form.environment", f"`form.environment`: model {loaded.name!r} cannot open "
                                            f"{environment!r} at the top of a document (it can: {', '.join(usable)})")
    opening = f"\\begin{{{environment}}}\n" if environment else ""
    state = start.read(opening)
    for i, ch in enumerate(prompt):
        following = state.step(ch)
        if following is None:
            raise FormError("prompt", f"the prompt cannot be continued into LaTeX that compiles: {ch!r} at "
                                      f"character {i + 1} ({prompt[max(0, i - 20):i + 1]!r}) is not allowed there "
                                      f"by model {loaded.name!r}'s LaTeX vocabulary")
        state = following
    if environment and (not state.stack or state.stack[0].name != environment):
        raise FormError("prompt", f"the prompt already closes \\begin{{{environment}}}")
    state = dataclasses.replace(state, writing=True)  # from here the model writes: refs, cites, widths bound
    spec = LatexForm(environment, grammar=grammar, preamble=preamble)
    fed = opening + prompt
    return PreparedForm(context + fed, lambda: LatexConstraint(state, tables, environment), spec, echo=fed)


def prepare_latex(loaded: LoadedModel, environment: str | None = None, prompt: str = "",
                  context: str = "", rules: Rules = Rules()) -> PreparedForm:
    """The ``latex`` form for the next piece of a longer document.

    ``context`` is the document so far (complete LaTeX the form itself wrote): the model reads it
    before the opening, and the piece continues it -- its labels are taken, a proof may follow the
    theorem it ends with.  It is not part of ``echo``.  ``rules``: what a longer document adds
    (:class:`textgen.forms.latex.Rules`).
    """
    return _prepare_latex({"kind": "latex", "environment": environment}, loaded, prompt, context, rules)


# --------------------------------------------------------------------------- checking
def check_text(form: TangForm | LatexForm, text: str, prompt: str = "") -> str | None:
    """Why ``text`` generated after ``prompt`` (both as fed/returned) breaks ``form``; None if it holds.

    For a Tang form ``prompt`` is the prepared prompt (title line included); for LaTeX, the
    prepared prompt too (``\\begin{environment}`` included), read by the form's own grammar.
    """
    if isinstance(form, LatexForm):
        whole = prompt + text
        state = form.grammar.start(proof_ok=form.environment in PROOF_ENVS).read(whole)
        if state is None:
            return "LaTeX the grammar refuses"
        if state.closing():
            return "LaTeX left open"
        if form.environment and not whole.rstrip().endswith(f"\\end{{{form.environment}}}"):
            return f"does not end with \\end{{{form.environment}}}"
        return None
    title, verses = _split_title(prompt + text)
    if form.title and title != form.title:
        return "no title line"
    return check_poem(verses, form)


def _split_title(text: str) -> tuple[str, str]:
    """(title, verses) of a poem: the title line is a first line without ``，``/``。``."""
    first, newline, rest = text.partition("\n")
    if newline and COMMA not in first and PERIOD not in first:
        return first, rest
    return "", text


__all__ += ["poem_length", "is_han"]
