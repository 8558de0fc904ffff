"""How concentrated is a heatmap? One score set per 2-D nonnegative map.

A heatmap ``h`` (shape ``[H, W]``, ``n = H * W`` pixels, values >= 0) is read as a mass
distribution ``p = h / h.sum()`` over the pixel grid. Every score below is invariant to scaling
``h`` by a positive constant, so raw Grad-CAM and saliency magnitudes can be scored directly.

Scores (all floats; "top-k" means the k largest pixels, ties broken by flat pixel index):

``gini``
    Gini coefficient of the pixel values, ``sum_i (2i - n - 1) h_(i) / (n sum h)`` with
    ``h_(1) <= ... <= h_(n)``. 0 for a uniform map, ``1 - 1/n`` for a single bright pixel.
``entropy``
    Shannon entropy of ``p`` divided by ``log n`` (``0 log 0 = 0``), in [0, 1]: 1 = uniform,
    0 = a single pixel.
``share_50``, ``share_90``
    ``k / n`` for the smallest k whose top-k pixels hold at least 50% (90%) of the mass, i.e. the
    ceiling convention: a uniform map with n pixels gives ``ceil(q n) / n``. Comparisons allow a
    relative float tolerance of 1e-9 so that exact shares are not lost to rounding.
``concentration_auc``
    Area under the mass-concentration curve ``C(k/n) = top-k mass``, taken as the right Riemann
    sum ``(1/n) sum_{k=1..n} C(k/n)``: 1 for a single pixel, ``1/2 + 1/(2n)`` for a uniform map.
    It equals ``(1 + gini) / 2 + 1 / (2n)`` exactly; it is kept because the study reports it.
``spread``
    Radius of gyration ``sqrt(sum p_i |x_i - c|^2)`` (pixel coordinates, ``c`` the mass centroid)
    divided by that of a uniform map of the same shape, ``sqrt((H^2 - 1)/12 + (W^2 - 1)/12)``:
    0 for a single pixel, 1 for a uniform map, about ``(r / sqrt 2) / R_uniform`` for a disc of
    radius r.
``components``
    Number of 8-connected components of the pixels strictly above the threshold (scikit-image's
    foreground convention ``h > t``). ``threshold`` is a scikit-image method name (``"otsu"``,
    ``"li"``, ``"yen"``, ``"mean"``, computed per map) or a float ``f`` in [0, 1] meaning
    ``min + f (max - min)``. A flat nonzero map has no threshold; its whole support is one
    component.

A map with zero total mass has no distribution: every score is NaN (documented outcome, so a table
of many images keeps its rows). Negative or non-finite values, and maps of fewer than two pixels,
raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.ndimage
import scipy.stats
import skimage.filters

from robustmap.schema import COMPACTNESS_SCORES as SCORE_NAMES

THRESHOLD_METHODS = {
    "otsu": skimage.filters.threshold_otsu,
    "li": skimage.filters.threshold_li,
    "yen": skimage.filters.threshold_yen,
    "mean": skimage.filters.threshold_mean,
}

_SHARE_RTOL = 1e-9
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def threshold_value(heatmap: np.ndarray, threshold: str | float) -> float:
    """Threshold of one non-flat 2-D map: a scikit-image method name or a fraction of the range.

    The foreground is ``heatmap > threshold_value(...)``. Callers handle flat maps themselves
    (no threshold separates equal values).
    """
    if isinstance(threshold, str):
        try:
            method = THRESHOLD_METHODS[threshold]
        except KeyError:
            raise ValueError(
                f"unknown threshold {threshold!r}; use one of {sorted(THRESHOLD_METHODS)} "
                "or a float in [0, 1]"
            ) from None
        return float(method(heatmap))
    fraction = float(threshold)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a float threshold is a fraction of the range in [0, 1], got {fraction}")
    low, high = float(heatmap.min()), float(heatmap.max())
    return low + fraction * (high - low)


def scores(heatmap: np.ndarray, *, threshold: str | float = "otsu") -> dict[str, float]:
    """All compactness scores of one heatmap ``[H, W]`` (nonnegative); see the module docstring."""
    values = _checked_map(heatmap)
    total = float(values.sum())
    if total == 0.0:
        return {name: math.nan for name in SCORE_NAMES}
    descending = np.sort(values, axis=None)[::-1]
    top_mass = np.cumsum(descending) / total  # C(k/n) for k = 1..n
    gini = _gini(descending[::-1], total)
    return {
        "gini": gini,
        "entropy": _normalised_entropy(descending / total),
        "share_50": _share_holding(top_mass, 0.5),
        "share_90": _share_holding(top_mass, 0.9),
        "concentration_auc": float(top_mass.mean()),
        "spread": _normalised_radius_of_gyration(values, total),
        "components": float(_count_components(values, threshold)),
    }


def score_table(
    heatmaps: np.ndarray,
    *,
    ids: Sequence,
    kind: str,
    threshold: str | float = "otsu",
) -> pd.DataFrame:
    """One row of scores per heatmap.

    Args:
        heatmaps: float array ``[N, H, W]``, nonnegative.
        ids: N image identifiers, written to the ``image_id`` column in the given order.
        kind: heatmap kind (e.g. ``"saliency"``, ``"gradcam"``), written to the ``heatmap`` column.
        threshold: threshold for ``components`` (see the module docstring).

    Returns:
        DataFrame with columns ``image_id, heatmap, *SCORE_NAMES`` (scores float64).
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be [N, H, W], got shape {heatmaps.shape}")
    ids = list(ids)
    if len(ids) != len(heatmaps):
        raise ValueError(f"{len(ids)} ids for {len(heatmaps)} heatmaps")
    rows = [scores(heatmap, threshold=threshold) for heatmap in heatmaps]
    table = pd.DataFrame(rows, columns=list(SCORE_NAMES), dtype="float64")
    table.insert(0, "heatmap", pd.Series([kind] * len(ids), dtype="object"))
    table.insert(0, "image_id", pd.Series(ids, dtype="object"))
    return table


def agreement(
    saliency: np.ndarray,
    cam: np.ndarray,
    *,
    top: float = 0.2,
    ids: Sequence | None = None,
) -> pd.DataFrame:
    """Per-image agreement of two heatmap kinds over the same images.

    Args:
        saliency: ``[N, H, W]`` heatmaps.
        cam: ``[N, H, W]`` heatmaps of the same images (same shape).
        top: fraction of pixels in each top mask: ``ceil(top * n)`` pixels (at least one), the
            largest values, ties broken by lower flat pixel index (deterministic).
        ids: optional N identifiers, written to an ``image_id`` first column.

    Returns:
        DataFrame with ``spearman`` (Spearman rank correlation of the pixel values) and
        ``iou_top{100*top}`` (intersection over union of the two top masks; e.g. ``iou_top20``).
        Both are NaN when either map is constant (e.g. an all-zero Grad-CAM): ranks are then
        undefined and a top mask would be the tie-break alone.
    """
    saliency, cam = np.asarray(saliency), np.asarray(cam)
    if saliency.ndim != 3 or saliency.shape != cam.shape:
        raise ValueError(
            f"need two [N, H, W] arrays of one shape, got {saliency.shape}, {cam.shape}"
        )
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top must be in (0, 1], got {top}")
    iou_name = f"iou_top{round(100 * top)}"
    rows = [
        {"spearman": math.nan, iou_name: math.nan}
        if _is_flat(a) or _is_flat(b)
        else {"spearman": _spearman(a.ravel(), b.ravel()), iou_name: _top_mask_iou(a, b, top)}
        for a, b in zip(saliency, cam, strict=True)
    ]
    table = pd.DataFrame(rows, columns=["spearman", iou_name], dtype="float64")
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(table):
            raise ValueError(f"{len(ids)} ids for {len(table)} heatmaps")
        table.insert(0, "image_id", pd.Series(ids, dtype="object"))
    return table


def top_mask(heatmap: np.ndarray, top: float) -> np.ndarray:
    """Boolean mask of the ``ceil(top * n)`` largest pixels, ties to the lower flat index."""
    flat = np.asarray(heatmap, dtype=np.float64).ravel()
    count = max(1, math.ceil(top * flat.size * (1.0 - _SHARE_RTOL)))  # 0.2 * 50 -> 10, not 11
    order = np.argsort(-flat, kind="stable")  # stable sort keeps lower indices first on ties
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(np.shape(heatmap))


def _checked_map(heatmap: np.ndarray) -> np.ndarray:
    values = np.asarray(heatmap, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"a heatmap is 2-D [H, W], got shape {values.shape}")
    if values.size < 2:
        raise ValueError("a heatmap needs at least two pixels")
    if not np.all(np.isfinite(values)):
        raise ValueError("heatmap has non-finite values")
    if values.min() < 0:
        raise ValueError("heatmap has negative values; scores need a nonnegative mass")
    return values


def _gini(ascending: np.ndarray, total: float) -> float:
    n = ascending.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(np.dot(2.0 * ranks - n - 1.0, ascending) / (n * total))


def _normalised_entropy(masses: np.ndarray) -> float:
    positive = masses[masses > 0]
    entropy = -float(np.dot(positive, np.log(positive)))
    return max(0.0, entropy / math.log(masses.size))  # clamp -0.0 / rounding below zero


def _share_holding(top_mass: np.ndarray, quantile: float) -> float:
    """Smallest k/n whose top-k pixels hold ``quantile`` of the mass (ceiling convention)."""
    k = int(np.searchsorted(top_mass, quantile * (1.0 - _SHARE_RTOL), side="left")) + 1
    return min(k, top_mass.size) / top_mass.size


def _normalised_radius_of_gyration(values: np.ndarray, total: float) -> float:
    height, width = values.shape
    rows = np.arange(height, dtype=np.float64)
    cols = np.arange(width, dtype=np.float64)
    row_mass = values.sum(axis=1) / total
    col_mass = values.sum(axis=0) / total
    # The squared radius separates into the row variance plus the column variance.
    row_variance = np.dot(row_mass, (rows - np.dot(row_mass, rows)) ** 2)
    col_variance = np.dot(col_mass, (cols - np.dot(col_mass, cols)) ** 2)
    uniform_squared = (height**2 - 1) / 12.0 + (width**2 - 1) / 12.0
    return float(math.sqrt(max(0.0, row_variance + col_variance) / uniform_squared))


def _count_components(values: np.ndarray, threshold: str | float) -> int:
    if values.min() == values.max():
        return 1  # flat nonzero map: its support is the whole grid, one piece
    above = values > threshold_value(values, threshold)
    _, count = scipy.ndimage.label(above, structure=_EIGHT_CONNECTED)
    return int(count)


def _is_flat(heatmap: np.ndarray) -> bool:
    return bool(heatmap.min() == heatmap.max())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(scipy.stats.spearmanr(a, b).statistic)


def _top_mask_iou(a: np.ndarray, b: np.ndarray, top: float) -> float:
    mask_a, mask_b = top_mask(a, top), top_mask(b, top)
    return float(np.logical_and(mask_a, mask_b).sum() / np.logical_or(mask_a, mask_b).sum())
