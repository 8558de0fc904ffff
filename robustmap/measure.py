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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    pgd,
    search,
    shards,
)
from robustmap.scheduler import CleanPasses
from robustmap.schema import ATTACK_COLUMN, FGSM, NO_BOX, PGD, SEARCH_COLUMNS, SEARCH_TABLE

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
    pgd_settings: Mapping[str, object] | None = None,
    delta_out: dict[str, np.ndarray] | None = None,
) -> dict[str, pd.DataFrame]:
    """Minimal epsilon of every image of a shard for each search kind and attack, logged per batch.

    ``weights`` maps each kind to its weights (``search_weights_by_kind``); the kinds share every
    image's clean pass and fill the same model calls (``search.minimal_epsilons``). Then, for
    the kinds of ``pgd_settings`` (the config's ``search.pgd``: kinds, steps, rel_tol; none:
    FGSM only), PGD (:func:`robustmap.pgd.minimal_epsilons`) starts from each image's FGSM
    epsilon of that kind and reuses FGSM's clean pass (no second clean gradient). Each kind's
    table holds its FGSM rows, then its PGD rows (column ``attack``). Images whose ``box_valid``
    is False get status ``no_box`` in the box kinds, under both attacks: a recorded row with an
    undefined (nan) epsilon, never a missing row, and never a censored one.
    ``sign_out`` receives every image's gradient sign, ``delta_out`` each PGD kind's witness
    perturbations (:attr:`robustmap.pgd.PgdResult.delta`), and ``engine`` runs FGSM's probes
    (:func:`robustmap.search.minimal_epsilons`; PGD's gradient calls stay in TensorFlow).
    """
    engine = model_calls.resolve_engine(engine)
    clean = CleanPasses(len(images))
    # "search: 0/" is what tests (and users' log greps) wait for: keep it at the start.
    report = _progress_log(", ".join(weights), len(weights) * len(images), f"probes on {engine}")
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
        clean_out=clean,
    )
    frames = {
        kind: [_search_frame(kind, image_ids, result, box_valid)]
        for kind, result in results.items()
    }
    pgd_kinds = [kind for kind in weights if kind in (pgd_settings or {}).get("kinds", ())]
    if pgd_kinds and len(images):
        found = pgd.minimal_epsilons(
            model,
            images,
            labels,
            weights={kind: weights[kind] for kind in pgd_kinds},
            upper={kind: results[kind].epsilon for kind in pgd_kinds},
            eps_max=eps_max,
            steps=pgd_settings["steps"],
            rel_tol=pgd_settings["rel_tol"],
            batch_size=batch_size,
            progress=_progress_log(
                f"{', '.join(pgd_kinds)} {PGD}", len(pgd_kinds) * len(images), "gradients"
            ),
            clean=clean,
        )
        for kind, result in found.items():
            frames[kind].append(_search_frame(kind, image_ids, result, box_valid))
            if delta_out is not None:
                delta_out[kind] = result.delta
    return {kind: pd.concat(parts, ignore_index=True) for kind, parts in frames.items()}


def _progress_log(what: str, total: int, note: str) -> Callable[[int, int], None]:
    """Log "<what> search: 0/<total> (image, kind) pairs, <note>" now, and return the progress
    callback that logs each later count with its rate."""
    started = time.perf_counter()
    LOG.info("%s search: 0/%d (image, kind) pairs, %s", what, total, note)

    def report(done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        LOG.info("%s search: %d/%d (image, kind) pairs (%.2f/s)", what, done, total, done / elapsed)

    return report


_ABSENT = {FGSM: ("epsilon_low", "gradient_passes"), PGD: ("forward_passes", "non_monotone")}
"""The search-table fields each attack's rows leave null."""
_NO_BOX_ROW = {
    "epsilon": np.nan,
    "epsilon_low": np.nan,
    "adversarial_label": -1,
    "forward_passes": 0,
    "gradient_passes": 0,
    "status": NO_BOX,
    "non_monotone": False,
}
"""The fields of an image without a valid human box in a box kind (its attack's fields only)."""


def _search_frame(
    kind: str,
    image_ids: np.ndarray,
    result: search.SearchResult | pgd.PgdResult,
    box_valid: np.ndarray | None = None,
) -> pd.DataFrame:
    """One attack's rows of a kind's search table; the attack is the result's."""
    attack = PGD if isinstance(result, pgd.PgdResult) else FGSM
    frame = result.to_frame()
    frame["adversarial_name"] = pd.Series(
        classes.names_of(frame["adversarial_label"]), dtype=object
    )
    frame.insert(0, "search", kind)
    frame.insert(0, ATTACK_COLUMN, attack)
    frame.insert(0, "image_id", image_ids)
    for field in _ABSENT[attack]:
        frame[field] = pd.Series(index=frame.index, dtype=SEARCH_TABLE[field])  # all null
    if kinds.source_of(kind) == "box" and box_valid is not None:
        no_box = ~np.asarray(box_valid, dtype=bool)
        for field, value in _NO_BOX_ROW.items():
            if field not in _ABSENT[attack]:
                frame.loc[no_box, field] = value
    return frame[SEARCH_COLUMNS].astype(SEARCH_TABLE)


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
