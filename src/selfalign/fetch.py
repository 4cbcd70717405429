"""Pinned files: fetched by URL and checked by sha256, found first in mirrors (by name or by
content), then in the cache, then downloaded; gzip copies are accepted by their content's hash.

The one fetcher for every pinned input (benchmark releases, the release's data, OctoPack's
files, the SFT mix's sources); :mod:`selfalign.pins` checks and fetches the config's pins with it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .records import atomic_writer, sha256_file

DEFAULT_TIMEOUT_S = 60.0


class FetchError(RuntimeError):
    """A pinned file could not be obtained, or a copy of it does not have the pinned sha256."""


# ------------------------------------------------------------------------------------- fetching


def url_basename(url: str) -> str:
    """The file name a URL names (its last path segment)."""
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    if not name:
        raise ValueError(f"cannot take a file name from URL {url!r}")
    return name


def _download(url: str, sha256: str, target: Path, timeout: float) -> None:
    """Stream ``url`` into ``target`` atomically, refusing to keep bytes with the wrong hash."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        with atomic_writer(target, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
            got = digest.hexdigest()
            if got != sha256:
                # Raising inside atomic_writer removes the temporary file: nothing bad is cached.
                raise FetchError(f"{url}: downloaded sha256 {got} != the pinned {sha256}")


def fetch_pinned(
    url: str,
    sha256: str,
    *,
    mirrors: Sequence[str | os.PathLike[str]] = (),
    cache_dir: str | os.PathLike[str],
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """A local path to the file at ``url`` whose sha256 is ``sha256``.

    Looked up, in order: a file with the URL's base name in each mirror directory (or, where
    there is none, any file there with the pinned content, plain or gzipped: a gzipped copy is
    decompressed into ``cache_dir``), the same name in ``cache_dir``, and finally a download
    into ``cache_dir``. A mirror copy with another hash
    raises :class:`FetchError` naming both hashes: a mirror is curated, so a mismatch means the
    wrong release is there, and quietly using another copy would hide that. A cached copy with
    another hash is our own damaged download, so it is replaced by a fresh one. When nothing
    works the error lists every place tried and why each failed.
    """
    sha256 = sha256.lower()
    name = url_basename(url)
    tried: list[str] = []
    cached = Path(cache_dir).expanduser() / name
    found = find_in_mirrors(url, sha256, mirrors, tried)
    if found is not None:
        # a copy found by its gzipped content is decompressed into the cache
        return found if sha256_file(found) == sha256 else _gunzip_to(found, cached, sha256)

    if cached.is_file():
        got = sha256_file(cached)
        if got == sha256:
            return cached
        tried.append(f"cache {cached}: sha256 {got} != pinned {sha256} (replaced by a download)")
    else:
        tried.append(f"cache {cached}: not found")

    try:
        _download(url, sha256, cached, timeout)
    except FetchError as exc:
        tried.append(f"download: {exc}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        tried.append(f"download {url}: {type(exc).__name__}: {reason}")
    else:
        return cached
    listing = "\n".join(f"  - {entry}" for entry in tried)
    raise FetchError(f"could not obtain {name} (sha256 {sha256}); tried:\n{listing}")


def find_in_mirrors(
    url: str, sha256: str, mirrors: Sequence[str | os.PathLike[str]], tried: list[str] | None = None
) -> Path | None:
    """The mirror copy of the file at ``url``: by its base name, else by content (plain or
    gzipped; a ``.gz`` path returned is to be decompressed). A same-named copy with another
    sha256 raises :class:`FetchError`. ``tried`` collects where it looked."""
    sha256 = sha256.lower()
    name = url_basename(url)
    for mirror in mirrors:
        candidate = Path(mirror).expanduser() / name
        if not candidate.is_file():
            found = find_by_content(Path(mirror).expanduser(), sha256)
            if found is not None:
                return found
            if tried is not None:
                tried.append(f"mirror {candidate}: not found (nor a file with that content)")
            continue
        got = sha256_file(candidate)
        if got != sha256:
            raise FetchError(
                f"mirror copy {candidate} has sha256 {got}, but {url} is pinned to {sha256}: "
                "replace the mirror file or remove it from the mirrors"
            )
        return candidate
    return None


def find_by_content(directory: Path, sha256: str) -> Path | None:
    """A file directly in ``directory`` whose bytes, or whose gunzipped bytes (``.gz``), have
    ``sha256``: mirrors keep files under their own names and often compressed."""
    if not directory.is_dir():
        return None
    for candidate in sorted(directory.iterdir()):
        if not candidate.is_file():
            continue
        if sha256_file(candidate) == sha256:
            return candidate
        if candidate.name.endswith(".gz") and _gunzipped_sha256(candidate) == sha256:
            return candidate
    return None


def _gunzipped_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, EOFError):
        return None
    return digest.hexdigest()


def _gunzip_to(source: Path, target: Path, sha256: str) -> Path:
    """``source`` decompressed into ``target`` (atomically, checked), unless already there."""
    if target.is_file() and sha256_file(target) == sha256:
        return target
    digest = hashlib.sha256()
    with gzip.open(source, "rb") as handle, atomic_writer(target, "wb") as out:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != sha256:
            raise FetchError(f"{source}: decompressed sha256 {digest.hexdigest()} != pinned {sha256}")
    return target


# -------------------------------------------------------------------------------------- loading
