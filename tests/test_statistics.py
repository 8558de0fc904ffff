"""Tests of robustmap.statistics on constructed pairs whose answers are known."""

import math

import numpy as np
import pandas as pd
import pingouin
import pytest
import scipy.stats
import statsmodels.stats.multitest
from test_aggregate import synthetic_study

from robustmap import aggregate, kinds, schema, statistics

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
    assert list(first.columns) == list(schema.STATISTICS_COLUMNS)
    assert set(first["test"]) == {
        "search_pair",
        "compactness_spearman",
        "compactness_partial_spearman",
        "model_pair",
    }
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


# ---- multiple testing -----------------------------------------------------------------------

TIED = np.array([0.01, 0.04, 0.03, 0.04, 0.2])


def test_holm_and_bh_on_tied_p_values_by_hand():
    # sorted: .01 .03 .04 .04 .2; Holm: 5p, 4p, 3p, 2p, 1p = .05 .12 .12 .08 .2, running max
    np.testing.assert_allclose(statistics.holm(TIED), [0.05, 0.12, 0.12, 0.12, 0.2])
    # BH: m p / rank = .05 .075 .0667 .05 .2, running min from the top
    np.testing.assert_allclose(statistics.benjamini_hochberg(TIED), [0.05, 0.05, 0.05, 0.05, 0.2])


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_statsmodels(seed):
    p_values = np.random.default_rng(seed).uniform(0, 0.2, 17).round(3)  # rounding makes ties
    for method, ours in (("holm", statistics.holm), ("fdr_bh", statistics.benjamini_hochberg)):
        expected = statsmodels.stats.multitest.multipletests(p_values, method=method)[1]
        np.testing.assert_allclose(ours(p_values), expected, rtol=1e-12)


def test_every_tested_row_is_adjusted_within_its_family():
    labels, predictions, epsilons, compactness, _ = synthetic_study(classes=6, per_class=8)
    table = statistics.statistics_table(
        aggregate.per_image(labels, predictions, epsilons, compactness), bootstrap=100
    )
    assert set(table["family"]) == {
        f"{test}/{model}"
        for test in ("search_pair", "compactness_spearman", "compactness_partial_spearman")
        for model in ("m1", "m2")
    } | {f"model_pair/{search}" for search in kinds.SEARCH_KINDS}
    for _, rows in table[table["p_value"].notna()].groupby("family"):
        p_values = rows["p_value"].to_numpy()
        holm = statsmodels.stats.multitest.multipletests(p_values, method="holm")[1]
        np.testing.assert_allclose(rows["p_holm"], holm, rtol=1e-12)
        np.testing.assert_allclose(rows["q_bh"], statistics.benjamini_hochberg(p_values))
    assert table.loc[table["p_value"].isna(), ["p_holm", "q_bh"]].isna().all().all()
    assert (table.query("test == 'compactness_spearman'").groupby("family").size() == 16).all()


# ---- the margin confound --------------------------------------------------------------------


def confounded(own_signal: float, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Score and epsilon both driven by the clean margin; ``own_signal`` links them directly."""
    rng = np.random.default_rng(seed)
    margin = rng.gamma(2.0, 2.0, n)
    shared = rng.normal(size=n)
    epsilon = np.exp(np.log(margin) + 0.3 * shared)
    score = np.log(margin) + own_signal * shared + 0.3 * rng.normal(size=n)
    epsilon[:20] = INF  # censored images stay in, ranked highest
    table = paired_table(epsilon, epsilon, extra={"gradcam_gini": score})
    return table.assign(logit_margin=margin)


def test_a_score_that_only_tracks_the_margin_loses_its_correlation():
    table = confounded(own_signal=0.0)
    raw = statistics.compactness_correlations(table, bootstrap=200).iloc[0]
    partial = statistics.partial_compactness_correlations(table, bootstrap=200).iloc[0]
    assert raw["estimate"] > 0.6
    assert abs(partial["estimate"]) < 0.1 and partial["ci_low"] < 0 < partial["ci_high"]
    assert (partial["test"], partial["control"], partial["n"]) == (
        "compactness_partial_spearman",
        "clean_margin",
        400,
    )


def test_a_score_with_its_own_signal_keeps_its_partial_correlation():
    partial = statistics.partial_compactness_correlations(confounded(1.0), bootstrap=200).iloc[0]
    assert partial["estimate"] > 0.5 and partial["ci_low"] > 0.4 and partial["p_value"] < 1e-10


@pytest.mark.parametrize("own_signal", [0.0, 1.0])
def test_partial_spearman_matches_pingouin(own_signal):
    table = confounded(own_signal)
    row = statistics.partial_compactness_correlations(table, bootstrap=50).iloc[0]
    data = table[["gradcam_gini", "epsilon_uniform", "logit_margin"]].replace(INF, 1e9)
    expected = pingouin.partial_corr(
        data, x="gradcam_gini", y="epsilon_uniform", covar="logit_margin", method="spearman"
    )
    assert row["estimate"] == pytest.approx(expected["r"].iloc[0], abs=1e-12)
    assert row["p_value"] == pytest.approx(expected["p_val"].iloc[0], rel=1e-9)


def test_partial_spearman_by_hand_on_five_points():
    # ranks: x = 1..5, y = 1 3 2 5 4, z = 1..5 -> both residuals of x vanish: undefined
    x, y, z = np.arange(5.0), np.array([1.0, 3, 2, 5, 4]), np.arange(5.0)
    assert np.isnan(statistics.partial_spearman(x, y, z))
    # z constant in rank order of nothing: z ranks = 1 2 3 2 1 (ties averaged: 1.5 3.5 5 3.5 1.5)
    z = np.array([0.0, 1, 2, 1, 0])
    rx = np.arange(1.0, 6)
    ry = scipy.stats.rankdata(y)
    rz = scipy.stats.rankdata(z)
    design = np.column_stack([np.ones(5), rz])
    residual_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    residual_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    expected = np.corrcoef(residual_x, residual_y)[0, 1]
    assert statistics.partial_spearman(x, y, z) == pytest.approx(expected, abs=1e-12)


# ---- localisation against chance --------------------------------------------------------------


def test_pointing_and_energy_against_chance_by_hand():
    n = 40
    hits = np.tile([1.0, 1.0, 1.0, 0.0], n // 4)  # 30 hits of 40
    table = paired_table(np.full(n, 0.1), np.full(n, 0.1)).assign(
        loc_box_fraction=0.25,
        loc_gradcam_pointing_hit=hits,
        loc_gradcam_energy_in_box=np.linspace(0.3, 0.7, n),
        loc_saliency_pointing_hit=np.nan,
        loc_saliency_energy_in_box=np.nan,
    )
    rows = statistics.localisation_vs_chance(table, bootstrap=200).set_index(["test", "a"])
    pointing = rows.loc[("pointing_vs_chance", "gradcam_pointing_hit")]
    expected_z = (30 - 10) / np.sqrt(40 * 0.25 * 0.75)
    assert pointing["estimate"] == 0.75 and pointing["n"] == n
    assert pointing["statistic"] == pytest.approx(expected_z)
    assert pointing["p_value"] == pytest.approx(2 * scipy.stats.norm.sf(expected_z))
    energy = rows.loc[("energy_vs_chance", "gradcam_energy_in_box")]
    expected = scipy.stats.wilcoxon(np.linspace(0.3, 0.7, n) - 0.25)
    assert energy["estimate"] == pytest.approx(0.5)
    assert energy["p_value"] == pytest.approx(expected.pvalue)
    assert rows.loc[("pointing_vs_chance", "saliency_pointing_hit"), "n"] == 0
