"""What every form kind is: the protocol a kind module implements, and what they share.

A kind (``tang``, ``latex``, ...) is one module or package of :mod:`textgen.forms` exposing
``FORM_KIND``, an object of the :class:`FormKind` protocol.  It reads the API's ``form`` object
into its spec (a frozen dataclass whose fields are the object's fields), prepares the constraint
that masks a model's choices for a prompt, and checks a text.  :mod:`textgen.forms` keeps the
table of kinds and goes through it for everything else: the REST schema and ``/openapi.json``
(from each spec's field metadata, :func:`form_schema`), the script's options, and the 422s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from textgen.export import LoadedModel
    from textgen.sampling import Constraint


MAX_TITLE_CHARS = 64
"""The longest ``form.title`` a kind accepts (one line)."""
MAX_KEYWORDS = 8
"""The most ``form.keywords`` a kind accepts (fewer where the form has fewer lines or sentences)."""


class FormError(ValueError):
    """A form that cannot be used (a 422); ``field`` names the culprit, e.g. ``form.acrostic``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class PreparedForm:
    """What sampling under a form needs."""

    prompt: str
    """The prompt to feed the model (the title line or ``\\begin{environment}`` added)."""
    new_constraint: Callable[[], Constraint]
    """A fresh constraint object, one per sample."""
    form: Any = None
    """The validated form (the kind's spec, an instance of its ``spec_class``)."""
    echo: str = ""
    """Text returned before each sample's own text: under ``latex``, the prompt as fed
    (``\\begin{environment}`` included), so that the returned text is the whole LaTeX."""


class FormKind(Protocol):
    """A form kind: what :func:`textgen.forms.prepare_form` and :func:`textgen.forms.check_text`
    call, and what the API's schema is built from."""

    kinds: tuple[str, ...]
    """The ``form.kind`` values it serves, e.g. ``("jueju", "lushi")``."""
    spec_class: type
    """The frozen dataclass of a validated form: its API fields (metadata ``api`` not False, see
    :func:`api_fields`) are the ``form`` object's fields, their metadata ``schema`` their JSON schema;
    its ``kind`` field holds the ``form.kind`` value."""
    schema_title: str
    """The name of its ``form`` object in ``/openapi.json``'s components, e.g. ``PoemForm``."""

    def schema_extras(self) -> dict[str, Any]:
        """Keys added to its JSON schema (e.g. the defaults that depend on ``kind``); may be empty."""
        ...

    def parse(self, form: Mapping, loaded: LoadedModel) -> Any:
        """The validated spec (an instance of ``spec_class``) of the API object ``form`` for
        ``loaded``; :class:`FormError` names the field.  Called once the kind and the keys are
        known to be its own."""
        ...

    def prepare(self, spec: Any, loaded: LoadedModel, prompt: str) -> PreparedForm:
        """The prompt to feed and the constraint for ``spec`` after ``prompt``; :class:`FormError`
        when the prompt or the model cannot satisfy it."""
        ...

    def check(self, spec: Any, text: str, prompt: str = "") -> str | None:
        """Why ``text``, generated after ``prompt`` (the prepared prompt), breaks ``spec``; None if it holds."""
        ...


def api_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that a ``form`` object may hold (not those filled in from the export)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("api", True)]


def form_keys(cls: type) -> set[str]:
    """The keys a ``form`` object of ``cls`` may hold."""
    return {f.name for f in api_fields(cls)}


def form_schema(kind: FormKind) -> dict[str, Any]:
    """The JSON schema of a ``form`` object of ``kind`` (for ``/openapi.json``), from its spec's field metadata."""
    properties, required = {}, []
    for f in api_fields(kind.spec_class):
        properties[f.name] = dict(f.metadata.get("schema", {}))
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default or f.metadata.get("required"):
            required.append(f.name)
    return {"type": "object", "title": kind.schema_title, "required": required, "additionalProperties": False,
            "properties": properties, **kind.schema_extras()}


def optional_str(form: Mapping, key: str) -> str:
    """``form[key]``, a string; "" when missing or null (FormError names ``form.<key>`` otherwise)."""
    value = form.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"form.{key}", f"`form.{key}` must be a string or null, got {type(value).__name__}")
    return value


def optional_bool(form: Mapping, key: str, default: bool | None = False) -> bool | None:
    """``form[key]``, a boolean; ``default`` when missing or null (FormError names ``form.<key>`` otherwise)."""
    value = form.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FormError(f"form.{key}", f"`form.{key}` must be true, false or null, got {value!r}")
    return value


def keyword_list(form: Mapping, *, most: int, longest: int, place: str, writes: Callable[[str], bool],
                 model: str) -> tuple[str, ...]:
    """``form.keywords``: distinct, non-empty words, at most ``most`` of them (one a ``place``: a verse,
    a sentence), none longer than ``longest`` characters (the longest ``place``), every character
    one the model writes (``writes``); () when missing or null.  FormError names ``form.keywords``."""
    value = form.get("keywords")
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
        raise FormError("form.keywords", f"`form.keywords` must be a list of strings or null, got {value!r}")
    if len(value) > most:
        raise FormError("form.keywords", f"`form.keywords`: at most one keyword a {place}, so at most {most} here, "
                                         f"got {len(value)}")
    for word in value:
        if not word:
            raise FormError("form.keywords", "`form.keywords`: a keyword must not be empty")
        if len(word) > longest:
            raise FormError("form.keywords", f"`form.keywords`: {word!r} has {len(word)} characters, more than the "
                                             f"longest {place} ({longest} characters) holds")
        for char in word:
            if not writes(char):
                raise FormError("form.keywords", f"`form.keywords`: model {model!r} cannot write {char!r} of "
                                                 f"{word!r} (not a Chinese character of its vocabulary)")
    if len(set(value)) != len(value):
        raise FormError("form.keywords", f"`form.keywords` repeats a keyword: {value!r}")
    return tuple(value)
