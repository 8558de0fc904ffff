"""A Tiny-ImageNet-layout dataset of N views of the embedded photos, for ``workflow.py --scale``.

Image ``i`` is a 64x64 view of photo ``i mod 8`` of :data:`robustmap.embedded.PHOTOS` (the photos
that ship in wheels, loaded by :func:`robustmap.embedded.photos`): a square crop of random side
(0.3 to 1 of the photo's shorter side) around the photo's object focus, jittered, Lanczos-resized,
flipped half of the time, with random brightness, contrast and saturation. Every random number
of image ``i`` comes from ``default_rng([seed, i])``, so the same seed gives byte-identical JPEGs
whatever N is (image ``i`` does not depend on N). Image ``i`` with ``i mod 16 == 3`` is stored as
CMYK and with ``i mod 16 == 11`` as grayscale (besides the grayscale photo's own views), so the
label table's conversions are exercised; the pattern guarantees both from 12 images on.

Labels: a classifier's top-1 on the decoded views (what the workflow's ``predict`` rule will see:
JPEG loss and CMYK/gray conversion included) labels about :data:`OWN_FRACTION` of the images, so
they are classified correctly and get searched; the others get another wnid among the 200, so
they are misclassified. ``wnids.txt`` lists 200 wnids: every top-1 class used (the most frequent
200 if there are more; images of the rest are relabelled as misclassified), then the embedded
photos' own classes, then other ImageNet-1k classes drawn with the seed.

``val/val_annotations.txt`` gives each view the human box of its photo's object
(:data:`robustmap.embedded.PHOTOS`), carried through the crop and the flip by
:func:`robustmap.embedded.view_box`; a view whose crop lost the object gets a line without a box,
which the label table records as ``box_status`` ``missing`` (so the ``no_box`` path runs at scale).

    python bench/scale_dataset.py OUT --images 1000 --model '{"zoo": "efficientnet_lite0"}'

writes the dataset under OUT (absent or empty) and prints a JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from defaults import workflow_config  # bench/defaults.py
from PIL import Image, ImageEnhance

from robustmap import classes, dataset, embedded

SIZE = 64
WNIDS = 200
OWN_FRACTION = 0.7
ZOOM_RANGE = (0.3, 1.0)  # crop side, fraction of the photo's shorter side
CENTRE_JITTER = 0.08  # standard deviation of the crop centre, fraction of width / height
JITTER = 0.2  # brightness, contrast and saturation factors uniform in [1 - J, 1 + J]
MODE_PERIOD, CMYK_AT, GRAY_AT = 16, 3, 11
LABEL_STREAM = 2**32 - 1  # the label draws' rng stream; image streams are [seed, i], i < N

Top1 = Callable[[np.ndarray], np.ndarray]
"""Images float32 [N, 64, 64, 3] in [0, 1] -> ImageNet-1k indices [N] of a classifier's top-1."""


@dataclass(frozen=True)
class Summary:
    """What :func:`build` wrote: counts for the bench's printout."""

    images: int
    own_label: int  # labelled with the classifier's top-1: correct, searched
    other_label: int  # labelled with another wnid: misclassified
    top1_classes: int  # distinct top-1 classes among the own-labelled images
    modes: dict[str, int]  # stored JPEG modes
    wnids: int


@dataclass(frozen=True)
class _Source:
    """One photo ready for cropping: a PIL image in its stored mode, its object focus and box."""

    image: Image.Image
    focus: tuple[float, float]
    box: tuple[float, float, float, float]


def build(root: str | Path, images: int, *, seed: int, top1: Top1) -> Summary:
    """Write ``images`` views under ``root`` (absent or empty) in Tiny-ImageNet layout."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    (root / dataset.IMAGES_DIR).mkdir(parents=True)
    boxes, modes = _write_views(root, images, seed)
    predicted = top1(_decoded_views(root, images))
    labels, wnids, own = assign_labels(predicted, seed=seed)
    _write_annotations(root, labels, boxes)
    _write_wnids(root, wnids)
    return Summary(
        images=images,
        own_label=int(own.sum()),
        other_label=int((~own).sum()),
        top1_classes=len(set(predicted[own].tolist())),
        modes=dict(sorted(Counter(modes).items())),
        wnids=len(wnids),
    )


def _write_views(
    root: Path, images: int, seed: int
) -> tuple[list[tuple[int, ...] | None], list[str]]:
    sources = [
        _Source(
            Image.fromarray(p.pixels[..., 0] if p.grayscale else p.pixels), spec.focus, spec.box
        )
        for p, spec in zip(embedded.photos(), embedded.PHOTOS, strict=True)
    ]
    boxes, modes = [], []
    for index in range(images):
        view, box = render_view(sources[index % len(sources)], np.random.default_rng([seed, index]))
        view = view.convert(stored_mode(index, view.mode))
        (root / dataset.IMAGES_DIR / f"val_{index}.JPEG").write_bytes(embedded.jpeg_bytes(view))
        boxes.append(box)
        modes.append(view.mode)
    return boxes, modes


def render_view(
    source: _Source, rng: np.random.Generator
) -> tuple[Image.Image, tuple[int, ...] | None]:
    """A jittered SIZE x SIZE view of ``source`` and its object box (x0, y0, x1, y1) in it, or
    None where the crop lost the object."""
    width, height = source.image.size
    short = min(width, height)
    # Every draw is made whatever the branches, so one image's stream never shifts another's.
    side = round(rng.uniform(*ZOOM_RANGE) * short)
    shift = rng.normal(0.0, CENTRE_JITTER, 2)
    flip = rng.random() < 0.5
    factors = rng.uniform(1.0 - JITTER, 1.0 + JITTER, 3)
    centre = (
        float(np.clip(source.focus[0] + shift[0], 0, 1)),
        float(np.clip(source.focus[1] + shift[1], 0, 1)),
    )
    crop = embedded.square_box(width, height, side, centre)
    view = source.image.resize((SIZE, SIZE), Image.Resampling.LANCZOS, box=crop)
    for enhancer, factor in zip(
        (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors, strict=True
    ):
        view = enhancer(view).enhance(float(factor))
    box = embedded.view_box(source.box, (width, height), crop, SIZE)
    if flip:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if box is not None:
            box = (SIZE - 1 - box[2], box[1], SIZE - 1 - box[0], box[3])
    return view, box


def stored_mode(index: int, mode: str) -> str:
    """The JPEG mode of image ``index``: a fixed few CMYK and grayscale, the rest as rendered."""
    slot = index % MODE_PERIOD
    return "CMYK" if slot == CMYK_AT else "L" if slot == GRAY_AT else mode


def _decoded_views(root: Path, images: int) -> np.ndarray:
    """The views as the workflow decodes them, in image order (``val_0`` first)."""
    table = dataset.label_table(root)  # no annotations yet: every file "unannotated", readable
    expected = [f"val_{index}" for index in range(images)]
    if table["image_id"].tolist() != expected:
        raise RuntimeError("label table order differs from the image order")
    return dataset.load_images(table, root)


def assign_labels(predicted: np.ndarray, *, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """(label wnid per image, the 200 wnids sorted, mask of images labelled with their top-1)."""
    rng = np.random.default_rng([seed, LABEL_STREAM])
    own = rng.random(len(predicted)) < OWN_FRACTION
    counts = Counter(predicted[own].tolist())
    kept = sorted(counts, key=lambda index: (-counts[index], index))[:WNIDS]
    own &= np.isin(predicted, kept)
    chosen = _fill_classes(kept, rng)
    others = rng.integers(0, WNIDS - 1, len(predicted))  # an index among the 199 non-top-1
    labels = []
    for index, label in enumerate(predicted.tolist()):
        if own[index]:
            labels.append(classes.wnid_of(label))
        else:
            candidates = [c for c in chosen if c != label][: WNIDS - 1]
            labels.append(classes.wnid_of(candidates[others[index]]))
    return labels, sorted(classes.wnid_of(c) for c in chosen), own


def _fill_classes(kept: list[int], rng: np.random.Generator) -> list[int]:
    """``kept`` then the embedded photos' classes, then seeded other classes: WNIDS in all."""
    photo_classes = [classes.imagenet_index(spec.wnid) for spec in embedded.PHOTOS]
    rest = rng.permutation(classes.num_classes).tolist()
    chosen = list(dict.fromkeys([*kept, *photo_classes, *rest]))[:WNIDS]
    return sorted(chosen)


def _write_annotations(root: Path, labels: list[str], boxes: list[tuple[int, ...] | None]) -> None:
    lines = [
        f"val_{index}.JPEG\t{wnid}" + "".join(f"\t{value}" for value in box or ()) + "\n"
        for index, (wnid, box) in enumerate(zip(labels, boxes, strict=True))
    ]
    (root / dataset.ANNOTATIONS_FILE).write_text("".join(lines), encoding="utf-8")


def _write_wnids(root: Path, wnids: list[str]) -> None:
    words = [f"{w}\t{classes.full_name(classes.imagenet_index(w))}\n" for w in wnids]
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids), encoding="utf-8")
    (root / dataset.WORDS_FILE).write_text("".join(words), encoding="utf-8")


def model_top1(options: dict[str, Any], *, batch_size: int) -> Top1:
    """Top-1 of the model of a ``models.<key>`` config entry, computed as the predict rule does.

    Same loading, determinism settings, batch size and image order as the rule, so its
    predictions (and so which images are correct) agree with these labels.
    """

    def top1(images: np.ndarray) -> np.ndarray:
        from robustmap import models, predict, runtime

        runtime.setup(None)
        model = models.from_options(options)
        return predict.logits_in_batches(model, images, batch_size=batch_size).argmax(axis=1)

    return top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="dataset root to create (absent or empty)")
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", required=True, help="JSON of a models.<key> config entry")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=workflow_config()["predict"]["batch_size"],
        help="default: the workflow's predict.batch_size",
    )
    args = parser.parse_args()
    top1 = model_top1(json.loads(args.model), batch_size=args.batch_size)
    summary = build(args.out, args.images, seed=args.seed, top1=top1)
    sys.stdout.write(json.dumps(asdict(summary)) + "\n")


if __name__ == "__main__":
    main()
