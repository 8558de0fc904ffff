"""The scale bench's generated dataset: Tiny-ImageNet layout, conversions, labels, determinism.

A stand-in classifier replaces the model, so no TensorFlow and no workflow run is needed.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from conftest import REPO

from robustmap import classes
from robustmap.dataset import label_table, load_images
from robustmap.fetch import sha256_file

N = 40


def _load_generator():
    path = REPO / "bench" / "scale_dataset.py"
    spec = importlib.util.spec_from_file_location("scale_dataset", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    # Run as a script, the bench finds its siblings (bench/defaults.py) on sys.path[0].
    # Only while it loads: bench/statistics.py would shadow the standard library's.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


scale_dataset = _load_generator()


def stand_in_top1(images: np.ndarray) -> np.ndarray:
    """A few ImageNet classes chosen by mean brightness: deterministic, cheap, no model."""
    return (images.mean(axis=(1, 2, 3)) * 10).astype(np.int64) * 97 % classes.num_classes


def _jpegs(root):
    return {p.name: sha256_file(p) for p in sorted((root / "val" / "images").iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "tiny-imagenet-200"
    summary = scale_dataset.build(root, N, seed=0, top1=stand_in_top1)
    return root, summary


def test_layout_read_by_label_table(built):
    root, summary = built
    table = label_table(root)
    assert len(table) == N == summary.images
    assert table["image_id"].tolist() == [f"val_{i}" for i in range(N)]
    assert set(table["status"]) == {"ok", "converted"}
    converted = table[table["status"] == "converted"]
    assert set(converted["mode"]) == {"L", "CMYK"}
    assert summary.modes == table["mode"].value_counts().to_dict()
    assert set(converted["reason"]) == {"converted from L to RGB", "converted from CMYK to RGB"}
    assert (table["width"] == 64).all() and (table["height"] == 64).all()
    boxes = table[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(dtype=int)
    assert (boxes >= 0).all() and (boxes <= 63).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len({tuple(box) for box in boxes}) > 1  # boxes follow the object, not the whole view


def test_200_wnids_cover_every_label(built):
    root, summary = built
    wnids = (root / "wnids.txt").read_text().split()
    assert len(wnids) == len(set(wnids)) == 200 == summary.wnids
    assert wnids == sorted(wnids)
    assert all(classes.imagenet_index(w) is not None for w in wnids)
    assert set(label_table(root)["wnid"]) <= set(wnids)
    assert len((root / "words.txt").read_text().splitlines()) == 200


def test_own_labels_are_the_top1_of_the_decoded_views(built):
    root, summary = built
    table = label_table(root)
    top1 = stand_in_top1(load_images(table, root))
    own = table["imagenet_index"].to_numpy(dtype=int) == top1
    assert own.sum() == summary.own_label and summary.own_label + summary.other_label == N
    assert 0.5 * N <= summary.own_label <= 0.9 * N


def test_views_differ_and_are_deterministic(built, tmp_path):
    root, _ = built
    first = _jpegs(root)
    assert len(set(first.values())) == N  # no two views alike
    again = scale_dataset.build(tmp_path / "again", N, seed=0, top1=stand_in_top1)
    assert _jpegs(tmp_path / "again") == first and again == built[1]
    assert (tmp_path / "again" / "val" / "val_annotations.txt").read_bytes() == (
        root / "val" / "val_annotations.txt"
    ).read_bytes()
    scale_dataset.build(tmp_path / "fewer", N // 2, seed=0, top1=stand_in_top1)
    assert _jpegs(tmp_path / "fewer") == {
        f"val_{i}.JPEG": first[f"val_{i}.JPEG"] for i in range(N // 2)
    }
    scale_dataset.build(tmp_path / "other", N, seed=1, top1=stand_in_top1)
    assert not set(_jpegs(tmp_path / "other").values()) & set(first.values())


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        scale_dataset.build(tmp_path, 2, seed=0, top1=stand_in_top1)
