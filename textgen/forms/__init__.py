"""Forms that hold by construction: Tang 绝句/律诗 (acrostic, title, rhyme) and balanced LaTeX.

A form never retries or filters: its constraint masks the model's choices at every step (see
:class:`textgen.sampling.Constraint`), so every sample obeys it whatever the temperature, top-k
or top-p.  The REST server and ``python -m textgen.sample`` use it the same way::

    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}, loaded)
    samples = generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())

:func:`prepare_form` validates the ``form`` object of ``/work/shared/api.md`` and raises
:class:`FormError` (a 422, naming the field) for anything the form, the prompt or the model
cannot satisfy.  What each form writes:

* ``{"kind": "jueju" | "lushi", "chars_per_line": 5 | 7, "acrostic"?, "title"?, "rhyme"?}``: the
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

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from textgen.export import LoadedModel
from textgen.forms.latex import ENV_NAME, LatexConstraint, LatexGrammar, is_balanced, latex_tables
from textgen.forms.latex_vocab import PROOF_ENVS
from textgen.forms.rhyme import GROUPS, rhyme_group, rhymes
from textgen.forms.tang import (
    COMMA, NEWLINE, PERIOD, VERSES, LayoutError, TangConstraint, TangForm, check_poem, even_verse_ends,
    is_han, poem_length, tang_tables,
)
from textgen.sampling import Constraint
from textgen.tokenizer import TokenizerError

__all__ = [
    "FormError", "PreparedForm", "prepare_form", "prepare_latex", "TangForm", "LatexForm", "check_text", "check_poem",
    "is_balanced", "rhymes", "rhyme_group", "even_verse_ends", "GROUPS", "KINDS", "MAX_TITLE_CHARS",
]

KINDS = ("jueju", "lushi", "latex")
MAX_TITLE_CHARS = 64
_TANG_KEYS = {"kind", "chars_per_line", "acrostic", "title", "rhyme"}
_LATEX_KEYS = {"kind", "environment"}


class FormError(ValueError):
    """A form that cannot be used (a 422); ``field`` names the culprit, e.g. ``form.acrostic``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LatexForm:
    """A validated LaTeX form (``grammar``: the model's LaTeX, which :func:`check_text` reads with)."""

    environment: str | None = None
    kind: str = "latex"
    grammar: LatexGrammar | None = field(default=None, compare=False, repr=False)
    preamble: str = field(default="", compare=False, repr=False)
    """The preamble the text compiles with (the export's ``preamble.tex``)."""


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
    allowed = _LATEX_KEYS if kind == "latex" else _TANG_KEYS
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


def _prepare_tang(kind: str, form: Mapping, loaded: LoadedModel, prompt: str) -> PreparedForm:
    tables = tang_tables(loaded.tokenizer)
    verses = VERSES[kind]
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
    rhyme = form.get("rhyme")
    if rhyme is None:
        rhyme = False
    if not isinstance(rhyme, bool):
        raise FormError("form.rhyme", f"`form.rhyme` must be true, false or null, got {rhyme!r}")
    missing = [c for c in (COMMA, PERIOD, NEWLINE) if c not in tables.ids]
    if missing or not bool(tables.han.any()):
        lacks = ", ".join(map(repr, missing)) or "Chinese characters"
        raise FormError("form.kind", f"model {loaded.name!r} cannot write a {kind}: its vocabulary lacks {lacks}")

    spec = TangForm(kind, chars, acrostic, title, rhyme)
    own_title, verses_text = _split_title(prompt)
    if own_title and title:
        raise FormError("prompt", "the prompt has a title line and `form.title` is given too")
    template = TangConstraint(spec, tables)
    try:
        for char in verses_text:
            template.feed(char)
    except LayoutError as error:
        raise FormError("prompt", f"the prompt cannot begin a {chars}-character {kind}: {error}") from error
    if template.is_complete():
        raise FormError("prompt", f"the prompt is already a complete {kind}")
    if rhyme and not bool(tables.rhyme_mask(template.rhyme_bits).any()):
        raise FormError("prompt", f"model {loaded.name!r} has no character that rhymes with the prompt")
    full_prompt = f"{title}\n{prompt}" if title else prompt
    return PreparedForm(full_prompt, lambda: copy.copy(template), spec)


# --------------------------------------------------------------------------- LaTeX
def _prepare_latex(form: Mapping, loaded: LoadedModel, prompt: str, context: str = "") -> PreparedForm:
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
    start = grammar.start(proof_ok=environment in PROOF_ENVS and not context)
    if context:
        start = start.read(context)
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
    spec = LatexForm(environment, grammar=grammar, preamble=preamble)
    fed = opening + prompt
    return PreparedForm(context + fed, lambda: LatexConstraint(state, tables, environment), spec, echo=fed)


def prepare_latex(loaded: LoadedModel, environment: str | None = None, prompt: str = "",
                  context: str = "") -> PreparedForm:
    """The ``latex`` form for the next piece of a longer document.

    ``context`` is the document so far (complete LaTeX the form itself wrote): the model reads it
    before the opening, and the piece continues it -- its labels are taken, a proof may follow the
    theorem it ends with.  It is not part of ``echo``.
    """
    return _prepare_latex({"kind": "latex", "environment": environment}, loaded, prompt, context)


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
