"""Typed registry of the pinned public corpora described by the packaged ``sources.json``."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

SOURCES_RESOURCE = "sources.json"


@dataclass(frozen=True)
class SourceFile:
    """One pinned file: its path in the source repository, raw URL, sha256 and size in bytes."""

    path: str
    url: str
    sha256: str
    bytes: int
    role: str = ""
    """For an extra file: what it is for (e.g. the preamble that makes LaTeX chapters compile)."""


@dataclass(frozen=True)
class Source:
    """A corpus: where it comes from, the exact files, and the rule that builds train/val."""

    name: str
    repo: str
    commit: str
    license: str
    files: tuple[SourceFile, ...]
    build: str
    extra_files: tuple[SourceFile, ...] = ()
    """Files downloaded and checked like ``files`` but copied as they are, not part of train/val."""


def _parse_files(entries: list[dict]) -> tuple[SourceFile, ...]:
    return tuple(
        SourceFile(path=f["path"], url=f["url"], sha256=f["sha256"], bytes=int(f["bytes"]), role=f.get("role", ""))
        for f in entries
    )


def _parse_source(name: str, entry: dict) -> Source:
    return Source(
        name=name,
        repo=entry["repo"],
        commit=entry["commit"],
        license=entry["license"],
        files=_parse_files(entry["files"]),
        build=entry["build"],
        extra_files=_parse_files(entry.get("extra_files", [])),
    )


@functools.lru_cache(maxsize=1)
def _load_sources() -> tuple[Source, ...]:
    text = resources.files(__package__).joinpath(SOURCES_RESOURCE).read_text(encoding="utf-8")
    return tuple(_parse_source(name, entry) for name, entry in json.loads(text).items())


def registered_sources() -> dict[str, Source]:
    """All corpora of the packaged ``sources.json``, by name (a fresh dict on every call)."""
    return {source.name: source for source in _load_sources()}


def get_source(name: str) -> Source:
    """The registered corpus ``name``; an unknown name raises ValueError listing the known ones."""
    sources = registered_sources()
    try:
        return sources[name]
    except KeyError:
        known = ", ".join(sorted(sources))
        raise ValueError(f"unknown corpus {name!r}; known corpora: {known}") from None
