"""Clean predictions of one model over the label table, and accuracy by status.

Every label-table row appears in the predictions table. Rows whose image cannot be read keep the
label table's status and reason; readable rows without an ImageNet-1k label (unannotated,
unknown_wnid) are classified but not scored, so ``correct`` is null for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import keras
import numpy as np
import pandas as pd

from robustmap import classes, model_calls
from robustmap.dataset import READABLE_STATUSES, SCOREABLE_STATUSES, load_images

TOP_K = 5
LOG = logging.getLogger(__name__)


def logits_in_batches(
    model: keras.Model,
    images: np.ndarray,
    *,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Logits of ``model`` for ``images``, ``batch_size`` per call (shapes:
    :mod:`robustmap.model_calls`).

    Args:
        images: float32 [N, H, W, 3] in [0, 1].
    Returns:
        float32 [N, C].
    """
    calls = model_calls.compiled(model, images.shape[1:], batch_size)
    n = len(images)
    outputs = []
    for start in range(0, n, batch_size):
        outputs.append(calls.logits(images[start : start + batch_size]))
        if progress is not None:
            progress(min(start + batch_size, n), n)
    return np.concatenate(outputs) if outputs else calls.logits(images)


def prediction_table(
    labels: pd.DataFrame,
    logits: np.ndarray,
    readable: np.ndarray,
) -> pd.DataFrame:
    """Join logits of the readable rows back onto every label-table row.

    Args:
        labels: the label table (``robustmap.dataset.label_table``).
        logits: float32 [R, C] for the R rows where ``readable`` is True, in table order.
        readable: bool [len(labels)].
    Returns:
        One row per label-table row: image_id, imagenet_index, status, reason, top1,
        top1_name (its ImageNet class name), top2..top5, logit_margin (true-class logit minus
        the best other logit; > 0 iff correct), correct.
    """
    n = len(labels)
    top = np.full((n, TOP_K), -1, np.int64)
    margin = np.full(n, np.nan)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
    top[readable] = order
    truth = labels["imagenet_index"].to_numpy(dtype="float64", na_value=np.nan)
    scoreable = readable & labels["status"].isin(SCOREABLE_STATUSES).to_numpy() & ~np.isnan(truth)
    scored = scoreable[readable]  # positions in ``logits`` of the scoreable rows
    # In the logits' dtype (float32 from the model), as the table has always held it.
    margin[np.flatnonzero(readable)[scored]] = model_calls.margin(
        logits[scored], truth[readable][scored], dtype=logits.dtype
    )[0]
    frame = pd.DataFrame(
        {
            "image_id": labels["image_id"].to_numpy(),
            "imagenet_index": labels["imagenet_index"].astype("Int64").to_numpy(),
            "status": labels["status"].to_numpy(),
            "reason": labels["reason"].to_numpy(),
        }
    )
    for k in range(TOP_K):
        frame[f"top{k + 1}"] = pd.array(np.where(readable, top[:, k], None), dtype="Int64")
        if k == 0:  # the prediction readable beside its index
            frame["top1_name"] = pd.Series(
                classes.names_of(frame["top1"].to_numpy(dtype=object, na_value=None)),
                dtype=object,
            )
    frame["logit_margin"] = margin
    correct = pd.array(np.where(scoreable, top[:, 0] == np.nan_to_num(truth, nan=-1), None))
    frame["correct"] = correct.astype("boolean")
    frame["in_top5"] = pd.array(
        np.where(scoreable, (top == np.nan_to_num(truth, nan=-1)[:, None]).any(1), None),
        dtype="boolean",
    )
    return frame


def accuracy(predictions: pd.DataFrame) -> dict:
    """Top-1/top-5 over scoreable images and counts by status (every row counted once)."""
    scored = predictions[predictions["correct"].notna()]
    n = len(scored)
    return {
        "images": int(len(predictions)),
        "scored": n,
        "correct": int(scored["correct"].sum()),
        "top1": float(scored["correct"].mean()) if n else float("nan"),
        "top5": float(scored["in_top5"].mean()) if n else float("nan"),
        "by_status": {
            status: int(count)
            for status, count in predictions["status"].value_counts().sort_index().items()
        },
    }


def predict(
    model: keras.Model,
    labels: pd.DataFrame,
    root: str,
    *,
    batch_size: int = 64,
    image_size: int | None = None,
) -> pd.DataFrame:
    """Classify every readable image of ``labels`` (images under ``root``) with ``model``."""
    readable = labels["status"].isin(READABLE_STATUSES).to_numpy()
    images = load_images(labels, root, size=image_size)
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        LOG.info("predict %s: %d/%d images (%.1f img/s)", model.name, done, total, rate)

    logits = logits_in_batches(model, images, batch_size=batch_size, progress=report)
    return prediction_table(labels, logits, readable)
