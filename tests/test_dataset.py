"""The label table on a Tiny-ImageNet fixture holding every bad case, and image decoding."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustmap import classes, tables
from robustmap.dataset import (
    READABLE_STATUSES,
    SCOREABLE_STATUSES,
    STATUSES,
    UnreadableImageError,
    label_table,
    load_images,
    read_image,
)

BATHTUB = "n02808440"
GOLDFISH = "n01443537"
ENTITY = "n00001740"  # a WordNet id that is not an ImageNet-1k class
RED = (200, 40, 90)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _jpeg(mode: str, colour, size=(16, 16)) -> bytes:
    return _encoded(Image.new(mode, size, colour), "JPEG", quality=95)


def _palette_png() -> bytes:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 30, 160, 220] + [0] * 762)
    return _encoded(image, "PNG")


def _rgba_png() -> bytes:
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[:, :8] = (10, 20, 30, 255)  # left half opaque, right half fully transparent black
    return _encoded(Image.fromarray(pixels, "RGBA"), "PNG")


def _gray16_png() -> bytes:
    pixels = np.zeros((16, 16), np.uint16)
    pixels[:, 8:] = 65535
    return _encoded(Image.fromarray(pixels), "PNG")


# file name -> bytes on disk; val_8 is annotated but absent
FILES = {
    "val_0.JPEG": _jpeg("RGB", RED),
    "val_1.JPEG": _jpeg("L", 128),
    "val_2.JPEG": _palette_png(),  # PNG bytes behind a .JPEG name
    "val_3.JPEG": _rgba_png(),
    "val_4.JPEG": _jpeg("CMYK", (0, 255, 255, 0)),
    "val_5.JPEG": _jpeg("RGB", RED, size=(64, 64))[:300],  # truncated
    "val_6.JPEG": b"",
    "val_7.JPEG": b"this is a text file, not a JPEG\n",
    "val_9.JPEG": _jpeg("RGB", (0, 0, 255), size=(24, 16)),  # no annotation, other size
    "val_10.JPEG": _jpeg("RGB", (0, 255, 0)),
    "val_11.JPEG": _jpeg("RGB", (255, 255, 255)),
    "val_12.JPEG": _jpeg("RGB", (0, 0, 0)),  # its only annotation line is malformed
    "val_13.JPEG": _gray16_png(),
    "val_14.JPEG": _encoded(Image.new("LA", (16, 16), (50, 255)), "PNG"),
}

ANNOTATION_LINES = [
    f"val_0.JPEG\t{BATHTUB}\t1\t2\t14\t15",
    f"val_1.JPEG\t{GOLDFISH}\t0\t0\t15\t15",
    f"val_2.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    f"val_3.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    f"val_4.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    f"val_5.JPEG\t{BATHTUB}\t0\t0\t63\t63",
    f"val_6.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    f"val_7.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    f"val_8.JPEG\t{GOLDFISH}\t0\t0\t15\t15",  # line 9: the file does not exist
    f"val_10.JPEG\t{ENTITY}\t0\t0\t15\t15",
    f"val_11.JPEG\t{BATHTUB}\t0\t0\t15\t15",  # line 11
    f"val_11.JPEG\t{GOLDFISH}\t3\t3\t12\t12",  # line 12: duplicate, conflicting label
    "val_12.JPEG\tn02808440\t0\t0",  # line 13: four fields
    f"val_13.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    f"val_14.JPEG\t{BATHTUB}\t0\t0\t15\t15",
    "a line with no tabs at all",  # line 16
    "",  # trailing blank line: skipped, carries nothing
]

EXPECTED_STATUS = {
    "ok": 2,  # val_0, val_11
    "converted": 6,  # val_1 (L), val_2 (P), val_3 (RGBA), val_4 (CMYK), val_13 (I;16), val_14 (LA)
    "unknown_wnid": 1,  # val_10
    "unannotated": 2,  # val_9, val_12
    "unreadable": 3,  # val_5 truncated, val_6 empty, val_7 text
    "missing_file": 1,  # val_8
    "duplicate": 1,  # second line for val_11
    "malformed": 2,  # lines 13 and 16
}


def _write_fixture(root):
    images = root / "val" / "images"
    images.mkdir(parents=True)
    for name, data in FILES.items():
        (images / name).write_bytes(data)
    (root / "val" / "val_annotations.txt").write_text("\n".join(ANNOTATION_LINES))
    (root / "wnids.txt").write_text(f"{BATHTUB}\n{GOLDFISH}\n{ENTITY}\n")
    (root / "words.txt").write_text(
        f"{ENTITY}\tentity\n{BATHTUB}\tbathtub, bathing tub, bath, tub\n{GOLDFISH}\tgoldfish\n"
    )
    return root


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return _write_fixture(tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200")


@pytest.fixture(scope="module")
def table(fixture_root):
    return label_table(fixture_root)


def _row(table, image_id, status=None):
    rows = table[table["image_id"] == image_id]
    if status is not None:
        rows = rows[rows["status"] == status]
    assert len(rows) == 1
    return rows.iloc[0]


def test_counts_by_status(table):
    counts = table["status"].value_counts().to_dict()
    assert counts == EXPECTED_STATUS
    assert set(counts) == set(STATUSES)


def test_accounting_identity_nothing_is_lost(table):
    n_files = len(FILES)
    nonblank_lines = [line for line in ANNOTATION_LINES if line.strip()]
    counts = table["status"].value_counts()
    assert (
        len(table) == n_files + counts["missing_file"] + counts["duplicate"] + counts["malformed"]
    )
    assert len(table) == 14 + 1 + 1 + 2
    assert table["annotation_line"].count() == len(nonblank_lines) == 16
    assert sorted(table["annotation_line"].dropna()) == list(range(1, 17))
    files_in_table = table.loc[~table["status"].isin(["missing_file", "duplicate", "malformed"])]
    assert sorted(files_in_table["path"]) == sorted(f"val/images/{name}" for name in FILES)


def test_rows_sorted_naturally(table):
    assert table["image_id"].tolist() == [
        "a line with no tabs at all",
        "val_0",
        "val_1",
        "val_2",
        "val_3",
        "val_4",
        "val_5",
        "val_6",
        "val_7",
        "val_8",
        "val_9",
        "val_10",
        "val_11",
        "val_11",
        "val_12",
        "val_12",
        "val_13",
        "val_14",
    ]


def test_status_of_every_case(table):
    expected = {
        "val_0": "ok",
        "val_1": "converted",
        "val_2": "converted",
        "val_3": "converted",
        "val_4": "converted",
        "val_5": "unreadable",
        "val_6": "unreadable",
        "val_7": "unreadable",
        "val_8": "missing_file",
        "val_9": "unannotated",
        "val_10": "unknown_wnid",
        "val_13": "converted",
        "val_14": "converted",
    }
    for image_id, status in expected.items():
        assert _row(table, image_id)["status"] == status, image_id
    assert _row(table, "val_11", "ok")["annotation_line"] == 11
    assert _row(table, "val_12", "unannotated")["path"] == "val/images/val_12.JPEG"


def test_reasons_explain_each_status(table):
    assert (table.loc[table["status"] == "ok", "reason"] == "").all()
    assert (table.loc[table["status"] != "ok", "reason"] != "").all()
    modes = {f"val_{i}": m for i, m in [(1, "L"), (2, "P"), (3, "RGBA"), (4, "CMYK")]}
    modes |= {"val_13": "I;16", "val_14": "LA"}
    for image_id, mode in modes.items():
        row = _row(table, image_id)
        assert row["mode"] == mode
        assert row["reason"].startswith(f"converted from {mode} ")
    assert _row(table, "val_2")["format"] == "PNG"
    assert _row(table, "val_6")["reason"] == "empty file (0 bytes)"
    assert "not a recognised image format" in _row(table, "val_7")["reason"]
    assert "truncated" in _row(table, "val_5")["reason"].lower()
    assert "line 9" in _row(table, "val_8")["reason"]
    duplicate = _row(table, "val_11", "duplicate")
    assert "conflicting wnid" in duplicate["reason"] and "line 11" in duplicate["reason"]
    assert (duplicate["wnid"], duplicate["annotation_line"], duplicate["bbox_x0"]) == (
        GOLDFISH,
        12,
        3,
    )
    malformed = table[table["status"] == "malformed"]
    assert sorted(malformed["annotation_line"]) == [13, 16]
    assert (
        "6 tab-separated fields (or 2 without a box), got 4"
        in (_row(table, "val_12", "malformed")["reason"])
    )


def _box_fixture(root, lines):
    images = root / "val" / "images"
    images.mkdir(parents=True)
    for k in range(len(lines)):
        (images / f"b_{k}.JPEG").write_bytes(_jpeg("RGB", RED, size=(20, 10)))
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"b_{k}.JPEG\t{BATHTUB}{box}\n" for k, box in enumerate(lines))
    )
    return label_table(root).set_index("image_id")


def test_every_box_is_validated_and_a_bad_box_keeps_its_image(tmp_path):
    table = _box_fixture(
        tmp_path,
        [
            "\t0\t0\t19\t9",  # the whole 20x10 frame: ok
            "\t5\t2\t4\t8",  # x0 > x1
            "\t0\t0\t20\t9",  # x1 = width: outside the frame
            "\t0\t-1\t3\t3",  # negative
            "\ta\t0\t3\t3",  # not an integer
            "",  # no box at all
        ],
    )
    assert table["status"].tolist() == ["ok"] * 6  # every image is still measured
    assert table["box_status"].tolist() == ["ok", "invalid", "invalid", "invalid"] + ["missing"] * 2
    assert table.loc["b_0", "box_reason"] == ""
    for image_id in ("b_1", "b_2", "b_3"):
        assert "is not inside the 20x10 image" in table.loc[image_id, "box_reason"]
    assert table.loc["b_1", ["bbox_x0", "bbox_x1"]].tolist() == [5, 4]  # kept for inspection
    assert (
        table.loc["b_4", "box_reason"]
        == "bounding box ['a', '0', '3', '3'] on line 5 is not four integers"
    )
    assert pd.isna(table.loc["b_4", "bbox_x0"])
    assert table.loc["b_5", "box_reason"] == "line 6 gives no bounding box"


def test_imagenet_labels_and_class_names(table):
    assert classes.imagenet_index(BATHTUB) == 435
    assert classes.wnid_of(435) == BATHTUB
    assert classes.class_name(435) == "bathtub"
    assert classes.imagenet_index(ENTITY) is None
    assert classes.num_classes == 1000
    bathtub = _row(table, "val_0")
    assert (bathtub["wnid"], bathtub["class_name"], bathtub["imagenet_index"]) == (
        BATHTUB,
        "bathtub",
        435,
    )
    assert (bathtub["bbox_x0"], bathtub["bbox_y0"], bathtub["bbox_x1"], bathtub["bbox_y1"]) == (
        1,
        2,
        14,
        15,
    )
    assert _row(table, "val_1")["imagenet_index"] == 1
    unknown = _row(table, "val_10")
    assert unknown["class_name"] == "entity"  # words.txt fallback
    assert pd.isna(unknown["imagenet_index"])
    assert str(table["imagenet_index"].dtype) == "Int64"


def test_table_does_not_depend_on_where_the_data_lives(fixture_root, table, tmp_path):
    moved = shutil.copytree(fixture_root, tmp_path / "elsewhere" / "copy")
    pd.testing.assert_frame_equal(label_table(moved), table)
    assert not table["path"].str.startswith("/").any()


def test_table_survives_parquet(table, tmp_path):
    tables.write_parquet(tmp_path / "labels.parquet", table)
    pd.testing.assert_frame_equal(tables.read_parquet(tmp_path / "labels.parquet"), table)


def test_read_image_known_pixels(fixture_root):
    images = fixture_root / "val" / "images"
    red = read_image(images / "val_0.JPEG")
    assert red.dtype == np.float32 and red.shape == (16, 16, 3)
    np.testing.assert_allclose(red[8, 8], np.array(RED) / 255, atol=3 / 255)
    gray = read_image(images / "val_1.JPEG")
    np.testing.assert_allclose(gray[8, 8], [128 / 255] * 3, atol=2 / 255)
    np.testing.assert_array_equal(
        read_image(images / "val_2.JPEG")[0, 0], np.float32([30, 160, 220]) / 255
    )
    rgba = read_image(images / "val_3.JPEG")
    np.testing.assert_array_equal(rgba[0, 0], np.float32([10, 20, 30]) / 255)
    np.testing.assert_array_equal(rgba[0, 15], [1.0, 1.0, 1.0])  # transparent -> white
    np.testing.assert_allclose(
        read_image(images / "val_4.JPEG")[8, 8], [1.0, 0.0, 0.0], atol=3 / 255
    )
    sixteen = read_image(images / "val_13.JPEG")
    np.testing.assert_array_equal(sixteen[0, [0, 15]], [[0.0] * 3, [1.0] * 3])
    with pytest.raises(UnreadableImageError, match="(?i)truncated"):
        read_image(images / "val_5.JPEG")


def test_load_images_order_shapes_and_sizes(fixture_root, table):
    readable = table[table["status"].isin(READABLE_STATUSES)]
    assert readable["image_id"].tolist() == [
        f"val_{i}" for i in (0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14)
    ]
    with pytest.raises(ValueError, match="differ in size.*16x24"):
        load_images(table, fixture_root)
    images = load_images(table, fixture_root, size=16)
    assert images.shape == (11, 16, 16, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_allclose(images[0, 8, 8], np.array(RED) / 255, atol=3 / 255)
    np.testing.assert_allclose(images[5, 8, 8], [0.0, 0.0, 1.0], atol=3 / 255)  # resized val_9
    np.testing.assert_array_equal(images[1], read_image(fixture_root / table.iloc[2]["path"]))
    scoreable = table[table["status"].isin(SCOREABLE_STATUSES)]
    assert load_images(scoreable, fixture_root).shape == (8, 16, 16, 3)
    assert load_images(table.iloc[:0], fixture_root, size=8).shape == (0, 8, 8, 3)


def test_not_a_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Tiny-ImageNet folder"):
        label_table(tmp_path)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_get_the_permissions_the_umask_allows(tmp_path, umask, mode):
    """Atomic writes stage in mkstemp files and mkdtemp folders (owner-only): every output must
    still get what open() and mkdir() would give it, or a shared results folder (or an extracted
    dataset) is unreadable to the user's group."""
    target = tmp_path / "t.json"
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("inner/x.txt", "x")
    program = (
        f"import os; os.umask({umask}); from robustmap import fetch, tables; "
        f"tables.write_json({str(target)!r}, {{}}); "
        f"tables.write_bytes({str(target)!r} + 'b', b''); "
        f"fetch.safe_extract_zip({str(archive)!r}, {str(tmp_path / 'out')!r})"
    )
    subprocess.run([sys.executable, "-c", program], check=True, cwd=tmp_path)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "t.jsonb").stat().st_mode) == mode
    folder_mode = mode | ((mode & 0o444) >> 2)  # x wherever r
    for folder in (tmp_path / "out", tmp_path / "out" / "inner"):
        assert stat.S_IMODE(folder.stat().st_mode) == folder_mode
    assert stat.S_IMODE((tmp_path / "out" / "inner" / "x.txt").stat().st_mode) == mode
