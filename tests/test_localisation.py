"""Localisation scores against boxes, on constructed heatmaps with exact answers."""

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics

from robustmap import measure
from robustmap.localisation import box_masks, localisation_scores
from robustmap.schema import LOCALISATION_COLUMNS, LOCALISATION_SCORES, NO_BOX

BOX = np.array([[2, 1, 4, 3]])  # x0, y0, x1, y1 inclusive: columns 2..4, rows 1..3 (9 pixels)
SHAPE = (6, 8)  # H, W


def heat_inside_box() -> np.ndarray:
    heat = np.zeros((1, *SHAPE))
    heat[0, 1:4, 2:5] = np.arange(1, 10).reshape(3, 3)
    return heat


def test_box_masks_are_inclusive_with_x_the_column():
    mask = box_masks(BOX, SHAPE)[0]
    assert mask.sum() == 9
    assert mask[1, 2] and mask[3, 4] and not mask[2, 1] and not mask[4, 4] and not mask[1, 5]


def test_mass_only_inside_the_box_scores_perfectly():
    row = localisation_scores(heat_inside_box(), BOX).iloc[0]
    assert row.to_dict() == {
        "pointing_hit": 1.0,
        "energy_in_box": 1.0,
        "rank_accuracy": 1.0,
        "auc": 1.0,
        "box_fraction": 9 / 48,
    }


def test_a_uniform_heatmap_scores_chance_exactly():
    row = localisation_scores(np.full((1, *SHAPE), 0.7), BOX).iloc[0]
    assert row["energy_in_box"] == row["box_fraction"] == 9 / 48
    assert row["auc"] == 0.5
    assert row["rank_accuracy"] == pytest.approx(9 / 48)  # ties shared out evenly
    assert row["pointing_hit"] == 1.0  # every pixel is a maximum, some lie in the box


def test_a_peak_one_pixel_outside_needs_tolerance_one():
    heat = np.zeros((1, *SHAPE))
    heat[0, 2, 5] = 1.0  # column 5: one right of the box
    assert localisation_scores(heat, BOX).iloc[0]["pointing_hit"] == 0.0
    assert localisation_scores(heat, BOX, tolerance=1).iloc[0]["pointing_hit"] == 1.0
    heat[0, 2, 6] = 1.0  # a tie two pixels out does not spoil the hit: any maximum counts
    assert localisation_scores(heat, BOX, tolerance=1).iloc[0]["pointing_hit"] == 1.0


def test_negative_heat_is_clipped_and_an_all_zero_map_has_no_energy():
    heat = -heat_inside_box()
    row = localisation_scores(heat, BOX).iloc[0]
    assert np.isnan(row["energy_in_box"]) and np.isnan(row["pointing_hit"])
    assert row["auc"] == 0.5


def test_auc_and_rank_accuracy_on_random_maps_match_independent_computations():
    rng = np.random.default_rng(0)
    heat = rng.integers(0, 4, size=(5, *SHAPE)).astype(float)  # many ties
    boxes = np.array([[0, 0, 3, 2], [1, 1, 7, 5], [5, 0, 5, 5], [0, 0, 7, 0], [2, 2, 3, 3]])
    table = localisation_scores(heat, boxes)
    masks = box_masks(boxes, SHAPE)
    for k in range(5):
        expected = sklearn.metrics.roc_auc_score(masks[k].ravel(), heat[k].ravel())
        assert table.loc[k, "auc"] == pytest.approx(expected, abs=1e-12)
        # rank accuracy = expectation over random tie-breaks: average many shuffled orders
        size = int(masks[k].sum())
        draws = []
        for seed in range(400):
            jitter = np.random.default_rng(seed).random(heat[k].size) * 1e-6
            top = np.argsort(-(heat[k].ravel() + jitter))[:size]
            draws.append(masks[k].ravel()[top].mean())
        assert table.loc[k, "rank_accuracy"] == pytest.approx(np.mean(draws), abs=0.02)
    assert list(table.columns) == list(LOCALISATION_SCORES)


@pytest.mark.parametrize("box", [[4, 1, 2, 3], [0, 0, 8, 3], [-1, 0, 2, 2], [0, 3, 2, 6]], ids=str)
def test_invalid_boxes_are_refused(box):
    with pytest.raises(ValueError, match="outside the 8x6 frame"):
        localisation_scores(np.ones((1, *SHAPE)), np.array([box]))


def write_labels(path) -> None:
    """Images a, b, c of 16 x 12 pixels; a and c carry a box that becomes :data:`BOX` in the
    heatmaps' 8 x 6 frame, b has none."""
    pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "status": ["ok"] * 3,
            "box_status": ["ok", "missing", "ok"],
            "bbox_x0": [4, None, 4],
            "bbox_y0": [2, None, 2],
            "bbox_x1": [9, None, 9],
            "bbox_y1": [7, None, 7],
            "width": [16] * 3,
            "height": [12] * 3,
        }
    ).to_parquet(path)


def test_localisation_table_scores_each_shard_against_the_scaled_label_boxes(tmp_path):
    labels = tmp_path / "labels.parquet"
    write_labels(labels)
    inside, uniform = heat_inside_box()[0], np.full(SHAPE, 0.7)
    shard_arrays = [
        {
            "image_id": np.array(["a", "b"]),
            "gradcam": np.stack([inside, inside]),
            "saliency": np.stack([uniform, inside]),
        },
        {"image_id": np.array(["c"]), "gradcam": uniform[None], "saliency": inside[None]},
    ]
    table = measure.localisation_table(shard_arrays, labels, tolerance=0)
    assert list(table.columns) == list(LOCALISATION_COLUMNS)
    assert table[["image_id", "heatmap", "status"]].to_numpy().tolist() == [
        ["a", "gradcam", "ok"],
        ["b", "gradcam", NO_BOX],
        ["a", "saliency", "ok"],
        ["b", "saliency", NO_BOX],
        ["c", "gradcam", "ok"],
        ["c", "saliency", "ok"],
    ]
    scores = table.set_index(["image_id", "heatmap"])
    assert scores.loc[("a", "gradcam"), ["energy_in_box", "auc"]].tolist() == [1.0, 1.0]
    assert scores.loc[("c", "saliency"), "energy_in_box"] == 1.0
    for chance in [("a", "saliency"), ("c", "gradcam")]:
        assert scores.loc[chance, ["energy_in_box", "box_fraction"]].tolist() == [9 / 48] * 2
    assert scores.loc["b", list(LOCALISATION_SCORES)].isna().all(axis=None)


def test_localisation_table_passes_the_pointing_tolerance(tmp_path):
    labels = tmp_path / "labels.parquet"
    write_labels(labels)
    heat = np.zeros((1, *SHAPE))
    heat[0, 2, 5] = 1.0  # one column right of the box
    shard = {"image_id": np.array(["a"]), "gradcam": heat, "saliency": heat}
    hits = [
        measure.localisation_table([shard], labels, tolerance=tolerance)["pointing_hit"].tolist()
        for tolerance in (0, 1)
    ]
    assert hits == [[0.0, 0.0], [1.0, 1.0]]


def test_localisation_table_of_no_shard_has_its_columns_and_no_rows(tmp_path):
    labels = tmp_path / "labels.parquet"
    write_labels(labels)
    table = measure.localisation_table([], labels, tolerance=0)
    assert list(table.columns) == list(LOCALISATION_COLUMNS) and len(table) == 0
