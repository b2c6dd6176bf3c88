"""Command-line values reach Hydra as the user typed them."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from textgen.cli import command_line


def parsed(args: list[str]) -> dict:
    overrides = OverridesParser.create().parse_overrides(command_line(args))
    return {o.key_or_group: o.value() for o in overrides}


@pytest.mark.parametrize("text", ["\\begin{lemma}", "[x], {y}", "春眠不觉晓", "a'b", "ends with \\", "ROMEO:"])
def test_free_text_values_arrive_verbatim(text):
    assert parsed([f"prompt={text}", f"title={text}"]) == {"prompt": text, "title": text}


def test_lists_and_plain_values_keep_their_meaning():
    values = parsed(["model.adaptive_cutoffs=[1000,3000]", "temperature=0.5", "prompt='kept as quoted'", "--json"])
    assert values == {"model.adaptive_cutoffs": [1000, 3000], "temperature": 0.5,
                      "prompt": "kept as quoted", "json": True}
