"""The Tiny-ImageNet validation layout, a label table that loses no image, and image decoding.

Layout under a dataset ``root`` (the official ``tiny-imagenet-200`` folder, or the embedded
default written by :mod:`robustmap.embedded`)::

    wnids.txt                   one WordNet id per line (optional here)
    words.txt                   "<wnid>\\t<names>" per line (optional; a class-name fallback)
    val/images/*.JPEG           the images
    val/val_annotations.txt     "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" per line

:func:`label_table` gives one row per image file and one row per annotation line that does not
describe a file on its own, each with a ``status`` and a human-readable ``reason``; see its
docstring for the statuses and the accounting identity. :func:`read_image` and
:func:`load_images` turn files into float32 RGB arrays in [0, 1].
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

from robustmap import classes

IMAGES_DIR = PurePosixPath("val/images")
ANNOTATIONS_FILE = PurePosixPath("val/val_annotations.txt")
WORDS_FILE = "words.txt"

STATUSES = (
    "ok",
    "converted",
    "unknown_wnid",
    "unannotated",
    "unreadable",
    "missing_file",
    "duplicate",
    "malformed",
)
"""Every status :func:`label_table` can give, in a fixed reporting order."""

READABLE_STATUSES = frozenset({"ok", "converted", "unknown_wnid", "unannotated"})
"""Rows whose file decodes to an RGB image; :func:`load_images` returns exactly these rows."""

SCOREABLE_STATUSES = frozenset({"ok", "converted"})
"""Readable rows that also carry an ImageNet-1k label, so a classifier can be scored on them."""

COLUMNS = (
    "image_id",
    "path",
    "wnid",
    "class_name",
    "imagenet_index",
    "status",
    "reason",
    "annotation_line",
    "file_bytes",
    "format",
    "mode",
    "width",
    "height",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
    "box_status",
    "box_reason",
)
_INT_COLUMNS = (
    "imagenet_index",
    "annotation_line",
    "file_bytes",
    "width",
    "height",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
)
_WNID_PATTERN = re.compile(r"n\d{8}")
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


class UnreadableImageError(ValueError):
    """A file is not a decodable image."""


# ----------------------------------------------------------------------------------------------
# Decoding


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB.

    Pixels are taken as stored: EXIF orientation and ICC profiles are deliberately ignored, so
    a file gives the same array on every machine. Non-RGB modes are converted: grayscale and
    palette images are expanded to three channels, CMYK goes through PIL's conversion, images
    with an alpha channel (RGBA, LA, palette with transparency) are composited over white, and
    16-bit integer images are scaled by 1/65535.

    Returns:
        float32 array [H, W, 3] with values in [0, 1].

    Raises:
        UnreadableImageError: empty file, not an image, truncated or corrupt data.
    """
    with _decoded(path) as image:
        return _rgb_array(image)


def load_images(
    table: pd.DataFrame,
    root: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode the readable rows of a label table, in table order.

    Args:
        table: a frame from :func:`label_table` (or a subset of its rows).
        root: the dataset root the table's relative ``path`` column refers to.
        size: when given, every image is resized to ``size x size`` (or ``(height, width)``) with
            PIL's bilinear filter on the float channels (which low-pass filters when shrinking).
            Images already of that size are left untouched. When ``None``, all images must
            already share one size.

    Returns:
        float32 array [N, H, W, 3] in [0, 1], N = number of rows with a status in
        :data:`READABLE_STATUSES`.

    Raises:
        ValueError: sizes differ and ``size`` is ``None``.
    """
    rows = table[table["status"].isin(READABLE_STATUSES)]
    target = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    images = [_resized(read_image(Path(root, path)), target) for path in rows["path"]]
    if not images:
        height, width = target or (0, 0)
        return np.zeros((0, height, width, 3), dtype=np.float32)
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        examples = {image.shape: path for image, path in zip(images, rows["path"], strict=True)}
        found = ", ".join(f"{h}x{w} (e.g. {examples[(h, w, c)]})" for h, w, c in shapes)
        raise ValueError(f"images differ in size: {found}; pass size= to resize them")
    return np.stack(images).astype(np.float32, copy=False)


def _resized(image: np.ndarray, target: tuple[int, int] | None) -> np.ndarray:
    if target is None or image.shape[:2] == target:
        return image
    height, width = target
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


@contextlib.contextmanager
def _decoded(path: str | os.PathLike) -> Iterator[Image.Image]:
    """Open, verify and fully decode an image; a truncated file always fails.

    ``verify()`` checks container integrity (e.g. PNG CRCs) and ``load()`` decodes every pixel,
    which catches truncated JPEGs. PIL's global ``LOAD_TRUNCATED_IMAGES`` switch, which another
    library may have turned on, is forced off meanwhile so truncation is never silently padded.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise UnreadableImageError("empty file (0 bytes)")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as probe:
            probe.verify()
        with Image.open(path) as image:
            image.load()
            yield image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, UnreadableImageError):
            raise
        raise UnreadableImageError(f"cannot decode: {_describe(error, path)}") from error
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _describe(error: BaseException, path: Path) -> str:
    """Error text without the absolute path, so reasons do not depend on where data lives."""
    if isinstance(error, UnidentifiedImageError):
        return "not a recognised image format"
    return f"{type(error).__name__}: {error}".replace(str(path), path.name)


def _rgb_array(image: Image.Image) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1] from a decoded PIL image of any mode."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.clip(np.asarray(image, dtype=np.float64) / 65535.0, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
    else:
        rgb = image.convert("RGB")
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _conversion_reason(image: Image.Image) -> str:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return f"converted from {mode} (16-bit gray, scaled by 1/65535) to RGB"
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return f"converted from {mode} to RGB (alpha composited over white)"
    return f"converted from {mode} to RGB"


# ----------------------------------------------------------------------------------------------
# Annotations


@dataclass(frozen=True)
class _Annotation:
    line: int  # 1-based line number in val_annotations.txt
    file: str
    wnid: str
    bbox: tuple[int, int, int, int] | None  # None: no box, or one that is not four integers
    box_problem: str = ""  # why ``bbox`` is None


@dataclass(frozen=True)
class _MalformedLine:
    line: int
    text: str
    problem: str


def _parse_annotations(path: Path) -> tuple[list[_Annotation], list[_MalformedLine]]:
    """Parse every non-blank line; lines that do not fit the format are returned, not dropped."""
    if not path.is_file():
        return [], []
    annotations, malformed = [], []
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n")):
        text = raw.rstrip("\r")
        if not text.strip():
            continue  # blank lines (e.g. a trailing newline) carry no annotation
        parsed = _parse_line(number + 1, text)
        (annotations if isinstance(parsed, _Annotation) else malformed).append(parsed)
    return annotations, malformed


def _parse_line(number: int, text: str) -> _Annotation | _MalformedLine:
    """One annotation line: ``file, wnid`` and, normally, the box ``x0, y0, x1, y1``.

    A line without a box (two fields) or with a box that is not four integers still labels its
    image: only the box is missing, and the reason travels with the annotation.
    """
    fields = text.split("\t")
    if len(fields) not in (2, 6):
        return _MalformedLine(
            number, text, f"expected 6 tab-separated fields (or 2 without a box), got {len(fields)}"
        )
    file, wnid, *box = (field.strip() for field in fields)
    if not file or "/" in file or "\\" in file or file in {".", ".."}:
        return _MalformedLine(number, text, f"file field {file!r} is not a plain file name")
    if not _WNID_PATTERN.fullmatch(wnid):
        return _MalformedLine(number, text, f"wnid field {wnid!r} is not a WordNet id")
    if not box:
        return _Annotation(number, file, wnid, None, f"line {number} gives no bounding box")
    if not all(re.fullmatch(r"-?\d+", value) for value in box):
        problem = f"bounding box {box} on line {number} is not four integers"
        return _Annotation(number, file, wnid, None, problem)
    x0, y0, x1, y1 = (int(value) for value in box)
    return _Annotation(number, file, wnid, (x0, y0, x1, y1))


def box_problem(bbox: tuple[int, int, int, int] | None, width: int, height: int) -> str:
    """Why an inclusive ``(x0, y0, x1, y1)`` box (x = column) does not fit a width x height
    image; empty when it does."""
    if bbox is None:
        return "no bounding box"
    x0, y0, x1, y1 = bbox
    if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
        return (
            f"bounding box ({x0}, {y0}, {x1}, {y1}) is not inside the {width}x{height} image "
            "with x0 <= x1 and y0 <= y1"
        )
    return ""


def _read_words(root: Path) -> dict[str, str]:
    """wnid -> names from ``words.txt`` (empty when the file is absent)."""
    path = root / WORDS_FILE
    if not path.is_file():
        return {}
    words = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        wnid, _, names = line.partition("\t")
        if wnid.strip() and names.strip():
            words.setdefault(wnid.strip(), names.strip())
    return words


# ----------------------------------------------------------------------------------------------
# The label table


def label_table(root: str | os.PathLike) -> pd.DataFrame:
    """Account for every image file and every annotation line of a Tiny-ImageNet-style folder.

    Rows:
        * one per regular file under ``val/images`` (any name, any content), labelled by the
          first annotation line naming it;
        * one per annotation line naming a file that does not exist (``missing_file``);
        * one per further annotation line naming a file already named above (``duplicate``):
          the file's own row keeps the first line's label, the duplicate row records the
          other line's wnid and box and says whether the two labels agree;
        * one per line of ``val_annotations.txt`` that cannot be parsed (``malformed``).
        Blank annotation lines carry nothing and are skipped.

    Accounting identity (nothing is lost)::

        len(table) == n_files + n_missing_file + n_duplicate + n_malformed
        table["annotation_line"].count() == n_nonblank_annotation_lines

    Statuses of file rows, first match wins: ``unreadable`` (empty, not an image, truncated),
    ``unannotated`` (no parseable annotation line), ``unknown_wnid`` (wnid not in ImageNet-1k),
    ``converted`` (stored in a mode other than RGB; ``reason`` names the mode), ``ok``.
    ``reason`` is empty exactly for ``ok`` rows.

    Columns: ``image_id`` (file stem), ``path`` (POSIX, relative to ``root``; empty for malformed
    lines), ``wnid``, ``class_name`` (ImageNet clean name, else the ``words.txt`` entry),
    ``imagenet_index`` (Int64, <NA> outside ImageNet-1k), ``status``, ``reason``,
    ``annotation_line`` (1-based line in ``val_annotations.txt``, <NA> for unannotated files),
    ``file_bytes``, ``format`` (as decoded, e.g. ``PNG`` for PNG bytes in a ``.JPEG`` file),
    ``mode`` (original PIL mode), ``width``, ``height``, ``bbox_x0..bbox_y1`` (Int64, inclusive
    pixel coordinates, x = column), ``box_status`` and ``box_reason``: ``ok`` (four integers
    with 0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height), ``invalid`` (integers that break
    that rule; kept in the bbox columns to be inspected), ``missing`` (no box, or one that is not
    four integers: bbox columns <NA>), ``unchecked`` (no decoded image to check against). A box
    problem never changes an image's ``status``: the image is measured by everything that needs
    no box. Missing text is ``""``, missing integers are <NA>.

    Rows are sorted by ``image_id`` in natural order (``val_2`` before ``val_10``), then by
    annotation line, so the table does not depend on directory listing order or on ``root``.
    """
    root = Path(root)
    images_dir = root / IMAGES_DIR
    annotations_path = root / ANNOTATIONS_FILE
    if not images_dir.is_dir() and not annotations_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a Tiny-ImageNet folder: neither {IMAGES_DIR} nor "
            f"{ANNOTATIONS_FILE} exists there"
        )
    annotations, malformed = _parse_annotations(annotations_path)
    words = _read_words(root)
    files = _image_files(images_dir)

    first_line: dict[str, _Annotation] = {}
    for annotation in annotations:
        first_line.setdefault(annotation.file, annotation)

    rows = [_file_row(root, name, first_line.get(name), words) for name in files]
    for annotation in annotations:
        primary = first_line[annotation.file]
        if annotation is not primary:
            rows.append(_duplicate_row(annotation, primary, words))
        elif annotation.file not in files:
            rows.append(_missing_row(annotation, words))
    rows.extend(_malformed_row(line) for line in malformed)
    return _frame(rows)


def _image_files(images_dir: Path) -> list[str]:
    """Names of all regular files under ``images_dir``, relative POSIX, nested ones included."""
    if not images_dir.is_dir():
        return []
    return sorted(
        p.relative_to(images_dir).as_posix() for p in images_dir.rglob("*") if p.is_file()
    )


def _label_columns(wnid: str, words: dict[str, str]) -> dict:
    index = classes.imagenet_index(wnid) if wnid else None
    name = classes.class_name(index) if index is not None else words.get(wnid, "")
    return {"wnid": wnid, "class_name": name, "imagenet_index": index}


def _annotation_columns(annotation: _Annotation, words: dict[str, str]) -> dict:
    x0, y0, x1, y1 = annotation.bbox or (None,) * 4
    return {
        **_label_columns(annotation.wnid, words),
        "annotation_line": annotation.line,
        "bbox_x0": x0,
        "bbox_y0": y0,
        "bbox_x1": x1,
        "bbox_y1": y1,
        "box_status": "unchecked",
        "box_reason": annotation.box_problem or "no decoded image to check the box against",
    }


def _box_columns(annotation: _Annotation | None, width: int, height: int) -> dict:
    """``box_status`` (ok, missing, invalid) and ``box_reason`` of a decoded image's box."""
    if annotation is None:
        return {"box_status": "missing", "box_reason": "no annotation line"}
    if annotation.bbox is None:
        return {"box_status": "missing", "box_reason": annotation.box_problem}
    problem = box_problem(annotation.bbox, width, height)
    return {"box_status": "invalid" if problem else "ok", "box_reason": problem}


def _file_row(root: Path, name: str, annotation: _Annotation | None, words: dict) -> dict:
    relative = IMAGES_DIR / name
    path = root / relative
    row = {"image_id": PurePosixPath(name).stem, "path": relative.as_posix()}
    row["file_bytes"] = path.stat().st_size
    row.update(_annotation_columns(annotation, words) if annotation else _label_columns("", words))
    problems = []
    try:
        with _decoded(path) as image:
            row.update(format=image.format or "", mode=image.mode, width=image.width)
            row["height"] = image.height
            row.update(_box_columns(annotation, image.width, image.height))
            _rgb_array(image)  # a mode PIL cannot convert makes the file unreadable here
            conversion = "" if image.mode == "RGB" else _conversion_reason(image)
    except UnreadableImageError as error:
        return {**row, "status": "unreadable", "reason": str(error)}
    if annotation is None:
        problems.append(("unannotated", f"no annotation line names {name}"))
    elif row["imagenet_index"] is None:
        problems.append(("unknown_wnid", f"wnid {annotation.wnid} is not an ImageNet-1k class"))
    if conversion:
        problems.append(("converted", conversion))
    status = problems[0][0] if problems else "ok"
    return {**row, "status": status, "reason": "; ".join(text for _, text in problems)}


def _missing_row(annotation: _Annotation, words: dict) -> dict:
    relative = (IMAGES_DIR / annotation.file).as_posix()
    return {
        "image_id": PurePosixPath(annotation.file).stem,
        "path": relative,
        **_annotation_columns(annotation, words),
        "status": "missing_file",
        "reason": f"annotation line {annotation.line} names {relative}, which does not exist",
    }


def _duplicate_row(annotation: _Annotation, primary: _Annotation, words: dict) -> dict:
    agreement = "same wnid" if annotation.wnid == primary.wnid else "conflicting wnid"
    return {
        "image_id": PurePosixPath(annotation.file).stem,
        "path": (IMAGES_DIR / annotation.file).as_posix(),
        **_annotation_columns(annotation, words),
        "status": "duplicate",
        "reason": (
            f"annotation line {annotation.line} repeats {annotation.file}, first labelled at line "
            f"{primary.line} as {primary.wnid}; {agreement} ({annotation.wnid}), first line kept"
        ),
    }


def _malformed_row(line: _MalformedLine) -> dict:
    first_field = line.text.split("\t", 1)[0].strip()
    return {
        "image_id": PurePosixPath(first_field).stem if first_field else "",
        "path": "",
        **_label_columns("", {}),
        "annotation_line": line.line,
        "status": "malformed",
        "reason": f"annotation line {line.line}: {line.problem}: {line.text!r}",
    }


def _natural_key(text: str) -> tuple:
    """Sort key putting ``val_2`` before ``val_10``: digit runs compare as numbers."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    )


def _frame(rows: list[dict]) -> pd.DataFrame:
    def order(row: dict) -> tuple:
        line = row.get("annotation_line")
        return (_natural_key(row["image_id"]), -1 if line is None else line, row["path"])

    ordered = sorted(rows, key=order)
    frame = pd.DataFrame.from_records(ordered, columns=list(COLUMNS))
    for column in _INT_COLUMNS:
        frame[column] = pd.array(
            [None if pd.isna(v) else int(v) for v in frame[column]], dtype="Int64"
        )
    for column in set(COLUMNS) - set(_INT_COLUMNS):
        frame[column] = frame[column].fillna("").astype(str)
    no_box = frame["box_status"] == ""
    frame.loc[no_box, "box_status"] = "missing"
    frame.loc[no_box, "box_reason"] = "no parseable annotation line"
    return frame
