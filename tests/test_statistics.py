"""Tests of robustmap.statistics on constructed pairs whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from test_aggregate import synthetic_study

from robustmap import aggregate, statistics

INF = math.inf


def paired_table(uniform, object_, background=None, *, model="m", correct=None, extra=None):
    """A minimal per-image table: one model, given epsilons per search."""
    n = len(uniform)
    table = pd.DataFrame(
        {
            "model": model,
            "image_id": [f"i{k:03d}" for k in range(n)],
            "correct": pd.array(np.ones(n, bool) if correct is None else correct, "boolean"),
            "epsilon_uniform": np.asarray(uniform, float),
            "epsilon_object": np.asarray(object_, float),
            "epsilon_background": np.asarray(
                np.full(n, np.nan) if background is None else background, float
            ),
        }
    )
    return table.assign(**(extra or {}))


def test_a_constant_ratio_gives_that_median_ratio_and_a_point_ci():
    uniform = np.geomspace(1e-3, 1e-1, 12)
    table = paired_table(uniform, uniform * 0.5)
    row = statistics.search_pairs(table, bootstrap=200).iloc[0]
    assert (row["a"], row["b"], row["n"]) == ("object", "uniform", 12)
    assert row["estimate"] == pytest.approx(0.5)
    assert row["ci_low"] == pytest.approx(0.5) and row["ci_high"] == pytest.approx(0.5)
    assert row["statistic"] == 0.0  # every log ratio negative: no positive rank
    assert row["p_value"] == pytest.approx(2 / 2**12)  # exact two-sided null probability


def test_wilcoxon_sign_follows_the_constructed_direction():
    rng = np.random.default_rng(1)
    uniform = np.exp(rng.normal(-4, 1, 40))
    larger = uniform * np.exp(rng.normal(0.7, 0.3, 40))  # object needs a bigger step
    row = statistics.search_pairs(paired_table(uniform, larger), bootstrap=500).iloc[0]
    log_ratio = np.log(larger) - np.log(uniform)
    expected = scipy.stats.wilcoxon(log_ratio)
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue) and row["p_value"] < 1e-6
    assert row["estimate"] == pytest.approx(np.median(np.exp(log_ratio)))
    assert 1 < row["ci_low"] < row["estimate"] < row["ci_high"]


def test_censored_pairs_are_left_out_and_counted():
    uniform = [0.1, 0.2, INF, 0.4, 0.5, np.nan]
    object_ = [0.05, 0.1, 0.2, INF, 0.25, 0.1]
    row = statistics.search_pairs(paired_table(uniform, object_), bootstrap=100).iloc[0]
    assert row["n"] == 3
    assert "2 pairs with a censored epsilon left out" in row["note"]
    assert row["estimate"] == pytest.approx(0.5)


def test_bootstrap_is_reproducible_for_a_seed():
    labels, predictions, epsilons, compactness, _ = synthetic_study(classes=6, per_class=8)
    table = aggregate.per_image(labels, predictions, epsilons, compactness)
    first = statistics.statistics_table(table, bootstrap=300, seed=7)
    again = statistics.statistics_table(table, bootstrap=300, seed=7)
    other = statistics.statistics_table(table, bootstrap=300, seed=8)
    pd.testing.assert_frame_equal(first, again)
    tested = first["ci_low"].notna()
    assert not np.allclose(first.loc[tested, "ci_low"], other.loc[tested, "ci_low"])
    np.testing.assert_array_equal(first["p_value"], other["p_value"])  # seed only moves the CI
    assert list(first.columns) == list(statistics.COLUMNS)
    assert set(first["test"]) == {"search_pair", "compactness_spearman", "model_pair"}
    # a row does not depend on which other models are in the table
    alone = statistics.statistics_table(table[table["model"] == "m1"], bootstrap=300, seed=7)
    pd.testing.assert_frame_equal(
        alone[alone["test"] == "search_pair"],
        first[(first["test"] == "search_pair") & (first["model"] == "m1")].reset_index(drop=True),
    )


def test_spearman_ranks_censored_epsilons_highest():
    epsilon = np.array([0.01, 0.02, 0.03, 0.04, INF, INF])
    increasing = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    table = paired_table(epsilon, epsilon, extra={"gradcam_gini": increasing})
    row = statistics.compactness_correlations(table, bootstrap=200).iloc[0]
    assert (row["a"], row["b"], row["n"]) == ("gradcam_gini", "epsilon_uniform", 6)
    expected = scipy.stats.spearmanr(increasing, [1, 2, 3, 4, 5.5, 5.5]).statistic
    assert row["estimate"] == pytest.approx(expected) and row["estimate"] > 0.95
    reversed_ = paired_table(epsilon, epsilon, extra={"gradcam_gini": increasing[::-1]})
    row = statistics.compactness_correlations(reversed_, bootstrap=200).iloc[0]
    assert row["estimate"] == pytest.approx(-expected)
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"] <= 0


def test_model_pairs_use_only_images_every_model_got_right():
    uniform_a = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    right = np.array([True, True, True, True, True, False])
    a = paired_table(uniform_a, uniform_a, model="a")
    b = paired_table(uniform_a * 2, uniform_a, model="b", correct=right)
    b.loc[~right, "epsilon_uniform"] = np.nan
    row = statistics.model_pairs(pd.concat([a, b]), bootstrap=100).iloc[0]
    assert (row["model"], row["a"], row["b"], row["n"]) == ("all", "a", "b", 5)
    assert row["estimate"] == pytest.approx(0.5)
    assert row["note"].startswith("5 images correct for every model")


def test_nothing_to_test_gives_a_row_with_a_reason():
    row = statistics.search_pairs(paired_table([INF, INF], [0.1, INF]), bootstrap=100).iloc[0]
    assert row["n"] == 0 and np.isnan(row["p_value"]) and "no pair to test" in row["note"]
