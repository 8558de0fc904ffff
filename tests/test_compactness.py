"""Compactness scores and heatmap agreement against maps with known answers."""

import math

import numpy as np
import pytest

from robustmap import compactness
from robustmap.compactness import SCORE_NAMES, agreement, score_table, scores

SIZE = 64
UNIFORM_RADIUS = math.sqrt(2 * (SIZE**2 - 1) / 12)  # radius of gyration of a uniform 64 x 64 map


def disc(radius: float, centre: tuple[float, float], size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    return inside.astype(np.float64)


def test_single_bright_pixel():
    heatmap = np.zeros((SIZE, SIZE))
    heatmap[10, 40] = 3.5
    n = heatmap.size
    result = scores(heatmap)
    assert result["gini"] == pytest.approx(1 - 1 / n, abs=1e-12)
    assert result["entropy"] == 0.0
    assert result["share_50"] == 1 / n
    assert result["share_90"] == 1 / n
    assert result["concentration_auc"] == 1.0
    assert result["spread"] == 0.0
    assert result["components"] == 1


def test_uniform_map():
    heatmap = np.full((SIZE, SIZE), 0.7)
    result = scores(heatmap)
    n = heatmap.size
    assert result["gini"] == pytest.approx(0.0, abs=1e-12)
    assert result["entropy"] == pytest.approx(1.0, abs=1e-12)
    assert result["share_50"] == 0.5
    assert result["share_90"] == math.ceil(0.9 * n) / n
    assert result["concentration_auc"] == pytest.approx(0.5 + 1 / (2 * n), abs=1e-12)
    assert result["spread"] == pytest.approx(1.0, abs=1e-12)
    assert result["components"] == 1


def test_uniform_share_uses_the_ceiling_on_odd_sizes():
    result = scores(np.ones((5, 5)))
    assert result["share_50"] == 13 / 25
    assert result["share_90"] == 23 / 25


def test_centred_disc_of_known_radius():
    radius = 20.0
    centre = ((SIZE - 1) / 2, (SIZE - 1) / 2)
    heatmap = disc(radius, centre)
    area = int(heatmap.sum())
    n = heatmap.size
    result = scores(heatmap)

    # A binary map of k pixels: Gini 1 - k/n, entropy log k / log n, top shares ceil(q k) / n.
    assert result["gini"] == pytest.approx(1 - area / n, abs=1e-12)
    assert result["entropy"] == pytest.approx(math.log(area) / math.log(n), abs=1e-12)
    assert result["share_50"] == math.ceil(0.5 * area) / n
    assert result["share_90"] == math.ceil(0.9 * area) / n
    assert abs(area - math.pi * radius**2) < 2 * math.pi * radius  # Gauss circle bound
    assert result["components"] == 1

    # Exact radius of gyration on the pixel grid (the disc is centred: centroid = centre) ...
    rows, cols = np.nonzero(heatmap)
    grid_radius = math.sqrt(np.mean((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2))
    assert result["spread"] == pytest.approx(grid_radius / UNIFORM_RADIUS, rel=1e-12)
    # ... and within 0.5% of the continuous disc's r / sqrt(2).
    continuous = (radius / math.sqrt(2)) / UNIFORM_RADIUS
    assert result["spread"] == pytest.approx(continuous, rel=5e-3)


def test_two_separated_blobs_are_two_components_and_spread_wider():
    one_blob = disc(6, (16, 16))
    two_blobs = one_blob + disc(6, (47, 47))
    single, double = scores(one_blob), scores(two_blobs)
    assert single["components"] == 1
    assert double["components"] == 2
    assert double["spread"] > single["spread"]
    # Centroids 31 * sqrt(2) apart: the pair's squared radius adds (distance / 2)^2.
    blob_radius = single["spread"] * UNIFORM_RADIUS
    expected = math.sqrt(blob_radius**2 + 2 * (31 / 2) ** 2) / UNIFORM_RADIUS
    assert double["spread"] == pytest.approx(expected, rel=1e-12)


def test_components_use_eight_connectivity_and_the_threshold():
    heatmap = np.zeros((8, 8))
    heatmap[2, 2] = heatmap[3, 3] = 1.0  # diagonal neighbours: one 8-connected component
    heatmap[6, 6] = 1.0
    heatmap[0, 7] = 0.1  # below a 50% threshold
    assert scores(heatmap, threshold=0.5)["components"] == 2
    assert scores(heatmap, threshold=0.05)["components"] == 3


def test_concentration_auc_is_an_affine_function_of_gini():
    heatmap = np.random.default_rng(0).gamma(0.5, size=(20, 30))
    result = scores(heatmap)
    n = heatmap.size
    assert result["concentration_auc"] == pytest.approx(
        (1 + result["gini"]) / 2 + 1 / (2 * n), abs=1e-12
    )


def test_scores_are_scale_invariant():
    heatmap = np.random.default_rng(1).random((16, 24))
    assert scores(heatmap) == pytest.approx(scores(1e-3 * heatmap), rel=1e-9)


def test_zero_map_gives_nan_and_bad_maps_raise():
    result = scores(np.zeros((8, 8)))
    assert set(result) == set(SCORE_NAMES)
    assert all(math.isnan(value) for value in result.values())
    with pytest.raises(ValueError, match="negative"):
        scores(np.array([[0.0, -1.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        scores(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        scores(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="unknown threshold"):
        scores(np.eye(4), threshold="triangle-ish")


def test_score_table_has_one_row_per_image():
    heatmaps = np.stack([np.eye(8), np.ones((8, 8)), np.zeros((8, 8))])
    table = score_table(heatmaps, ids=["a", "b", "c"], kind="gradcam")
    assert list(table.columns) == ["image_id", "heatmap", *SCORE_NAMES]
    assert table["image_id"].tolist() == ["a", "b", "c"]
    assert (table["heatmap"] == "gradcam").all()
    assert table.loc[0, "share_50"] == 4 / 64
    assert table.loc[1, "gini"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc[2].drop(["image_id", "heatmap"]).isna().all()
    with pytest.raises(ValueError, match="ids"):
        score_table(heatmaps, ids=["a"], kind="gradcam")


def test_agreement_of_identical_and_complementary_maps():
    ramp = np.arange(100, dtype=np.float64).reshape(10, 10)
    saliency = np.stack([ramp, ramp])
    cam = np.stack([ramp, ramp.max() - ramp])
    table = agreement(saliency, cam, ids=["same", "opposite"])
    assert list(table.columns) == ["image_id", "spearman", "iou_top20"]
    assert table.loc[0, "spearman"] == pytest.approx(1.0)
    assert table.loc[0, "iou_top20"] == 1.0
    assert table.loc[1, "spearman"] == pytest.approx(-1.0)
    assert table.loc[1, "iou_top20"] == 0.0


def test_agreement_iou_counts_pixels_and_breaks_ties_by_index():
    a = np.zeros((1, 1, 10))
    a[0, 0, [0, 1]] = 1.0  # top 20% of 10 pixels = 2 pixels: {0, 1}
    b = np.zeros((1, 1, 10))
    b[0, 0, 1] = 1.0  # one clear winner, then a tie of zeros: the lowest index, 0, joins
    assert agreement(a, b)["iou_top20"].item() == 1.0
    c = np.zeros((1, 1, 10))
    c[0, 0, [1, 5]] = 1.0  # {1, 5} vs {0, 1}: IoU 1/3
    assert agreement(a, c)["iou_top20"].item() == pytest.approx(1 / 3)
    assert (
        compactness.top_mask(np.zeros((2, 5)), 0.2).ravel().tolist() == [True, True] + [False] * 8
    )


def test_agreement_with_a_constant_map_is_undefined():
    flat = np.ones((1, 4, 4))
    ramp = np.arange(16.0).reshape(1, 4, 4)
    for table in (agreement(flat, ramp), agreement(ramp, np.zeros((1, 4, 4)))):
        assert table.isna().all(axis=None)
