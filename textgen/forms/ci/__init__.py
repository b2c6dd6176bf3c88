"""The ``ci`` form kind: 词 written to a tune of the corpus-derived tune book (词谱).

* :mod:`textgen.forms.ci.cilin`: 词林正韵, the 19 部 ci rhyme by, over the 平水韵 table;
* :mod:`textgen.forms.ci.tunebook` and :mod:`textgen.forms.ci.tunebook_build`: the tune book and
  the command that rebuilds it from a corpus;
* :mod:`textgen.forms.ci.constraint`: the masks and the lookahead;
* :mod:`textgen.forms.ci.kind`: the form object, its validation and :data:`FORM_KIND`.
"""

from textgen.forms.ci.kind import CI_DEFAULTS, FORM_KIND, CiForm, tunes_for, writable_tunes

__all__ = ["FORM_KIND", "CiForm", "CI_DEFAULTS", "tunes_for", "writable_tunes"]
