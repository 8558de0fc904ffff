"""One shard's measurements: its heatmaps, and its minimal-epsilon searches.

This module joins the pure measuring functions (``heatmaps``, ``search``) to the workflow's
tables: it names rows by ``image_id`` and turns results into Parquet-ready frames.

``heatmaps`` and ``search`` (and with them TensorFlow and Keras) are imported inside the
functions that run a model, so that the compactness job, which only scores stored heatmaps,
starts without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from robustmap import compactness

if TYPE_CHECKING:
    import keras

    from robustmap import search

LOG = logging.getLogger(__name__)
SEARCH_COLUMNS = [
    "image_id",
    "search",
    "epsilon",
    "adversarial_label",
    "forward_passes",
    "status",
    "non_monotone",
]


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
    from robustmap import heatmaps

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
    kind: str, cam: np.ndarray | None, *, object_mask: str | None, threshold: str | None
) -> np.ndarray | None:
    """Per-pixel weights of a search kind: none (uniform), Grad-CAM object, or its complement."""
    return search_weights_by_kind([kind], cam, object_mask=object_mask, threshold=threshold)[kind]


def search_weights_by_kind(
    kinds: Sequence[str],
    cam: np.ndarray | None,
    *,
    object_mask: str | None,
    threshold: str | None,
) -> dict[str, np.ndarray | None]:
    """``search_weights`` of each kind; the object and background searches share one object mask,
    computed once."""
    from robustmap import heatmaps

    object_w = None
    if any(kind != "uniform" for kind in kinds):
        if cam is None:
            weighted = next(kind for kind in kinds if kind != "uniform")
            raise ValueError(f"the {weighted} search needs the shard's Grad-CAM")
        object_w = heatmaps.object_weights(cam, mode=object_mask, threshold=threshold)
    return {kind: _weights_from_object(kind, object_w) for kind in kinds}


def _weights_from_object(kind: str, object_w: np.ndarray | None) -> np.ndarray | None:
    if kind == "uniform":
        return None
    if kind == "object":
        return object_w
    if kind == "background":
        from robustmap import heatmaps

        return heatmaps.background_weights(object_w)
    raise ValueError(f"unknown search kind {kind!r}: expected uniform, object or background")


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
) -> dict[str, pd.DataFrame]:
    """Minimal epsilon of every image of a shard for each search kind, logged per batch.

    ``weights`` maps each kind to its weights (``search_weights_by_kind``); the kinds share every
    image's clean pass and fill the same model calls (``search.minimal_epsilons``).
    """
    from robustmap import search

    started = time.perf_counter()
    kinds = ", ".join(weights)
    LOG.info("%s search: 0/%d (image, kind) pairs", kinds, len(weights) * len(images))

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
    )
    return {kind: _search_frame(kind, image_ids, result) for kind, result in results.items()}


def _search_frame(kind: str, image_ids: np.ndarray, result: search.SearchResult) -> pd.DataFrame:
    frame = result.to_frame()
    frame.insert(0, "search", kind)
    frame.insert(0, "image_id", image_ids)
    return frame[SEARCH_COLUMNS]


def compactness_table(shard_arrays: list[dict[str, np.ndarray]], *, threshold: str) -> pd.DataFrame:
    """Compactness of both heatmaps of every image, with saliency-vs-Grad-CAM agreement.

    Args:
        shard_arrays: the arrays of each heatmaps shard (image_id [N], gradcam and saliency
            [N, H, W]).
    Returns:
        One row per image and heatmap kind (image_id, heatmap, scores...), the agreement columns
        repeated on both rows of an image.
    """
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
