"""Verified downloads: stream a URL to disk, check sha256 (and size), never leave a partial file."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from textgen.atomic import atomic_file
from textgen.data.sources import Source

GITHUB_RAW_PREFIX = "https://raw.githubusercontent.com/"
MIRROR_ENV = "TEXTGEN_MIRROR"
TIMEOUT_S = 30.0  # per socket operation (connect, each read), not for the whole transfer
CHUNK_BYTES = 1 << 16
USER_AGENT = "textgen-data/0.1 (+urllib)"


class DownloadError(RuntimeError):
    """A download failed (network or HTTP error); the message names the URL."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the pinned sha256 or size; nothing was written."""

    def __init__(
        self,
        path: Path,
        expected_sha256: str,
        actual_sha256: str,
        expected_size: int | None = None,
        actual_size: int | None = None,
    ) -> None:
        self.path = path
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256
        self.expected_size = expected_size
        self.actual_size = actual_size
        message = f"{path}: sha256 mismatch: expected {expected_sha256}, got {actual_sha256}"
        if expected_size is not None and actual_size != expected_size:
            message += f"; size expected {expected_size} bytes, got {actual_size}"
        super().__init__(message)


def mirror_url(url: str, mirror: str | None) -> str:
    """Point a raw.githubusercontent.com URL at ``mirror`` (default: env TEXTGEN_MIRROR).

    The ``https://raw.githubusercontent.com/`` prefix is replaced by the mirror's base URL, e.g.
    ``http://127.0.0.1:8123/``.  Without a mirror, or for other URLs, ``url`` is returned unchanged.
    """
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if not mirror or not url.startswith(GITHUB_RAW_PREFIX):
        return url
    return mirror.rstrip("/") + "/" + url[len(GITHUB_RAW_PREFIX) :]


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _open_url(url: str) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response socket
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise DownloadError(f"{url}: {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"{url}: {error!r}") from error


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def download_file(
    url: str, dest: Path, sha256: str, size: int | None = None, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already has the pinned ``sha256``; return it.

    The body is streamed into a temporary file beside ``dest`` and renamed into place only after
    its sha256 (and ``size``, when given) match, so ``dest`` is never partial.  A stale ``dest``
    with another hash is removed first.  Raises DownloadError (network/HTTP, naming the URL) or
    ChecksumError (naming the file, expected and actual sha256).
    """
    dest = Path(dest)
    if dest.is_file():
        if file_sha256(dest) == sha256:
            return dest
        dest.unlink()
    digest = hashlib.sha256()
    received = 0
    with _open_url(url) as response:
        announced = _content_length(response)
        total = size if size is not None else announced
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
            leave=False,
        )
        with bar, atomic_file(dest, "wb") as handle:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    digest.update(chunk)
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(
                    f"{url}: transfer failed after {received} bytes: {error!r}"
                ) from error
            if announced is not None and received != announced:
                raise DownloadError(
                    f"{url}: connection closed after {received} of {announced} bytes"
                )
            actual = digest.hexdigest()
            if actual != sha256 or (size is not None and received != size):
                raise ChecksumError(dest, sha256, actual, size, received)
    return dest


def _relative_path(path: str) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"source file path must be relative and stay inside raw_dir: {path!r}")
    return relative


def fetch_source(
    source: Source, raw_dir: Path, mirror: str | None = None, progress: bool = True
) -> list[Path]:
    """Download every file of ``source`` to ``raw_dir / file.path`` (skipping verified ones).

    ``mirror`` (default: env TEXTGEN_MIRROR) replaces the raw.githubusercontent.com prefix.
    Returns the local paths in the order of ``source.files``.
    """
    return _fetch(source.files, raw_dir, mirror, progress)


def fetch_extra_files(
    source: Source, raw_dir: Path, mirror: str | None = None, progress: bool = True
) -> list[Path]:
    """Download ``source.extra_files`` (a LaTeX preamble, say) like :func:`fetch_source` does its
    files: checksum-verified, reused when present; returns the paths in their order."""
    return _fetch(source.extra_files, raw_dir, mirror, progress)


def _fetch(files, raw_dir: Path, mirror: str | None, progress: bool) -> list[Path]:
    raw_dir = Path(raw_dir)
    paths = []
    for file in files:
        dest = raw_dir.joinpath(*_relative_path(file.path).parts)
        url = mirror_url(file.url, mirror)
        paths.append(download_file(url, dest, file.sha256, file.bytes, progress=progress))
    return paths
