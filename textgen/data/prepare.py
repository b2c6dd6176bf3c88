"""Download a registered corpus and build its train/val text in a cache folder.

Command line: ``python -m textgen.data.prepare NAME [--cache-dir DIR] [--mirror URL] [--quiet]``
prints the paths of ``train.txt`` and ``val.txt``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from textgen.atomic import atomic_write_bytes, atomic_write_text
from textgen.data.builders import BUILDERS, BUILT_FROM, Splits
from textgen.data.download import DownloadError, fetch_extra_files, fetch_source
from textgen.data.sources import Source, get_source, registered_sources

CACHE_DIR_ENV = "TEXTGEN_CACHE_DIR"
RAW_SUBDIR = "raw"
TRAIN_FILE = "train.txt"
VAL_FILE = "val.txt"


def default_cache_dir() -> Path:
    """``$TEXTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/textgen``, else ``~/.cache/textgen``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "textgen"


def prepare_corpus(
    name: str,
    cache_dir: Path,
    mirror: str | None = None,
    progress: bool = True,
    source: Source | None = None,
) -> tuple[Path, Path]:
    """Return ``(train.txt, val.txt)`` of corpus ``name`` under ``cache_dir / name``.

    The source's extra files (a LaTeX preamble) are fetched the same way and copied, as they are,
    beside them.  If both files and the extra files exist they are returned without any network access.  Otherwise the pinned raw
    files are fetched (verified, reused when already present) into ``cache_dir / name / "raw"``,
    built with the corpus' rule, and both texts written atomically (UTF-8, newlines untouched).
    A corpus of ``BUILT_FROM`` prepares its base corpus first (in the same cache) and is built
    against it.
    ``source`` overrides the registry entry (same rule, other files: for mirrors and tests);
    ``progress`` False silences the download bars and the build message.
    """
    if name not in BUILDERS:
        known = ", ".join(sorted(BUILDERS))
        raise ValueError(f"no build rule for corpus {name!r}; known corpora: {known}")
    if source is None:
        source = get_source(name)
    elif source.name != name:
        raise ValueError(f"source {source.name!r} given for corpus {name!r}")
    corpus_dir = Path(cache_dir) / name
    train_path, val_path = corpus_dir / TRAIN_FILE, corpus_dir / VAL_FILE
    _copy_extra_files(source, corpus_dir, mirror, progress)
    if train_path.is_file() and val_path.is_file():
        return train_path, val_path
    raw_files = fetch_source(source, corpus_dir / RAW_SUBDIR, mirror=mirror, progress=progress)
    if progress:
        print(f"building {name} from {len(raw_files)} file(s) ...", file=sys.stderr, flush=True)
    builder_args: list = [raw_files]
    if name in BUILT_FROM:  # e.g. songshi is built against the Tang corpus, prepared first
        base = prepare_corpus(BUILT_FROM[name], cache_dir, mirror=mirror, progress=progress)
        builder_args.append(Splits(*(path.read_bytes().decode("utf-8") for path in base)))
    splits = BUILDERS[name](*builder_args)
    atomic_write_text(train_path, splits.train)
    atomic_write_text(val_path, splits.val)
    return train_path, val_path


def _copy_extra_files(source: Source, corpus_dir: Path, mirror: str | None, progress: bool) -> None:
    """Fetch the source's extra files (verified) and copy each, as it is, beside train/val."""
    missing = [f for f in source.extra_files if not (corpus_dir / PurePosixPath(f.path).name).is_file()]
    if not missing:
        return
    paths = fetch_extra_files(source, corpus_dir / RAW_SUBDIR, mirror=mirror, progress=progress)
    for file, path in zip(source.extra_files, paths):
        atomic_write_bytes(corpus_dir / PurePosixPath(file.path).name, path.read_bytes())


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prepare one corpus and print its train and val paths."""
    parser = argparse.ArgumentParser(
        prog="python -m textgen.data.prepare",
        description="Download a pinned corpus and build its train/val text.",
    )
    parser.add_argument("name", choices=sorted(registered_sources()), help="corpus name")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"cache folder (default: ${CACHE_DIR_ENV}, else $XDG_CACHE_HOME/textgen)",
    )
    parser.add_argument(
        "--mirror",
        default=None,
        help="base URL replacing https://raw.githubusercontent.com/ (default: $TEXTGEN_MIRROR)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    try:
        train_path, val_path = prepare_corpus(
            args.name, cache_dir, mirror=args.mirror, progress=not args.quiet
        )
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(train_path)
    print(val_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
