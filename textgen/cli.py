"""Command-line arguments of the three commands, made fit for Hydra's override grammar."""

from __future__ import annotations


def quote_overrides(args: list[str]) -> list[str]:
    """Quote non-ASCII override values (``title=春日``), which Hydra's grammar refuses unquoted."""
    quoted = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and not key.startswith("-") and not value.isascii() and value[:1] not in ("'", '"'):
            body = value.replace("'", "\\'")
            tail = len(body) - len(body.rstrip("\\"))  # backslashes before the closing quote
            arg = f"{key}='" + body + "\\" * tail + "'"
        quoted.append(arg)
    return quoted


def command_line(args: list[str]) -> list[str]:
    """The arguments as Hydra should see them: ``--json`` spelled ``json=true``, non-ASCII values quoted."""
    return quote_overrides(["json=true" if arg == "--json" else arg for arg in args])
