"""Predictions join every label row; accuracy counts every status; shards cover correct images."""

import keras
import numpy as np
import pandas as pd
import pytest

from robustmap import predict, shards


def label_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": ["val_0", "val_1", "val_2", "val_3", "val_4"],
            "imagenet_index": pd.array([2, 0, None, 1, 3], dtype="Int64"),
            "status": ["ok", "converted", "unannotated", "unreadable", "ok"],
            "reason": ["", "converted from L", "no annotation", "truncated", ""],
        }
    )


# Logits of the four readable rows (val_0, val_1, val_2, val_4) over 6 classes.
LOGITS = np.array(
    [
        [0.0, 1.0, 5.0, 2.0, 0.5, 0.1],  # label 2: correct, margin 3
        [1.0, 4.0, 0.0, 0.0, 0.0, 0.0],  # label 0: wrong (top1 = 1), margin -3, in top 5
        [9.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # unannotated: classified, never scored
        [5.0, 4.0, 3.0, 0.0, 2.0, 1.0],  # label 3: wrong, margin -5, not in top 5
    ],
    np.float32,
)
READABLE = np.array([True, True, True, False, True])


def test_prediction_table_keeps_every_row_and_scores_only_scoreable_ones():
    table = predict.prediction_table(label_rows(), LOGITS, READABLE)
    assert table["image_id"].tolist() == ["val_0", "val_1", "val_2", "val_3", "val_4"]
    assert table["top1"].tolist() == [2, 1, 0, pd.NA, 0]
    assert table.loc[0, ["top1", "top2", "top3", "top4", "top5"]].tolist() == [2, 3, 1, 4, 5]
    np.testing.assert_allclose(table["logit_margin"], [3.0, -3.0, np.nan, np.nan, -5.0])
    assert table["correct"].tolist() == [True, False, pd.NA, pd.NA, False]
    assert table["in_top5"].tolist() == [True, True, pd.NA, pd.NA, False]
    assert table.loc[3, "reason"] == "truncated"


def test_accuracy_counts_scored_images_and_every_status():
    table = predict.prediction_table(label_rows(), LOGITS, READABLE)
    summary = predict.accuracy(table)
    assert summary["images"] == 5 and summary["scored"] == 3 and summary["correct"] == 1
    assert summary["top1"] == pytest.approx(1 / 3) and summary["top5"] == pytest.approx(2 / 3)
    assert summary["by_status"] == {"converted": 1, "ok": 2, "unannotated": 1, "unreadable": 1}


def test_logits_in_batches_pads_the_last_batch_without_changing_results():
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(6)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).random((7, 4, 4, 3), dtype=np.float32)
    seen = []
    batched = predict.logits_in_batches(
        model, images, batch_size=3, progress=lambda done, total: seen.append((done, total))
    )
    whole = model.predict(images, verbose=0)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
    assert seen == [(3, 7), (6, 7), (7, 7)]
    empty = predict.logits_in_batches(model, images[:0], batch_size=3)
    assert empty.shape == (0, 6) and empty.dtype == np.float32


def test_shards_hold_every_correct_image_once_in_fixed_sizes():
    predictions = pd.DataFrame(
        {
            "image_id": [f"val_{i}" for i in range(11)],
            "imagenet_index": pd.array(range(11), dtype="Int64"),
            "correct": pd.array([True, False, None] + [True] * 8, dtype="boolean"),
        }
    )
    table = shards.shard_table(predictions, shard_size=4)
    assert table["image_id"].tolist() == ["val_0"] + [f"val_{i}" for i in range(3, 11)]
    assert table.groupby("shard").size().to_dict() == {"000": 4, "001": 4, "002": 1}
