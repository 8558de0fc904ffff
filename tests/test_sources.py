"""Every dataset source ends as the same Tiny-ImageNet tree with the same manifest."""

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from loopback import LoopbackServer

from robustmap import dataset, embedded, fetch, sources

SOURCE_DEFAULTS = {"path": None, "url": None, "mirror": None, "sha256": None}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return embedded.build(tmp_path_factory.mktemp("built") / "tiny-imagenet-200")


def zipped(tree: Path) -> bytes:
    """The tree as the official archive lays it out: one top-level tiny-imagenet-200/ folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            name = f"tiny-imagenet-200/{path.relative_to(tree).as_posix()}"
            archive.writestr(
                zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), path.read_bytes()
            )
    return buffer.getvalue()


def materialise(tmp_path: Path, **source) -> tuple[Path, dict]:
    manifest_path = tmp_path / "manifest.json"
    root = sources.materialise(
        {**SOURCE_DEFAULTS, **source}, workdir=tmp_path / "data", manifest_path=manifest_path
    )
    assert sources.root_of(manifest_path) == root
    return root, json.loads(manifest_path.read_text())


def test_folder_source_records_every_file_with_its_hash(tree, tmp_path):
    root, manifest = materialise(tmp_path, source="folder", path=str(tree.parent))
    assert root == tree and manifest["source"] == "folder"
    images = sorted((tree / "val" / "images").iterdir())
    assert len(manifest["files"]) == len(images) + 3  # wnids, words, annotations
    first = images[0]
    size, digest = manifest["files"][first.relative_to(tree).as_posix()]
    assert size == first.stat().st_size and digest == fetch.sha256_file(first)


def test_zip_and_url_sources_give_the_folder_sources_files(tree, tmp_path):
    archive_bytes = zipped(tree)
    archive = tmp_path / "tiny-imagenet-200.zip"
    archive.write_bytes(archive_bytes)
    _, from_folder = materialise(tmp_path / "folder", source="folder", path=str(tree))
    zip_root, from_zip = materialise(tmp_path / "zip", source="zip", path=str(archive))
    with LoopbackServer({"/tiny-imagenet-200.zip": archive_bytes}) as server:
        url_root, from_url = materialise(
            tmp_path / "url",
            source="url",
            url=server.url("/tiny-imagenet-200.zip"),
            sha256=hashlib.sha256(archive_bytes).hexdigest(),
        )
    assert from_zip["files"] == from_url["files"] == from_folder["files"]
    assert len(dataset.label_table(zip_root)) == len(dataset.label_table(url_root)) == 47


def test_url_source_with_wrong_checksum_extracts_nothing(tree, tmp_path):
    with LoopbackServer({"/tiny-imagenet-200.zip": zipped(tree)}) as server:
        with pytest.raises(fetch.ChecksumError):
            materialise(
                tmp_path, source="url", url=server.url("/tiny-imagenet-200.zip"), sha256="0" * 64
            )
    assert not (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "data" / "extracted").exists()


def test_folder_without_the_layout_is_a_clear_error(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(FileNotFoundError, match="wnids.txt"):
        materialise(tmp_path, source="folder", path=str(tmp_path / "photos"))


def test_embedded_source_is_built_in_the_workdir(tmp_path):
    root, manifest = materialise(tmp_path, source="embedded")
    assert root == tmp_path / "data" / "embedded" / "tiny-imagenet-200"
    assert manifest["source"] == "embedded" and len(manifest["files"]) == 47 + 3
