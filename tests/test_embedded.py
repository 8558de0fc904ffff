"""The embedded default dataset: real photos, Tiny-ImageNet layout, byte-identical rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

from robustmap import classes, embedded
from robustmap.dataset import label_table, load_images
from robustmap.fetch import sha256_file


def _digests(root):
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return embedded.build(tmp_path_factory.mktemp("first") / "tiny-imagenet-200")


@pytest.fixture(scope="module")
def photos():
    return embedded.photos()


def test_photos_are_full_size_rgb_with_imagenet_classes(photos):
    assert [p.name for p in photos] == [spec.name for spec in embedded.PHOTOS]
    for photo in photos:
        assert photo.pixels.dtype == np.uint8 and photo.pixels.ndim == 3
        assert photo.pixels.shape[2] == 3 and min(photo.pixels.shape[:2]) >= 256
        assert classes.wnid_of(photo.imagenet_index) == photo.wnid
    assert [p.name for p in photos if p.grayscale] == ["camera"]
    assert {p.name: p.imagenet_index for p in photos}["chelsea"] == 285  # Egyptian cat


def test_layout_and_label_table(built, photos):
    assert sorted(p.relative_to(built).as_posix() for p in built.iterdir()) == [
        "val",
        "wnids.txt",
        "words.txt",
    ]
    table = label_table(built)
    expected_views = sum(
        len(embedded.crop_boxes(p.pixels.shape[1], p.pixels.shape[0], spec.focus))
        for p, spec in zip(photos, embedded.PHOTOS, strict=True)
    )
    assert len(table) == expected_views
    assert 45 <= len(table) <= 55
    assert set(table["status"]) == {"ok", "converted"}
    converted = table[table["status"] == "converted"]
    assert len(converted) >= 1
    assert set(converted["mode"]) == {"L"} and set(converted["wnid"]) == {"n04485082"}  # camera
    assert (table["width"] == 64).all() and (table["height"] == 64).all()
    assert (table["box_status"] == "ok").all()  # every view keeps its object's human box
    chelsea_whole = table.iloc[0]  # the squashed whole photo: the cat's face, margins left out
    assert chelsea_whole[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].tolist() == [5, 0, 58, 63]
    rocket = table[table["wnid"] == "n03773504"]  # a thin missile: boxes far narrower than views
    assert ((rocket["bbox_x1"] - rocket["bbox_x0"]) < 32).all()
    for wnid, index in zip(table["wnid"], table["imagenet_index"], strict=True):
        assert index == classes.imagenet_index(wnid)
    assert set(table["wnid"]) == {spec.wnid for spec in embedded.PHOTOS}
    wnids = (built / "wnids.txt").read_text().split()
    assert wnids == sorted({spec.wnid for spec in embedded.PHOTOS})
    assert table["image_id"].tolist() == [f"val_{n}" for n in range(len(table))]
    images = load_images(table, built)
    assert images.shape == (len(table), 64, 64, 3) and images.dtype == np.float32
    camera = images[table["status"].to_numpy() == "converted"]
    np.testing.assert_array_equal(camera[..., 0], camera[..., 2])  # gray expanded to RGB


def test_build_is_byte_identical_and_rebuild_replaces(built, tmp_path):
    second = embedded.build(tmp_path / "second" / "tiny-imagenet-200")
    assert _digests(second) == _digests(built)
    (second / "val" / "images" / "stale.JPEG").write_bytes(b"left over")
    embedded.build(second)  # a previous build is replaced, stale files go
    assert _digests(second) == _digests(built)
    assert sorted(p.name for p in second.parent.iterdir()) == ["tiny-imagenet-200"]


def test_build_refuses_to_replace_an_unrelated_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        embedded.build(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]
