"""Shards: fixed-size groups of correctly classified images, the unit of one search job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustmap import sources, tables
from robustmap.dataset import READABLE_STATUSES, load_images
from robustmap.localisation import scale_boxes


def shard_table(predictions: pd.DataFrame, *, shard_size: int) -> pd.DataFrame:
    """Split the correctly classified images into consecutive shards of ``shard_size``.

    Returns:
        image_id, imagenet_index, shard (zero-padded string "000", "001", ...) for every correct
        image, in prediction-table order, so the same predictions always give the same shards.
    """
    correct = predictions[predictions["correct"].fillna(False).astype(bool)]
    positions = np.arange(len(correct))
    return pd.DataFrame(
        {
            "image_id": correct["image_id"].to_numpy(),
            "imagenet_index": correct["imagenet_index"].astype("int64").to_numpy(),
            "shard": [f"{p // shard_size:03d}" for p in positions],
        }
    )


def load_labelled_images(
    labels_path: str | Path,
    manifest_path: str | Path,
    image_ids: list[str],
    *,
    image_size: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``image_ids`` (in that order) with their ImageNet-1k labels.

    Returns:
        images float32 [N, H, W, 3] in [0, 1], labels int64 [N].
    """
    labels = tables.read_parquet(labels_path).set_index("image_id")
    rows = labels.loc[list(image_ids)].reset_index()
    images = load_images(rows, sources.root_of(manifest_path), size=image_size)
    return images, rows["imagenet_index"].to_numpy(dtype=np.int64)


def load_shard(
    shards_path: str | Path,
    labels_path: str | Path,
    manifest_path: str | Path,
    shard: str,
    *,
    image_size: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of one shard.

    Returns:
        image_ids str [N], images float32 [N, H, W, 3] in [0, 1], labels int64 [N]
        (ImageNet-1k indices), in shard-table order.
    """
    members = tables.read_parquet(shards_path)
    image_ids = members.loc[members["shard"] == shard, "image_id"].to_numpy(dtype=str)
    images, labels = load_labelled_images(
        labels_path, manifest_path, list(image_ids), image_size=image_size
    )
    return image_ids, images, labels


def load_boxes(
    labels_path: str | Path, image_ids: list[str], *, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Human bounding boxes of ``image_ids`` in the frame of their loaded [H, W] arrays.

    Returns:
        boxes int64 [N, 4] (x0, y0, x1, y1 inclusive, scaled from each image's own size to
        ``shape``; zeros where there is none) and valid bool [N] (the label table's
        ``box_status`` is ``ok``).
    """
    labels = tables.read_parquet(labels_path)
    files = labels[labels["status"].isin(READABLE_STATUSES)].set_index("image_id")
    rows = files.loc[list(image_ids)]
    valid = (rows["box_status"] == "ok").to_numpy()
    columns = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]
    raw = rows[columns].fillna(0).to_numpy(dtype=np.int64)
    sizes = rows[["width", "height"]].fillna(1).to_numpy(dtype=np.int64)
    boxes = np.where(valid[:, None], scale_boxes(raw, sizes, shape), 0)
    return boxes, valid
