"""Checksummed, cached, resumable downloads and zip extraction that cannot escape its target.

:func:`fetch` guarantees one thing: a path it returns holds bytes that passed every check there
is: the caller's SHA-256, the lock file's entry for the name, a publisher's MD5, or (only for a
publisher's own address without any of these, "trust on first use") none, with a warning; the
verified SHA-256 is then recorded in the lock, so every later fetch, on any machine the lock is
copied to, gets exactly those bytes.

Bytes arrive in ``<cache_dir>/<name>.part``; an interrupted download leaves that file behind and
the next call resumes it with an HTTP ``Range`` request. Only a verified file is renamed onto
``<cache_dir>/<name>`` (one ``os.replace``, atomic on POSIX), so a file at the final name is
always complete and correct. A checksum mismatch deletes the partial and caches nothing.

:func:`safe_extract_zip` checks every member name before it writes a single byte, then extracts
into a temporary folder beside the target and renames it into place.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from robustmap.tables import staging_folder

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
LOG = logging.getLogger(__name__)
_DRIVE_PATTERN = re.compile(r"^[A-Za-z]:")


class ChecksumError(RuntimeError):
    """Bytes do not have the expected SHA-256 or MD5; a download was deleted, nothing cached."""

    def __init__(self, url: str, expected: str, actual: str, *, kind: str = "SHA-256"):
        self.url = url
        self.expected = expected
        self.actual = actual
        self.kind = kind
        super().__init__(
            f"{kind} mismatch for {url}: expected {expected}, got {actual}; "
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
    cache_dir: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    filename: str | None = None,
    mirror: str | None = None,
    lock: str | os.PathLike | None = None,
    trust_on_first_use: bool = False,
) -> Path:
    """Return the path of a verified local copy of ``url``, downloading it only when needed.

    The bytes are checked against the first of: ``sha256`` (the caller's own, which always
    wins); the ``lock`` entry of the file name (a download verified earlier, here or on any
    machine the lock file was copied to); ``md5`` (a publisher's checksum); or, only when
    ``trust_on_first_use`` and no ``mirror``, nothing: the first download from the publisher's
    own address is trusted and a warning says so. Every verified file's SHA-256 is recorded in
    ``lock``, overwriting an entry only when the caller's ``sha256`` differs from it.

    Args:
        url: where the file lives (``http``, ``https`` or ``file`` URL).
        cache_dir: folder holding finished downloads and ``.part`` files of unfinished ones.
        sha256: the expected SHA-256, 64 hex digits (case-insensitive).
        md5: the expected MD5, 32 hex digits (case-insensitive), as publishers give it.
        filename: name in ``cache_dir`` and in the lock; default: the last path segment of ``url``.
        mirror: when given, replaces the scheme, host and directory of ``url``: the file is
            requested from ``mirror + "/" + basename(url)`` and cached under the same name.
        lock: a text file of ``name<TAB>sha256`` lines (see :func:`read_lock`); created if absent.
        trust_on_first_use: the caller vouches that ``url`` is the publisher's own address.

    Returns:
        ``cache_dir / filename``, whose bytes passed every check.

    Raises:
        ChecksumError: the bytes have another hash than expected. A download is deleted; nothing
            is cached and nothing is recorded.
        MissingChecksumError: nothing to verify against and first use may not be trusted.
        urllib.error.URLError: the server could not be reached or answered with an error. A
            partial download stays in ``cache_dir`` and the next call resumes it.
    """
    name = filename or _basename(url)
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"not a plain file name: {name!r}")
    expected = _expected_sha256(name, sha256, lock)
    md5 = _checked_hex(md5, 32, "md5") if md5 and expected is None else None
    address = source_url(url, mirror=mirror)
    if expected is None and md5 is None and (mirror is not None or not trust_on_first_use):
        raise MissingChecksumError(
            f"refusing to download {name} from {address} without a checksum: give its sha256"
            f"{' or record it in ' + os.fspath(lock) if lock else ''}"
            f"{'; a mirror is never trusted on first use' if mirror else ''}"
        )

    cache = Path(cache_dir)
    final = cache / name
    if not (final.is_file() and _matches(final, expected, md5)):
        cache.mkdir(parents=True, exist_ok=True)
        part = cache / f"{name}.part"
        _download_into(address, part)
        _verify_or_delete(part, address, expected, md5)
        os.replace(part, final)
    if expected is None and md5 is None:
        LOG.warning(
            "trust on first use: %s has no published checksum; its SHA-256 %s is recorded%s",
            address,
            sha256_file(final),
            f" in {os.fspath(lock)}" if lock else " nowhere (no lock file given)",
        )
    if lock is not None:
        record(lock, name, sha256_file(final))
    return final


class MissingChecksumError(ValueError):
    """A download was requested without anything to verify it against; nothing was fetched."""


def read_lock(path: str | os.PathLike) -> dict[str, str]:
    """The entries of a lock file (``name<TAB>sha256`` per line); empty if it does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, digest = line.partition("\t")
        if not _SHA256_PATTERN.fullmatch(digest.strip().lower()):
            raise ValueError(f"{path}:{number}: expected 'name<TAB>sha256', got {line!r}")
        entries[name.strip()] = digest.strip().lower()
    return entries


def record(lock: str | os.PathLike, name: str, sha256: str) -> None:
    """Set ``name``'s entry of the lock file, rewriting it sorted and atomically.

    Jobs running side by side may record different files at once: an exclusive ``flock`` on a
    guard file beside the lock serialises the read-modify-write so that no entry is lost.
    """
    lock = Path(lock)
    if read_lock(lock).get(name) == sha256:
        return  # the common case (every job loading a locked model): no guard file, no write
    lock.parent.mkdir(parents=True, exist_ok=True)
    guard_path = lock.with_name(f".{lock.name}.guard")
    with open(guard_path, "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        entries = read_lock(lock)
        if entries.get(name) == sha256:
            return
        entries[name] = sha256
        text = "".join(f"{key}\t{entries[key]}\n" for key in sorted(entries))
        staging = lock.with_name(f".{lock.name}.{os.getpid()}.tmp")
        staging.write_text(text)
        os.replace(staging, lock)


def _expected_sha256(name: str, sha256: str | None, lock: str | os.PathLike | None) -> str | None:
    if sha256:
        return _checked_hex(sha256, 64, "sha256")
    return read_lock(lock).get(name) if lock is not None else None


def _checked_hex(value: str, digits: int, what: str) -> str:
    digest = value.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{digits}}}", digest):
        raise ValueError(f"{what} must be {digits} hex digits, got {value!r}")
    return digest


def _digests(path: Path) -> tuple[str, str]:
    """SHA-256 and MD5 of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _mismatch(path: Path, sha256: str | None, md5: str | None) -> tuple[str, str, str] | None:
    """(kind, expected, actual) of the first failed check, or None when every check passes."""
    actual_sha, actual_md5 = _digests(path)
    if sha256 is not None and actual_sha != sha256:
        return "SHA-256", sha256, actual_sha
    if md5 is not None and actual_md5 != md5:
        return "MD5", md5, actual_md5
    return None


def _matches(path: Path, sha256: str | None, md5: str | None) -> bool:
    """A cached file is reused only when it passes every check there is (any, if none)."""
    return _mismatch(path, sha256, md5) is None


def _verify_or_delete(part: Path, address: str, sha256: str | None, md5: str | None) -> None:
    failed = _mismatch(part, sha256, md5)
    if failed is not None:
        part.unlink(missing_ok=True)
        kind, expected, actual = failed
        raise ChecksumError(address, expected, actual, kind=kind)


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
        staging = staging_folder(target)
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
