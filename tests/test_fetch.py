"""fetch() against a real HTTP server on 127.0.0.1, and safe_extract_zip() on hostile archives."""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import re
import stat
import zipfile
from pathlib import Path

import pytest
from loopback import LoopbackServer

from robustmap.fetch import (
    ChecksumError,
    MissingChecksumError,
    UnsafeArchiveError,
    fetch,
    read_lock,
    record,
    safe_extract_zip,
    sha256_file,
)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


PAYLOAD = _zip_bytes(
    {
        "tiny/wnids.txt": b"n02808440\n",
        "tiny/val/val_annotations.txt": b"val_0.JPEG\tn02808440\t0\t0\t63\t63\n",
        "tiny/val/images/val_0.JPEG": bytes(range(256)) * 40,
    }
)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with LoopbackServer({"/data/tiny.zip": PAYLOAD, "/mirror/tiny.zip": PAYLOAD}) as running:
        yield running


def test_good_checksum_downloads_once_then_serves_from_cache(server, tmp_path):
    cache = tmp_path / "cache"
    path = fetch(server.url("/data/tiny.zip"), sha256=PAYLOAD_SHA256, cache_dir=cache)
    assert path == cache / "tiny.zip"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.zip"]  # no .part left behind
    assert len(server.requests) == 1

    again = fetch(server.url("/data/tiny.zip"), sha256=PAYLOAD_SHA256.upper(), cache_dir=cache)
    assert again == path
    assert len(server.requests) == 1  # the cache hit made no request
    assert sha256_file(path) == PAYLOAD_SHA256


def test_bad_checksum_raises_clear_error_and_caches_nothing(server, tmp_path):
    cache = tmp_path / "cache"
    wrong = "0" * 64
    url = server.url("/data/tiny.zip")
    with pytest.raises(ChecksumError) as caught:
        fetch(url, sha256=wrong, cache_dir=cache)
    message = str(caught.value)
    assert wrong in message and PAYLOAD_SHA256 in message and url in message
    assert (caught.value.expected, caught.value.actual) == (wrong, PAYLOAD_SHA256)
    assert list(cache.iterdir()) == []


def test_partial_download_is_resumed_with_a_range_request(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny.zip.part").write_bytes(PAYLOAD[:1000])
    path = fetch(server.url("/data/tiny.zip"), sha256=PAYLOAD_SHA256, cache_dir=cache)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [
        {"path": "/data/tiny.zip", "range": "bytes=1000-", "sent": len(PAYLOAD) - 1000}
    ]
    assert not (cache / "tiny.zip.part").exists()


def test_server_ignoring_range_restarts_instead_of_appending(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny.zip.part").write_bytes(b"stale bytes from elsewhere")
    with LoopbackServer({"/tiny.zip": PAYLOAD}, honour_range=False) as plain:
        path = fetch(plain.url("/tiny.zip"), sha256=PAYLOAD_SHA256, cache_dir=cache)
        assert plain.requests[0]["range"] == "bytes=26-"
        assert plain.requests[0]["sent"] == len(PAYLOAD)
    assert path.read_bytes() == PAYLOAD


def test_corrupt_file_in_cache_is_replaced(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny.zip").write_bytes(b"not the archive")
    path = fetch(server.url("/data/tiny.zip"), sha256=PAYLOAD_SHA256, cache_dir=cache)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_mirror_replaces_scheme_host_and_directory(server, tmp_path):
    path = fetch(
        "http://cs231n.invalid/some/dir/tiny.zip",
        sha256=PAYLOAD_SHA256,
        cache_dir=tmp_path,
        filename="renamed.zip",
        mirror=server.url("/mirror/"),
    )
    assert [r["path"] for r in server.requests] == ["/mirror/tiny.zip"]
    assert path == tmp_path / "renamed.zip"
    assert path.read_bytes() == PAYLOAD


def test_fetched_archive_extracts_into_target(server, tmp_path):
    archive = fetch(server.url("/data/tiny.zip"), sha256=PAYLOAD_SHA256, cache_dir=tmp_path / "c")
    target = tmp_path / "extracted"
    files = safe_extract_zip(archive, target)
    assert [p.relative_to(target).as_posix() for p in files] == [
        "tiny/val/images/val_0.JPEG",
        "tiny/val/val_annotations.txt",
        "tiny/wnids.txt",
    ]
    assert (target / "tiny/wnids.txt").read_bytes() == b"n02808440\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "extracted"]  # no staging left


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("tiny/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("bad_name", "why"),
    [
        ("../evil.txt", "'..' component"),
        ("tiny/../../evil.txt", "'..' component"),
        ("/abs_evil.txt", "absolute path"),
        ("C:/evil.txt", "drive letter"),
        ("tiny\\..\\evil.txt", "backslash"),
    ],
)
def test_escaping_member_is_refused_and_nothing_is_written(tmp_path, bad_name, why):
    archive = tmp_path / "hostile.zip"
    archive.write_bytes(_zip_bytes({"tiny/ok.txt": b"fine", bad_name: b"evil"}))
    assert bad_name in zipfile.ZipFile(archive).namelist()  # the name really is stored as is
    sandbox = tmp_path / "sandbox"
    target = sandbox / "target"
    sandbox.mkdir()
    with pytest.raises(UnsafeArchiveError, match=re.escape(why)):
        safe_extract_zip(archive, target)
    assert list(sandbox.iterdir()) == []  # no target, no staging folder, nothing beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.zip", "sandbox"]


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    archive.write_bytes(_symlink_zip())
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract_zip(archive, tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.zip"]


def test_extraction_refuses_a_non_empty_target(tmp_path):
    archive = tmp_path / "ok.zip"
    archive.write_bytes(PAYLOAD)
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        safe_extract_zip(archive, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_invalid_sha256_is_rejected_before_any_request(server, tmp_path):
    with pytest.raises(ValueError, match="64 hex digits"):
        fetch(server.url("/data/tiny.zip"), sha256="abc", cache_dir=tmp_path)
    assert server.requests == []
    assert Path(tmp_path).exists() and list(tmp_path.iterdir()) == []


# --- Publisher checksums, the lock file, trust on first use -------------------------------------

PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_md5_verified_download_is_cached_and_its_sha256_locked(server, tmp_path):
    lock = tmp_path / "checksums.lock"
    path = fetch(server.url("/data/tiny.zip"), cache_dir=tmp_path / "c", md5=PAYLOAD_MD5, lock=lock)
    assert path.read_bytes() == PAYLOAD
    assert lock.read_text() == f"tiny.zip\t{PAYLOAD_SHA256}\n"
    assert read_lock(lock) == {"tiny.zip": PAYLOAD_SHA256}


def test_wrong_md5_is_refused_and_nothing_cached_or_locked(server, tmp_path):
    cache, lock = tmp_path / "c", tmp_path / "checksums.lock"
    with pytest.raises(ChecksumError, match="MD5 mismatch") as caught:
        fetch(server.url("/data/tiny.zip"), cache_dir=cache, md5="f" * 32, lock=lock)
    assert (caught.value.expected, caught.value.actual) == ("f" * 32, PAYLOAD_MD5)
    assert list(cache.iterdir()) == []
    assert not lock.exists()


def test_locked_name_refuses_other_bytes_even_with_the_cache_emptied(server, tmp_path):
    lock = tmp_path / "checksums.lock"
    fetch(server.url("/data/tiny.zip"), cache_dir=tmp_path / "c", md5=PAYLOAD_MD5, lock=lock)
    other = PAYLOAD + b"tampered"
    with LoopbackServer({"/data/tiny.zip": other}) as impostor:
        with pytest.raises(ChecksumError, match="SHA-256 mismatch") as caught:
            fetch(impostor.url("/data/tiny.zip"), cache_dir=tmp_path / "fresh", lock=lock)
        # the lock wins over a publisher MD5 that matches the impostor's bytes
        with pytest.raises(ChecksumError):
            fetch(
                impostor.url("/data/tiny.zip"),
                cache_dir=tmp_path / "fresh",
                md5=hashlib.md5(other).hexdigest(),
                lock=lock,
            )
    assert caught.value.expected == PAYLOAD_SHA256
    assert list((tmp_path / "fresh").iterdir()) == []
    assert read_lock(lock) == {"tiny.zip": PAYLOAD_SHA256}


def test_lock_entry_refuses_a_cached_file_with_other_bytes(server, tmp_path):
    cache, lock = tmp_path / "c", tmp_path / "checksums.lock"
    lock.write_text(f"tiny.zip\t{PAYLOAD_SHA256}\n")
    cache.mkdir()
    (cache / "tiny.zip").write_bytes(b"planted")
    assert fetch(server.url("/data/tiny.zip"), cache_dir=cache, lock=lock).read_bytes() == PAYLOAD
    assert len(server.requests) == 1  # the planted file was not taken for the download


def test_user_mirror_without_checksum_is_refused_naming_what_to_add(server, tmp_path):
    lock = tmp_path / "checksums.lock"
    with pytest.raises(MissingChecksumError) as caught:
        fetch(
            "https://publisher.invalid/tiny.zip",
            cache_dir=tmp_path / "c",
            mirror=server.url("/mirror"),
            lock=lock,
            trust_on_first_use=True,
        )
    assert str(caught.value) == (
        f"refusing to download tiny.zip from {server.url('/mirror/tiny.zip')} without a "
        f"checksum: give its sha256 or record it in {lock}; a mirror is never trusted on first use"
    )
    assert server.requests == [] and not (tmp_path / "c").exists() and not lock.exists()


def test_publisher_address_is_trusted_on_first_use_and_recorded(server, tmp_path, caplog):
    lock = tmp_path / "checksums.lock"
    url = server.url("/data/tiny.zip")
    with caplog.at_level(logging.WARNING, logger="robustmap.fetch"):
        fetch(url, cache_dir=tmp_path / "c", lock=lock, trust_on_first_use=True)
    assert caplog.messages == [
        f"trust on first use: {url} has no published checksum; "
        f"its SHA-256 {PAYLOAD_SHA256} is recorded in {lock}"
    ]
    assert read_lock(lock) == {"tiny.zip": PAYLOAD_SHA256}
    with pytest.raises(MissingChecksumError):  # without the caller's word: refused
        fetch(url, cache_dir=tmp_path / "d")


def test_lock_keeps_every_name_sorted(server, tmp_path):
    lock = tmp_path / "checksums.lock"
    record(lock, "zeta.h5", "b" * 64)
    record(lock, "alpha.zip", "a" * 64)
    record(lock, "zeta.h5", "c" * 64)
    assert lock.read_text() == f"alpha.zip\t{'a' * 64}\nzeta.h5\t{'c' * 64}\n"


def _record_one(args):
    lock, index = args
    record(lock, f"file{index}.h5", f"{index:064x}")


def test_lock_loses_no_entry_when_jobs_record_at_once(tmp_path):
    lock = tmp_path / "checksums.lock"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_record_one, [(lock, i) for i in range(32)])
    assert read_lock(lock) == {f"file{i}.h5": f"{i:064x}" for i in range(32)}
