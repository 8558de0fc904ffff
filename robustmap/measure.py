"""A model's measurements: heatmaps and minimal-epsilon searches per shard, and the scores of
the stored heatmaps (compactness, localisation against the human boxes).

This module joins the pure measuring functions (``heatmaps``, ``search``, ``compactness``,
``localisation``) to the workflow's tables: it names rows by ``image_id`` and turns results into
Parquet-ready frames.

TensorFlow and Keras are imported only inside the functions of ``heatmaps`` and ``search``
that run a model, so that the jobs that only score stored heatmaps or draw searched images start
without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from robustmap import (
    classes,
    compactness,
    heatmaps,
    kinds,
    localisation,
    model_calls,
    search,
    shards,
)
from robustmap.schema import NO_BOX, SEARCH_COLUMNS

if TYPE_CHECKING:
    import keras

LOG = logging.getLogger(__name__)


def heatmap_arrays(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    layer: str,
    smoothgrad_samples: int,
    smoothgrad_sigma: float,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """Raw Grad-CAM and gradient-saliency magnitudes, float32 [N, H, W] each."""
    cam = heatmaps.gradcam(model, images, labels, layer=layer, batch_size=batch_size)
    saliency = heatmaps.saliency(
        model,
        images,
        labels,
        smoothgrad_samples=smoothgrad_samples,
        noise_sigma=smoothgrad_sigma,
        seed=0,
        batch_size=batch_size,
    )
    return {"gradcam": cam.astype(np.float32), "saliency": saliency.astype(np.float32)}


def search_weights(
    kind: str,
    cam: np.ndarray | None,
    *,
    object_mask: str | None,
    threshold: str | None,
) -> np.ndarray | None:
    """Per-pixel weights of one search kind not built from boxes (see
    :func:`search_weights_by_kind`)."""
    return search_weights_by_kind([kind], cam, object_mask=object_mask, threshold=threshold)[kind]


def search_weights_by_kind(
    names: Sequence[str],
    cam: np.ndarray | None,
    *,
    object_mask: str | None,
    threshold: str | None,
    boxes: np.ndarray | None = None,
    box_valid: np.ndarray | None = None,
    box_border: int = 0,
    shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray | None]:
    """The weights of each search kind: none (uniform), from Grad-CAM, or from the human box.

    Args:
        names: search kinds of :mod:`robustmap.kinds`.
        cam: the shard's Grad-CAM [N, H, W], needed by the Grad-CAM kinds; the object and
            background searches share one object mask, computed once.
        boxes, box_valid, shape: the images' human boxes (int [N, 4] in their [H, W] frame
            ``shape``) and which are valid (bool [N]), from :func:`robustmap.shards.load_boxes`;
            needed by the box kinds. An image without a valid box gets all-zero ``box_object``
            weights; :func:`search_tables` records it as ``no_box`` in both box kinds.
        box_border: the soft edge of the box weights (:func:`robustmap.localisation.box_weights`).
    """
    sources = {kinds.source_of(name) for name in names}
    object_w = None
    if "gradcam" in sources:
        if cam is None:
            raise ValueError(
                f"the {kinds.kinds_from(names, 'gradcam')[0]} search needs the shard's Grad-CAM"
            )
        object_w = heatmaps.object_weights(cam, mode=object_mask, threshold=threshold)
    box_object = None
    if "box" in sources:
        if boxes is None or box_valid is None or shape is None:
            raise ValueError(
                f"the {kinds.kinds_from(names, 'box')[0]} search needs the human boxes"
            )
        box_object = localisation.box_weights(boxes, shape, border=box_border)
        box_object[~np.asarray(box_valid, dtype=bool)] = 0.0
    built = {
        "uniform": lambda: None,
        "object": lambda: object_w,
        "background": lambda: heatmaps.background_weights(object_w),
        "box_object": lambda: box_object,
        "box_background": lambda: (1.0 - box_object).astype(np.float32),
    }
    return {name: built[name]() for name in names}


def search_tables(
    model: keras.Model,
    image_ids: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    weights: dict[str, np.ndarray | None],
    eps_max: float,
    tol: float,
    batch_size: int,
    box_valid: np.ndarray | None = None,
    sign_out: np.ndarray | None = None,
    engine: str = "tensorflow",
) -> dict[str, pd.DataFrame]:
    """Minimal epsilon of every image of a shard for each search kind, logged per batch.

    ``weights`` maps each kind to its weights (``search_weights_by_kind``); the kinds share every
    image's clean pass and fill the same model calls (``search.minimal_epsilons``). Images
    whose ``box_valid`` is False get status ``no_box`` in the box kinds: a recorded row
    with an undefined (nan) epsilon, never a missing row, and never a censored one.
    ``sign_out`` receives every image's gradient sign, and ``engine`` runs the probes
    (:func:`robustmap.search.minimal_epsilons`).
    """
    started = time.perf_counter()
    kinds = ", ".join(weights)
    engine = model_calls.resolve_engine(engine)
    # "search: 0/" is what tests (and users' log greps) wait for: keep it at the start.
    LOG.info(
        "%s search: 0/%d (image, kind) pairs, probes on %s",
        kinds,
        len(weights) * len(images),
        engine,
    )

    def report(done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        LOG.info(
            "%s search: %d/%d (image, kind) pairs (%.2f/s)", kinds, done, total, done / elapsed
        )

    results = search.minimal_epsilons(
        model,
        images,
        labels,
        weights=weights,
        eps_max=eps_max,
        tol=tol,
        batch_size=batch_size,
        progress=report,
        sign_out=sign_out,
        engine=engine,
    )
    return {
        kind: _search_frame(kind, image_ids, result, box_valid) for kind, result in results.items()
    }


def _search_frame(
    kind: str,
    image_ids: np.ndarray,
    result: search.SearchResult,
    box_valid: np.ndarray | None = None,
) -> pd.DataFrame:
    frame = result.to_frame()
    frame["adversarial_name"] = pd.Series(
        classes.names_of(frame["adversarial_label"]), dtype=object
    )
    frame.insert(0, "search", kind)
    frame.insert(0, "image_id", image_ids)
    if kinds.source_of(kind) == "box" and box_valid is not None:
        no_box = ~np.asarray(box_valid, dtype=bool)
        frame.loc[no_box, ["epsilon", "adversarial_label", "forward_passes"]] = [np.nan, -1, 0]
        frame.loc[no_box, ["status", "non_monotone"]] = [NO_BOX, False]
    return frame[SEARCH_COLUMNS]


# The arrays of a shard without images: the empty table keeps the columns and dtypes of a full one.
_NO_HEATMAPS = {
    "image_id": np.array([], dtype=str),
    "gradcam": np.zeros((0, 1, 1), np.float32),
    "saliency": np.zeros((0, 1, 1), np.float32),
}


def compactness_table(shard_arrays: list[dict[str, np.ndarray]], *, threshold: str) -> pd.DataFrame:
    """Compactness of both heatmaps of every image, with saliency-vs-Grad-CAM agreement.

    Args:
        shard_arrays: the arrays of each heatmaps shard (image_id [N], gradcam and saliency
            [N, H, W]).
    Returns:
        One row per image and heatmap kind (image_id, heatmap, scores...), the agreement columns
        repeated on both rows of an image. No shard (a model that got no image right): the same
        columns, no rows.
    """
    if not shard_arrays:
        shard_arrays = [_NO_HEATMAPS]
    image_ids = np.concatenate([arrays["image_id"] for arrays in shard_arrays]).astype(str)
    maps = {
        kind: np.concatenate([arrays[kind] for arrays in shard_arrays])
        for kind in ("saliency", "gradcam")
    }
    scores = pd.concat(
        [
            compactness.score_table(maps[kind], ids=image_ids, kind=kind, threshold=threshold)
            for kind in ("gradcam", "saliency")
        ],
        ignore_index=True,
    )
    agreement = compactness.agreement(maps["saliency"], maps["gradcam"], top=0.2)
    agreement.insert(0, "image_id", image_ids)
    return scores.merge(agreement, on="image_id", how="left", validate="many_to_one")


def localisation_table(
    shard_arrays: Iterable[Mapping[str, np.ndarray]], labels_path: str | Path, *, tolerance: int
) -> pd.DataFrame:
    """Both heatmaps of every image scored against its human box, shard by shard.

    Args:
        shard_arrays: the arrays of each heatmaps shard (image_id [N], gradcam and saliency
            [N, H, W]), read once in turn: a generator keeps one shard in memory at a time.
        labels_path: the label table, whose boxes are scaled to the heatmaps' frame
            (:func:`robustmap.shards.load_boxes`).
        tolerance: the pointing game's margin (:func:`robustmap.localisation.localisation_scores`).
    Returns:
        :func:`robustmap.localisation.localisation_table` of each shard in turn. No shard (a
        model that got no image right): its columns, no rows.
    """
    frames = []
    for arrays in shard_arrays:
        image_ids = arrays["image_id"].astype(str)
        maps = {kind: arrays[kind] for kind in kinds.HEATMAP_KINDS}
        shape = maps[kinds.HEATMAP_KINDS[0]].shape[1:]
        boxes, valid = shards.load_boxes(labels_path, list(image_ids), shape=shape)
        frames.append(
            localisation.localisation_table(image_ids, maps, boxes, valid, tolerance=tolerance)
        )
    if not frames:
        return localisation.localisation_table(
            np.array([]), {}, np.zeros((0, 4)), np.zeros(0, bool)
        )
    return pd.concat(frames, ignore_index=True)
