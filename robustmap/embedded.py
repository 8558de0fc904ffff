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


@dataclass(frozen=True)
class PhotoSpec:
    """One source photo: where it comes from, its class, and the centre of its object.

    ``source`` is ``"<package>:<name>"``; ``focus`` is the object's centre as fractions of
    (width, height), the centre of the zoomed views.
    """

    name: str
    source: str
    wnid: str
    focus: tuple[float, float]


PHOTOS: tuple[PhotoSpec, ...] = (
    PhotoSpec("chelsea", "skimage:chelsea", "n02124075", (0.50, 0.45)),  # Egyptian cat
    PhotoSpec("coffee", "skimage:coffee", "n07920052", (0.47, 0.40)),  # espresso
    PhotoSpec("rocket", "skimage:rocket", "n03773504", (0.50, 0.55)),  # missile
    PhotoSpec("motorcycle", "skimage:stereo_motorcycle", "n03785016", (0.45, 0.62)),  # moped
    PhotoSpec("camera", "skimage:camera", "n04485082", (0.58, 0.70)),  # tripod (grayscale)
    PhotoSpec("grace_hopper", "matplotlib:grace_hopper.jpg", "n03763968", (0.50, 0.74)),  # uniform
    PhotoSpec("china", "sklearn:china.jpg", "n03877845", (0.32, 0.52)),  # palace
    PhotoSpec("flower", "sklearn:flower.jpg", "n11939491", (0.47, 0.45)),  # daisy
)
"""The photo -> ImageNet-1k class table. ``astronaut`` is left out: no ImageNet-1k class fits."""

ZOOMS = (0.85, 0.7, 0.55, 0.4)
"""Sides of the object-centred views, as fractions of the photo's shorter side."""

JPEG_QUALITY = 95
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
        "photos": [[spec.name, spec.source, spec.wnid, list(spec.focus)] for spec in PHOTOS],
        "zooms": list(ZOOMS),
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


def build(root: str | os.PathLike, *, size: int = 64) -> Path:
    """Write the embedded dataset in Tiny-ImageNet layout under ``root`` and return ``root``.

    Files: ``wnids.txt`` (sorted), ``words.txt`` (ImageNet names), ``val/images/val_<n>.JPEG``
    (``size`` x ``size``; RGB, except the grayscale photo's views, which are mode L), and
    ``val/val_annotations.txt`` whose box is the whole view, ``0 0 size-1 size-1``.

    The tree is written in a temporary folder beside ``root`` and renamed into place. An
    existing ``root`` is replaced only if it is empty or itself a Tiny-ImageNet folder (holds
    ``wnids.txt``), so a rebuild refreshes a previous build but never wipes an unrelated folder.
    """
    root = Path(root)
    if root.exists() and not _replaceable(root):
        raise FileExistsError(f"{root} exists and is neither empty nor a Tiny-ImageNet folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
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
            annotations.append(f"{name}\t{photo.wnid}\t0\t0\t{size - 1}\t{size - 1}\n")
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
