"""Checksummed, cached, resumable downloads and zip extraction that cannot escape its target.

:func:`fetch` guarantees one thing: a path it returns holds exactly the bytes whose SHA-256 the
caller named. Bytes arrive in ``<cache_dir>/<name>.part``; an interrupted download leaves that
file behind and the next call resumes it with an HTTP ``Range`` request. Only a verified file is
renamed onto ``<cache_dir>/<name>`` (one ``os.replace``, atomic on POSIX), so a file at the final
name is always complete and correct. A checksum mismatch deletes the partial and caches nothing.

:func:`safe_extract_zip` checks every member name before it writes a single byte, then extracts
into a temporary folder beside the target and renames it into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_DRIVE_PATTERN = re.compile(r"^[A-Za-z]:")


class ChecksumError(RuntimeError):
    """Downloaded bytes do not have the expected SHA-256; nothing was cached."""

    def __init__(self, url: str, expected: str, actual: str):
        self.url = url
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"SHA-256 mismatch for {url}: expected {expected}, got {actual}; "
            "the download was deleted and nothing was cached"
        )


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction target; nothing was written."""


def sha256_file(path: str | os.PathLike) -> str:
    """Lower-case hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def source_url(url: str, *, mirror: str | None = None) -> str:
    """The address actually requested: ``url``, or ``mirror + "/" + basename(url)``."""
    if mirror is None:
        return url
    return f"{mirror.rstrip('/')}/{_basename(url)}"


def fetch(
    url: str,
    *,
    sha256: str,
    cache_dir: str | os.PathLike,
    filename: str | None = None,
    mirror: str | None = None,
) -> Path:
    """Return the path of a verified local copy of ``url``, downloading it only when needed.

    Args:
        url: where the file lives (``http``, ``https`` or ``file`` URL).
        sha256: the expected SHA-256, 64 hex digits (case-insensitive).
        cache_dir: folder holding finished downloads and ``.part`` files of unfinished ones.
        filename: name in ``cache_dir``; defaults to the last path segment of ``url``.
        mirror: when given, replaces the scheme, host and directory of ``url``: the file is
            requested from ``mirror + "/" + basename(url)`` and cached under the same name.

    Returns:
        ``cache_dir / filename``, whose SHA-256 equals ``sha256``.

    Raises:
        ChecksumError: the downloaded bytes have another hash. The partial is deleted.
        urllib.error.URLError: the server could not be reached or answered with an error. A
            partial download stays in ``cache_dir`` and the next call resumes it.
    """
    expected = sha256.strip().lower()
    if not _SHA256_PATTERN.fullmatch(expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    name = filename or _basename(url)
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"not a plain file name: {name!r}")

    cache = Path(cache_dir)
    final = cache / name
    if final.is_file() and sha256_file(final) == expected:
        return final

    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f"{name}.part"
    address = source_url(url, mirror=mirror)
    _download_into(address, part)

    actual = sha256_file(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise ChecksumError(address, expected, actual)
    os.replace(part, final)
    return final


def _basename(url: str) -> str:
    return PurePosixPath(urllib.parse.urlsplit(url).path).name


def _download_into(address: str, part: Path) -> None:
    """Complete ``part`` from ``address``, resuming from its current size when it exists.

    A server that ignores ``Range`` answers 200 with the whole body: the partial is then
    rewritten from byte 0, never appended to (which would corrupt it). A 416 answer means the
    partial already holds at least the whole file; the checksum decides whether it is right.
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(address)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if offset and error.code == 416:
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206 and _starts_at(response, offset)
        with open(part, "ab" if resumed else "wb") as sink:
            shutil.copyfileobj(response, sink, _CHUNK_BYTES)
            sink.flush()
            os.fsync(sink.fileno())


def _starts_at(response, offset: int) -> bool:
    """Whether a 206 answer's ``Content-Range`` begins exactly at ``offset``."""
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes\s+(\d+)-", content_range)
    return match is not None and int(match.group(1)) == offset


def safe_extract_zip(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Extract a zip into ``target`` after proving that no member can escape it.

    Every member is checked first; any absolute path, drive letter, ``..`` component, backslash
    path or symbolic link raises :class:`UnsafeArchiveError` naming all offenders, before anything
    is written. The members are then written into a fresh temporary folder beside ``target``
    (same filesystem) which is renamed onto ``target``; an interrupted extraction leaves no
    half-filled ``target``.

    Args:
        archive: the zip file.
        target: the folder to create; it must not exist or be an empty folder.

    Returns:
        The extracted regular files, as paths under ``target``, sorted.
    """
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"extraction target exists and is not an empty folder: {target}")
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        offenders = [f"{m.filename!r} ({why})" for m in members if (why := _unsafe_reason(m))]
        if offenders:
            raise UnsafeArchiveError(
                f"refusing to extract {archive}: unsafe members: {', '.join(offenders)}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            files = [_write_member(bundle, member, staging) for member in members]
            if target.exists():
                target.rmdir()
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return sorted(target / relative for relative in files if relative is not None)


def _unsafe_reason(member: zipfile.ZipInfo) -> str:
    """Why a member may not be extracted, or ``""`` when it is safe."""
    name = member.filename
    if not name or "\x00" in name:
        return "empty or NUL in name"
    if name.startswith("/"):
        return "absolute path"
    if "\\" in name:
        return "backslash in path"
    if _DRIVE_PATTERN.match(name):
        return "drive letter"
    if not PurePosixPath(name).parts:
        return "no path components"
    if ".." in PurePosixPath(name).parts:
        return "'..' component"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "symbolic link"
    return ""


def _write_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path) -> Path | None:
    """Write one checked member under ``root``; return its relative path (``None`` for folders)."""
    relative = Path(*PurePosixPath(member.filename).parts)
    destination = root / relative
    if member.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return None
    destination.parent.mkdir(parents=True, exist_ok=True)
    with bundle.open(member) as source, open(destination, "wb") as sink:
        shutil.copyfileobj(source, sink, _CHUNK_BYTES)
    return relative
