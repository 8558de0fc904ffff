"""The embedded default dataset: real photos from installed wheels, in Tiny-ImageNet layout.

The photos ship inside scikit-image, matplotlib and scikit-learn, so the default workflow runs
offline. Their ImageNet-1k classes are a human reading of each photo; :data:`PHOTOS` is the one
place that says which photo is which class (and where its object sits), so swapping a class is a
one-line change.

Each photo gives several 64x64 views: the whole photo squashed to a square, its centre square,
and squares of shrinking side centred on the object. The views are resized with a Lanczos
filter and written as baseline JPEGs of fixed quality, so a build is byte-identical on a given
Pillow/libjpeg build. The ``camera`` photo is grayscale and is written as a grayscale JPEG so
the label table's RGB conversion is exercised by the default run.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from robustmap import classes
from robustmap.tables import staging_folder


@dataclass(frozen=True)
class PhotoSpec:
    """One source photo: where it comes from, its class, and the centre of its object.

    ``source`` is ``"<package>:<name>"``; ``focus`` is the object's centre as fractions of
    (width, height), the centre of the zoomed views; ``box`` is the human bounding box of the
    object, (x0, y0, x1, y1) as fractions of (width, height), read off the photo by eye.
    """

    name: str
    source: str
    wnid: str
    focus: tuple[float, float]
    box: tuple[float, float, float, float]


PHOTOS: tuple[PhotoSpec, ...] = (
    # Egyptian cat: the face fills the frame
    PhotoSpec("chelsea", "skimage:chelsea", "n02124075", (0.50, 0.45), (0.08, 0.0, 0.92, 1.0)),
    # espresso: the cup of coffee, saucer left out
    PhotoSpec("coffee", "skimage:coffee", "n07920052", (0.47, 0.40), (0.28, 0.0, 0.72, 0.52)),
    # missile: the central rocket on its pad
    PhotoSpec("rocket", "skimage:rocket", "n03773504", (0.50, 0.55), (0.46, 0.30, 0.55, 0.97)),
    # moped: the whole motorcycle
    PhotoSpec(
        "motorcycle",
        "skimage:stereo_motorcycle",
        "n03785016",
        (0.45, 0.62),
        (0.12, 0.18, 0.97, 0.90),
    ),
    # tripod (grayscale): the tripod, not the cameraman
    PhotoSpec("camera", "skimage:camera", "n04485082", (0.58, 0.70), (0.44, 0.42, 0.78, 0.98)),
    # military uniform: the jacket below the face
    PhotoSpec(
        "grace_hopper",
        "matplotlib:grace_hopper.jpg",
        "n03763968",
        (0.50, 0.74),
        (0.02, 0.55, 1.0, 1.0),
    ),
    # palace: the pagoda
    PhotoSpec("china", "sklearn:china.jpg", "n03877845", (0.32, 0.52), (0.18, 0.06, 0.52, 0.98)),
    # daisy: the large flower head
    PhotoSpec("flower", "sklearn:flower.jpg", "n11939491", (0.47, 0.45), (0.26, 0.18, 0.70, 0.78)),
)
"""The photo -> ImageNet-1k class table. ``astronaut`` is left out: no ImageNet-1k class fits."""

ZOOMS = (0.85, 0.7, 0.55, 0.4)
"""Sides of the object-centred views, as fractions of the photo's shorter side."""

JPEG_QUALITY = 95
MIN_VISIBLE = 0.25
"""A view keeps the object's box when the visible part of the object covers at least this share
of the box's area or of the view: a tight zoom inside a large object still shows the object."""
_LAYOUT_MARKER = "wnids.txt"


@dataclass(frozen=True)
class Photo:
    """A full-size photo: ``pixels`` uint8 [H, W, 3] RGB (gray photos repeated to 3 channels)."""

    name: str
    wnid: str
    imagenet_index: int
    pixels: np.ndarray
    grayscale: bool


def recipe() -> dict:
    """Everything that decides the embedded dataset's bytes, for the workflow's rerun trigger."""
    return {
        "photos": [
            [spec.name, spec.source, spec.wnid, list(spec.focus), list(spec.box)] for spec in PHOTOS
        ],
        "zooms": list(ZOOMS),
        "min_visible": MIN_VISIBLE,
        "jpeg_quality": JPEG_QUALITY,
    }


def photos() -> list[Photo]:
    """The :data:`PHOTOS` at full size, in table order."""
    result = []
    for spec in PHOTOS:
        stored = _load(spec.source)
        index = classes.imagenet_index(spec.wnid)
        if index is None:
            raise ValueError(f"PHOTOS: {spec.name} has wnid {spec.wnid}, not in ImageNet-1k")
        pixels = np.repeat(stored[..., None], 3, axis=-1) if stored.ndim == 2 else stored
        result.append(Photo(spec.name, spec.wnid, index, pixels, grayscale=stored.ndim == 2))
    return result


def _load(source: str) -> np.ndarray:
    """uint8 [H, W] (gray) or [H, W, 3] pixels of a photo shipped in an installed wheel."""
    package, name = source.split(":", 1)
    if package == "skimage":
        from skimage import data

        pixels = (
            data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(data, name)()
        )
    elif package == "matplotlib":
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data(name, asfileobj=False)) as image:
            pixels = np.asarray(image.convert("RGB"))
    elif package == "sklearn":
        from sklearn.datasets import load_sample_image

        pixels = load_sample_image(name)
    else:
        raise ValueError(f"unknown photo source {source!r}")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] != 3:
        raise ValueError(f"{source}: expected RGB or gray pixels, got shape {pixels.shape}")
    return pixels


def crop_boxes(width: int, height: int, focus: tuple[float, float]) -> list[tuple[int, ...]]:
    """Pixel boxes (left, top, right, bottom) of the views of one photo, duplicates removed.

    Whole photo (squashed when resized), centre square, then one square per :data:`ZOOMS` side
    centred on ``focus`` and shifted inside the photo where it would overhang.
    """
    short = min(width, height)
    boxes = [(0, 0, width, height), square_box(width, height, short, (0.5, 0.5))]
    boxes += [square_box(width, height, round(zoom * short), focus) for zoom in ZOOMS]
    return list(dict.fromkeys(boxes))


def square_box(width: int, height: int, side: int, centre: tuple[float, float]) -> tuple[int, ...]:
    """Box (left, top, right, bottom) of a ``side`` square centred on ``centre`` (fractions of
    width and height), shifted inside the photo where it would overhang."""
    left = min(max(round(centre[0] * width - side / 2), 0), width - side)
    top = min(max(round(centre[1] * height - side / 2), 0), height - side)
    return (left, top, left + side, top + side)


def view_box(
    box: tuple[float, float, float, float],
    photo_size: tuple[int, int],
    crop: tuple[int, ...],
    size: int,
) -> tuple[int, int, int, int] | None:
    """The object's box in a ``size`` x ``size`` view of ``crop``, or None if the view lost it.

    Args:
        box: the object's box as fractions (x0, y0, x1, y1) of the photo's (width, height).
        photo_size: (width, height) in pixels.
        crop: the view's (left, top, right, bottom) pixel box, right and bottom exclusive.

    Returns:
        The inclusive pixel box (x0, y0, x1, y1) of the part of the object inside the view,
        clipped to it, or None when the visible part covers less than :data:`MIN_VISIBLE` of
        both the box and the view.
    """
    width, height = photo_size
    left, top, right, bottom = crop
    x0, x1 = box[0] * width, box[2] * width  # continuous edges in photo pixels
    y0, y1 = box[1] * height, box[3] * height
    inside_x = max(0.0, min(x1, right) - max(x0, left))
    inside_y = max(0.0, min(y1, bottom) - max(y0, top))
    smaller = min((x1 - x0) * (y1 - y0), (right - left) * (bottom - top))
    if inside_x * inside_y < MIN_VISIBLE * smaller:
        return None
    scale_x, scale_y = size / (right - left), size / (bottom - top)
    return (
        int(np.floor((max(x0, left) - left) * scale_x)),
        int(np.floor((max(y0, top) - top) * scale_y)),
        int(np.ceil((min(x1, right) - left) * scale_x)) - 1,
        int(np.ceil((min(y1, bottom) - top) * scale_y)) - 1,
    )


def build(root: str | os.PathLike, *, size: int = 64) -> Path:
    """Write the embedded dataset in Tiny-ImageNet layout under ``root`` and return ``root``.

    Files: ``wnids.txt`` (sorted), ``words.txt`` (ImageNet names), ``val/images/val_<n>.JPEG``
    (``size`` x ``size``; RGB, except the grayscale photo's views, which are mode L), and
    ``val/val_annotations.txt`` with each view's object box (:func:`view_box`); a view that
    lost the object gets a line without a box (file and wnid only), which the label table
    records as ``box_status`` ``missing``.

    The tree is written in a temporary folder beside ``root`` and renamed into place. An
    existing ``root`` is replaced only if it is empty or itself a Tiny-ImageNet folder (holds
    ``wnids.txt``), so a rebuild refreshes a previous build but never wipes an unrelated folder.
    """
    root = Path(root)
    if root.exists() and not _replaceable(root):
        raise FileExistsError(f"{root} exists and is neither empty nor a Tiny-ImageNet folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(root)
    try:
        _write_tree(staging, size)
        _swap_into_place(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root


def _write_tree(folder: Path, size: int) -> None:
    images_dir = folder / "val" / "images"
    images_dir.mkdir(parents=True)
    annotations, n = [], 0
    for photo in photos():
        spec = next(s for s in PHOTOS if s.name == photo.name)
        source = Image.fromarray(photo.pixels[..., 0] if photo.grayscale else photo.pixels)
        height, width = photo.pixels.shape[:2]
        for box in crop_boxes(width, height, spec.focus):
            view = source.resize((size, size), Image.Resampling.LANCZOS, box=box)
            name = f"val_{n}.JPEG"
            (images_dir / name).write_bytes(jpeg_bytes(view))
            found = view_box(spec.box, (width, height), box, size)
            fields = "" if found is None else "".join(f"\t{value}" for value in found)
            annotations.append(f"{name}\t{photo.wnid}{fields}\n")
            n += 1
    wnids = sorted({spec.wnid for spec in PHOTOS})
    words = [f"{w}\t{classes.full_name(classes.imagenet_index(w))}\n" for w in wnids]
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids), encoding="utf-8")
    (folder / "words.txt").write_text("".join(words), encoding="utf-8")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations), encoding="utf-8")


def jpeg_bytes(image: Image.Image) -> bytes:
    """Baseline JPEG, fixed quality, 4:4:4, no metadata: equal pixels give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buffer.getvalue()


def _replaceable(root: Path) -> bool:
    return root.is_dir() and (not any(root.iterdir()) or (root / _LAYOUT_MARKER).is_file())


def _swap_into_place(staging: Path, root: Path) -> None:
    """Rename ``staging`` onto ``root``; an old ``root`` is moved aside first, then deleted."""
    if not root.exists():
        os.replace(staging, root)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
    os.replace(root, old / root.name)
    os.replace(staging, root)
    shutil.rmtree(old)
