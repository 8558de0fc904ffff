"""Does the model look where a human would? Heatmaps scored against human bounding boxes.

Pure numpy: every function takes heatmaps ``[N, H, W]`` (negative values clipped to 0: only
evidence *for* the class counts) and boxes ``[N, 4]`` as ``(x0, y0, x1, y1)``, inclusive pixel
coordinates with x the column, as Tiny-ImageNet's ``val_annotations.txt`` writes them.

Scores (one row per image):

``pointing_hit``
    The pointing game: 1 when a maximum-heat pixel (any of them, on ties) lies in the box grown
    by ``tolerance`` pixels on every side, else 0; nan for an all-zero map (no maximum to point).
``energy_in_box``
    Heat inside the box over all heat; nan for an all-zero map. Its chance level is
    ``box_fraction``: a uniform map puts exactly that share inside.
``rank_accuracy``
    Of the K = box-area hottest pixels, the share inside the box. Ties at the K-th value are
    shared out in proportion (the expectation over random tie-breaking), so the score does not
    depend on pixel order: a uniform map scores ``box_fraction``.
``auc``
    ROC AUC of heat as a score for box membership, ties counted half (the Mann-Whitney U over
    n_in x n_out); 0.5 is chance, nan when the box covers the whole image.
``box_fraction``
    Box area over image area: the chance level of ``energy_in_box`` and of ``pointing_hit``
    (tolerance 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from robustmap.schema import BOX_OK, LOCALISATION_COLUMNS, LOCALISATION_SCORES, NO_BOX


def localisation_scores(
    heatmaps: np.ndarray, boxes: np.ndarray, *, tolerance: int = 0
) -> pd.DataFrame:
    """Localisation scores of every heatmap against its box: one row per image, one column per
    :data:`robustmap.schema.LOCALISATION_SCORES`.

    Args:
        heatmaps: float [N, H, W]; negative values are clipped to 0.
        boxes: int [N, 4] ``(x0, y0, x1, y1)``, inclusive, x = column, each inside the frame.
        tolerance: pixels added to every side of the box for the pointing game only.

    Raises:
        ValueError: shapes disagree, or a box is empty, reversed or outside the frame.
    """
    heatmaps = np.clip(np.asarray(heatmaps, dtype=np.float64), 0.0, None)
    boxes = np.asarray(boxes)
    _check(heatmaps, boxes, tolerance)
    inside = box_masks(boxes, heatmaps.shape[1:])
    grown = box_masks(grow(boxes, tolerance, heatmaps.shape[1:]), heatmaps.shape[1:])
    rows = [
        _scores(heat, box, near) for heat, box, near in zip(heatmaps, inside, grown, strict=True)
    ]
    return pd.DataFrame(rows, columns=list(LOCALISATION_SCORES)).astype("float64")


def localisation_table(
    image_ids: np.ndarray,
    maps: dict[str, np.ndarray],
    boxes: np.ndarray,
    valid: np.ndarray,
    *,
    tolerance: int = 0,
) -> pd.DataFrame:
    """One row per image and heatmap kind: :data:`robustmap.schema.LOCALISATION_COLUMNS`.

    Args:
        image_ids: [N]; maps: heatmap kind -> [N, H, W]; boxes: [N, 4] in the maps' frame;
        valid: [N] bool, False where the image has no valid box (status ``no_box``, every
        score nan: the row is kept, so every correct image appears).
    """
    valid = np.asarray(valid, dtype=bool)
    frames = []
    for heatmap, heat in maps.items():
        scores = pd.DataFrame(
            np.nan, index=range(len(image_ids)), columns=list(LOCALISATION_SCORES)
        )
        if valid.any():
            found = localisation_scores(heat[valid], boxes[valid], tolerance=tolerance)
            scores.loc[valid] = found.to_numpy()
        scores.insert(0, "status", np.where(valid, BOX_OK, NO_BOX))
        scores.insert(0, "heatmap", heatmap)
        scores.insert(0, "image_id", np.asarray(image_ids, dtype=str))
        frames.append(scores)
    if not frames:
        return pd.DataFrame(columns=list(LOCALISATION_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(LOCALISATION_COLUMNS)]


def box_masks(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean [N, H, W] masks of inclusive ``(x0, y0, x1, y1)`` boxes."""
    height, width = shape
    rows = np.arange(height)[None, :, None]
    columns = np.arange(width)[None, None, :]
    x0, y0, x1, y1 = (np.asarray(boxes)[:, k, None, None] for k in range(4))
    return (rows >= y0) & (rows <= y1) & (columns >= x0) & (columns <= x1)


def grow(boxes: np.ndarray, pixels: int, shape: tuple[int, int]) -> np.ndarray:
    """Boxes grown by ``pixels`` on every side, clipped to the frame."""
    height, width = shape
    low = np.maximum(np.asarray(boxes)[:, :2] - pixels, 0)
    high = np.minimum(np.asarray(boxes)[:, 2:] + pixels, [width - 1, height - 1])
    return np.concatenate([low, high], axis=1)


def scale_boxes(boxes: np.ndarray, sizes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inclusive boxes of images of ``sizes`` [N, 2] (width, height) in a resized [H, W] frame.

    A box covers the pixels whose area it overlaps after the resize: the left/top edge rounds
    down, the right/bottom edge up. Same size: the box is unchanged.
    """
    height, width = shape
    boxes = np.asarray(boxes, dtype=np.int64)
    scale = np.column_stack([width / sizes[:, 0], height / sizes[:, 1]]).astype(np.float64)
    low = np.floor(boxes[:, :2] * scale + 1e-9).astype(np.int64)
    high = np.ceil((boxes[:, 2:] + 1) * scale - 1e-9).astype(np.int64) - 1
    high = np.minimum(np.maximum(high, low), [width - 1, height - 1])
    return np.concatenate([low, high], axis=1)


def box_weights(boxes: np.ndarray, shape: tuple[int, int], *, border: int = 0) -> np.ndarray:
    """Search weights of the ``box_object`` kind: float32 [N, H, W], 1 inside each box.

    With ``border`` > 0 the weight falls off linearly outside the box, 1 - d / (border + 1) at
    chessboard distance d from it, reaching 0 beyond ``border`` pixels: a soft edge for a box
    drawn a little tight or loose. ``box_background`` is one minus these weights.
    """
    height, width = shape
    rows = np.arange(height)[None, :, None]
    columns = np.arange(width)[None, None, :]
    x0, y0, x1, y1 = (np.asarray(boxes)[:, k, None, None] for k in range(4))
    dx = np.maximum(np.maximum(x0 - columns, columns - x1), 0)
    dy = np.maximum(np.maximum(y0 - rows, rows - y1), 0)
    distance = np.maximum(dx, dy)
    return np.clip(1.0 - distance / (border + 1), 0.0, 1.0).astype(np.float32)


def _check(heatmaps: np.ndarray, boxes: np.ndarray, tolerance: int) -> None:
    if heatmaps.ndim != 3 or boxes.shape != (len(heatmaps), 4):
        raise ValueError(
            f"expected heatmaps [N, H, W] and boxes [N, 4], got {heatmaps.shape} and {boxes.shape}"
        )
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    height, width = heatmaps.shape[1:]
    x0, y0, x1, y1 = boxes.T
    bad = ~((0 <= x0) & (x0 <= x1) & (x1 < width) & (0 <= y0) & (y0 <= y1) & (y1 < height))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} boxes are empty or outside the {width}x{height} frame, e.g. "
            f"row {first}: {boxes[first].tolist()}"
        )


def _scores(heat: np.ndarray, inside: np.ndarray, near: np.ndarray) -> dict[str, float]:
    total = heat.sum()
    blank = total == 0  # no heat: nothing is pointed at, no energy to share out
    return {
        "pointing_hit": np.nan if blank else float(near[heat == heat.max()].any()),
        "energy_in_box": np.nan if blank else heat[inside].sum() / total,
        "rank_accuracy": _rank_accuracy(heat, inside),
        "auc": _auc(heat, inside),
        "box_fraction": inside.mean(),
    }


def _rank_accuracy(heat: np.ndarray, inside: np.ndarray) -> float:
    """Share inside the box of the K hottest pixels, K = box area, ties shared out evenly."""
    k = int(inside.sum())
    threshold = np.sort(heat, axis=None)[::-1][k - 1]
    above = heat > threshold
    tied = heat == threshold
    slots = k - int(above.sum())  # how many of the tied pixels make the top K
    tied_inside_share = (tied & inside).sum() / tied.sum()
    return float(((above & inside).sum() + slots * tied_inside_share) / k)


def _auc(heat: np.ndarray, inside: np.ndarray) -> float:
    """P(heat inside > heat outside) + half P(equal), from average ranks."""
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_out == 0:
        return np.nan
    ranks = scipy.stats.rankdata(heat, axis=None).reshape(heat.shape)
    u = ranks[inside].sum() - n_in * (n_in + 1) / 2
    return float(u / (n_in * n_out))
