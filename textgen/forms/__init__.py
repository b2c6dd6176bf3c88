"""Forms that hold by construction, one kind per module, behind one protocol.

A form never retries or filters: its constraint masks the model's choices at every step (see
:class:`textgen.sampling.Constraint`), so every sample obeys it whatever the temperature, top-k
or top-p.  The REST server and ``python -m textgen.sample`` use it the same way::

    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}, loaded)
    samples = generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())

:func:`prepare_form` validates the ``form`` object of ``/work/shared/api.md`` and raises
:class:`FormError` (a 422, naming the field) for anything the form, the prompt or the model
cannot satisfy.  Each kind is a module exposing ``FORM_KIND`` (:class:`~textgen.forms.base.FormKind`),
whose docstring says what it writes: :mod:`textgen.forms.tang` (``jueju``, ``lushi``),
:mod:`textgen.forms.latex` (``latex``) and :mod:`textgen.forms.ci` (``ci``).  This module holds their
table and nothing of any one of them: adding a kind is adding its module and a line in :data:`_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from textgen.forms import ci, latex, tang
from textgen.forms.base import FormError, FormKind, PreparedForm, api_fields, form_keys, form_schema

if TYPE_CHECKING:
    from textgen.export import LoadedModel

__all__ = [
    "FormError", "FormKind", "PreparedForm", "prepare_form", "check_text", "api_fields", "form_keys",
    "form_schema", "FORM_KINDS", "FORM_CLASSES", "KINDS",
]

_KINDS: tuple[FormKind, ...] = (tang.FORM_KIND, latex.FORM_KIND, ci.FORM_KIND)
"""Every form kind, in the order the API lists them."""

FORM_KINDS: dict[str, FormKind] = {name: kind for kind in _KINDS for name in kind.kinds}
"""``form.kind`` -> the kind that serves it (``dict.fromkeys(FORM_KINDS.values())``: each kind once, in order)."""
KINDS = tuple(FORM_KINDS)
FORM_CLASSES: dict[str, type] = {name: kind.spec_class for name, kind in FORM_KINDS.items()}
"""The dataclass of each ``form.kind``: the one source of the fields a ``form`` object may hold."""


def prepare_form(form: Mapping | None, loaded: LoadedModel, prompt: str = "") -> PreparedForm | None:
    """Validate ``form`` (the API's ``form`` object) for ``loaded`` and ``prompt``; None for no form."""
    if form is None:
        return None
    if not isinstance(form, Mapping):
        raise FormError("form", f"`form` must be an object or null, got {type(form).__name__}")
    name = form.get("kind")
    if not isinstance(name, str) or name not in FORM_KINDS:  # an object or a list is no key
        raise FormError("form.kind", f"`form.kind` must be one of {', '.join(KINDS)}, got {name!r}")
    kind = FORM_KINDS[name]
    allowed = form_keys(kind.spec_class)
    for key in form:
        if key not in allowed:
            raise FormError(f"form.{key}", f"unknown field `form.{key}` for kind {name!r} "
                                           f"(fields: {', '.join(sorted(allowed))})")
    return kind.prepare(kind.parse(form, loaded), loaded, prompt)


def check_text(form: Any, text: str, prompt: str = "") -> str | None:
    """Why ``text`` generated after ``prompt`` (both as fed/returned) breaks ``form`` (a prepared
    form's spec); None if it holds.  ``prompt`` is the prepared prompt."""
    return FORM_KINDS[form.kind].check(form, text, prompt)
