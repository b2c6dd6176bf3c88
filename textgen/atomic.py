"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_mode(base: int) -> int:
    """``base`` (0o666 files, 0o777 folders) less the process umask: what ``open``/``mkdir`` give.

    ``mkstemp``/``mkdtemp`` create private (0600/0700) entries; a renamed-in file keeps them, so
    without this an export written by one user could not be read by a server running as another.
    """
    return base & ~_umask()


def _umask() -> int:
    try:  # Linux shows it without changing it (os.umask must set it to read it: not thread-safe)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``dest``; on success it replaces ``dest`` in one rename.

    On any exception the temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    encoding = None if "b" in mode else "utf-8"
    newline = None if "b" in mode else ""
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode(0o666))
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, newlines untouched) to ``dest`` atomically."""
    with atomic_file(dest, "w") as handle:
        handle.write(text)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_file(dest, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``dest``; on success it becomes ``dest``.

    An existing ``dest`` is replaced only after the new folder is complete: it is first renamed
    aside, then the staging folder is renamed into place, then the old one is deleted.  If the
    process dies at any point, ``dest`` is either the old complete folder, the new complete folder,
    or absent with the old one kept as ``.<name>.old-*`` beside it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    os.chmod(staging, _default_mode(0o777))
    try:
        yield staging
        file_mode = _default_mode(0o666)
        for child in staging.iterdir():
            if child.is_file():
                # Writers that stage their own temporary file (safetensors' save_file) leave it 0600.
                os.chmod(child, file_mode)
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(staging, dest)
        _fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
