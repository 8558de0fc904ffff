"""Where the images come from: the embedded default, a folder, a local zip or a checksummed URL.

Each source ends as a folder in Tiny-ImageNet layout (``wnids.txt``, ``val/images``,
``val/val_annotations.txt``). The manifest written by :func:`materialise` records that folder and
the size and SHA-256 of every file in it, so a changed dataset changes the manifest and Snakemake
reruns what depends on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustmap import catalog, embedded, fetch, tables

LAYOUT_MARKER = "wnids.txt"


def materialise(
    source: dict[str, Any],
    *,
    workdir: str | Path,
    manifest_path: str | Path,
    lock: str | Path | None = None,
) -> Path:
    """Make the configured dataset available on disk and write its manifest.

    Args:
        source: the ``dataset`` section of the config (``source`` plus its options).
        workdir: folder for built, downloaded and extracted data.
        manifest_path: where the manifest JSON goes.
        lock: the lock file of verified downloads (see :func:`robustmap.fetch.fetch`).
    Returns:
        The dataset root (the folder holding ``wnids.txt``).
    """
    workdir = Path(workdir)
    kind = source["source"]
    if kind == "embedded":
        root = embedded.build(workdir / "embedded" / "tiny-imagenet-200")
    elif kind == "folder":
        root = find_root(Path(source["path"]))
    elif kind == "zip":
        root = _extracted(Path(source["path"]), workdir)
    elif kind == "url":
        archive = fetch.fetch(
            source["url"],
            cache_dir=workdir / "downloads",
            sha256=source.get("sha256"),
            md5=source.get("md5") or publisher_md5(source["url"]),
            mirror=source.get("mirror"),
            lock=lock,
        )
        root = _extracted(archive, workdir)
    else:
        raise ValueError(f"dataset.source must be embedded, folder, zip or url, not {kind!r}")
    tables.write_json(manifest_path, manifest(root, kind=kind))
    return root


def publisher_md5(url: str) -> str | None:
    """The MD5 the publisher gives for ``url`` (the official Tiny-ImageNet zip), else None.

    The checksum belongs to the file, so it also verifies a mirror's copy of that file.
    """
    return catalog.TINY_IMAGENET_MD5 if url == catalog.TINY_IMAGENET_URL else None


def _extracted(archive: Path, workdir: Path) -> Path:
    if not archive.is_file():
        raise FileNotFoundError(f"dataset archive not found: {archive}")
    target = workdir / "extracted" / archive.stem
    if not target.exists():
        fetch.safe_extract_zip(archive, target)
    return find_root(target)


def find_root(folder: Path) -> Path:
    """The folder under ``folder`` (itself included) holding ``wnids.txt``; clear error if none."""
    if (folder / LAYOUT_MARKER).is_file():
        return folder
    candidates = sorted(p.parent for p in folder.rglob(LAYOUT_MARKER))
    if not candidates:
        raise FileNotFoundError(
            f"no {LAYOUT_MARKER} under {folder}: not a Tiny-ImageNet layout "
            "(expected wnids.txt, words.txt, val/images/, val/val_annotations.txt)"
        )
    return candidates[0]


def manifest(root: Path, *, kind: str) -> dict[str, Any]:
    """Root, source kind, and (size, SHA-256) of every file under the validation split."""
    candidates = [root / "wnids.txt", root / "words.txt", *(root / "val").rglob("*")]
    files = sorted(path for path in candidates if path.is_file())
    return {
        "root": str(root),
        "source": kind,
        "files": {
            p.relative_to(root).as_posix(): [p.stat().st_size, fetch.sha256_file(p)] for p in files
        },
    }


def root_of(manifest_path: str | Path) -> Path:
    """The dataset root recorded in a manifest."""
    return Path(json.loads(Path(manifest_path).read_text())["root"])
