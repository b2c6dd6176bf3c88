"""Command-line arguments of the three commands, made fit for Hydra's override grammar."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

#: The Hydra configs of the commands (``conf/`` beside the package).
CONFIG_PATH = str(Path(__file__).resolve().parent.parent / "conf")


#: Keys whose value is free text, never a Hydra list, dict or interpolation: ``prompt=\begin{lemma}``.
TEXT_KEYS = frozenset({"prompt", "title", "acrostic"})


def _quote(value: str) -> str:
    body = value.replace("'", "\\'")
    tail = len(body) - len(body.rstrip("\\"))  # backslashes before the closing quote
    return "'" + body + "\\" * tail + "'"


def quote_overrides(args: list[str]) -> list[str]:
    """Quote override values Hydra's grammar would refuse or parse: non-ASCII ones (``title=春日``)
    and every value of a free-text key (``prompt=\begin{lemma}``, ``prompt=[x]``).  A list of
    another key keeps its brackets and has its items quoted (``keywords=[月,江]``)."""
    quoted = []
    for arg in args:
        key, eq, value = arg.partition("=")
        needs = not value.isascii() or (key in TEXT_KEYS and value != "")
        if eq and not key.startswith("-") and needs and value[:1] not in ("'", '"'):
            if key not in TEXT_KEYS and value.startswith("[") and value.endswith("]") and len(value) > 2:
                items = [item.strip() for item in value[1:-1].split(",")]
                arg = f"{key}=[" + ",".join(item if item[:1] in ("'", '"') else _quote(item) for item in items) + "]"
            else:
                arg = f"{key}=" + _quote(value)
        quoted.append(arg)
    return quoted


def command_line(args: list[str]) -> list[str]:
    """The arguments as Hydra should see them: ``--json`` spelled ``json=true``, non-ASCII values quoted."""
    return quote_overrides(["json=true" if arg == "--json" else arg for arg in args])


SAMPLING_NODE = "sampling"
"""The config node of the sampler's options (``defaults: [sampling, _self_]`` in sample.yaml, paper.yaml)."""


def sampling_defaults() -> dict:
    """Every :class:`textgen.sampling.SamplingParams` field at its default (the ``sampling`` node)."""
    from dataclasses import fields

    from textgen.sampling import SamplingParams

    return {spec.name: list(spec.default) if isinstance(spec.default, tuple) else spec.default
            for spec in fields(SamplingParams)}


def store_sampling_options() -> None:
    """Register the ``sampling`` config: every :class:`textgen.sampling.SamplingParams` field at its
    default, so that the script's options are the dataclass's and no YAML repeats a default."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SAMPLING_NODE, node=sampling_defaults())


def hydra_command(config_name: str, run: Callable[[DictConfig], int]) -> Callable[[], None]:
    """The entry point of a command: Hydra composes ``conf/<config_name>.yaml`` with the overrides
    (made fit by :func:`command_line`), ``run`` returns the exit status (2 for an expected failure)."""
    import hydra

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    def composed(cfg: DictConfig) -> None:
        code = run(cfg)
        if code:
            sys.exit(code)

    def main() -> None:
        sys.argv[1:] = command_line(sys.argv[1:])
        store_sampling_options()
        composed()

    main.__doc__ = f"Entry point: ``python -m textgen.{config_name}`` / ``textgen-{config_name}``."
    return main
