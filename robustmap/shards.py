"""Shards: fixed-size groups of correctly classified images, the unit of one search job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustmap import tables
from robustmap.dataset import load_images


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


def load_shard(
    shards_path: str | Path,
    labels_path: str | Path,
    root: str | Path,
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
    members = members[members["shard"] == shard]
    labels = tables.read_parquet(labels_path).set_index("image_id")
    rows = labels.loc[members["image_id"]].reset_index()
    images = load_images(rows, root, size=image_size)
    return (
        members["image_id"].to_numpy(dtype=str),
        images,
        members["imagenet_index"].to_numpy(dtype=np.int64),
    )
