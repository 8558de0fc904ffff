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


# ---- FGSM against PGD ---------------------------------------------------------------------------

FGSM_UNIFORM = schema.Search(schema.FGSM, "uniform")
PGD_UNIFORM = schema.Search(schema.PGD, "uniform")


def attack_table(epsilons, *, classes=None, model="m"):
    """A per-image table of one model with the wide columns of the given searches
    ({Search: epsilons}); each search's status follows its epsilon (inf: not flipped, nan:
    misclassified at start)."""
    n = len(next(iter(epsilons.values())))
    columns = {
        "model": model,
        "image_id": [f"i{k:03d}" for k in range(n)],
        "imagenet_index": np.zeros(n, int) if classes is None else np.asarray(classes),
    }
    for search, values in epsilons.items():
        values = np.asarray(values, float)
        status = np.where(np.isinf(values), schema.NOT_FLIPPED, schema.FLIPPED)
        status = np.where(np.isnan(values), schema.MISCLASSIFIED_AT_START, status)
        columns[schema.search_column("epsilon", search)] = values
        columns[schema.search_column("status", search)] = status
    return pd.DataFrame(columns)


def test_pgd_at_half_the_fgsm_epsilon_overstates_by_exactly_two():
    fgsm = np.geomspace(1e-3, 1e-1, 12)
    table = attack_table({FGSM_UNIFORM: fgsm, PGD_UNIFORM: fgsm / 2})
    row = statistics.attack_pairs(table, bootstrap=200).iloc[0]
    assert (row["model"], row["test"], row["a"], row["b"], row["search"], row["n"]) == (
        "m",
        "attack_pair",
        "uniform",
        "pgd_uniform",
        "uniform",
        12,
    )
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == (2.0, 2.0, 2.0)
    expected = scipy.stats.wilcoxon(np.full(12, np.log(2.0)))
    assert row["statistic"] == expected.statistic == 0.0  # no negative difference
    assert row["p_value"] == expected.pvalue == 2 / 2**12  # two-sided


def test_attack_pair_wilcoxon_is_scipys_on_the_log_ratios():
    rng = np.random.default_rng(3)
    fgsm = np.exp(rng.normal(-4, 1, 30))
    pgd = fgsm / np.exp(np.abs(rng.normal(0.3, 0.2, 30)))  # PGD never above FGSM
    row = statistics.attack_pairs(attack_table({FGSM_UNIFORM: fgsm, PGD_UNIFORM: pgd})).iloc[0]
    expected = scipy.stats.wilcoxon(np.log(fgsm) - np.log(pgd), alternative="two-sided")
    assert row["statistic"] == expected.statistic == 0.0  # no negative difference
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert row["p_value"] == pytest.approx(2 / 2**30, rel=1e-12)  # exact, two-sided
    assert row["estimate"] == pytest.approx(np.median(fgsm / pgd), rel=1e-15)
    assert 1 < row["ci_low"] < row["estimate"] < row["ci_high"]


def test_attack_pair_leaves_censored_images_out_and_counts_them():
    fgsm = [0.1, 0.2, INF, INF, 0.4, 0.5, np.nan]
    pgd = [0.05, 0.1, 0.3, INF, INF, 0.25, 0.1]
    row = statistics.attack_pairs(attack_table({FGSM_UNIFORM: fgsm, PGD_UNIFORM: pgd})).iloc[0]
    assert row["n"] == 3
    assert row["note"] == (
        "pairs flipped in both; 3 pairs with a censored epsilon left out; "
        "estimate = median of uniform/pgd_uniform"
    )
    assert row["estimate"] == 2.0


def test_no_attack_rows_without_both_attacks():
    table = attack_table({FGSM_UNIFORM: [0.1, 0.2, 0.3]})
    assert statistics.attack_pairs(table).empty
    assert statistics.class_rank_agreements(table).empty


def classed(fgsm_scale, pgd_scale, per_class=5):
    """Per-class epsilons: class c's images at scale[c] * (1.0, 1.1, ...), non-overlapping."""
    steps = 1 + 0.1 * np.arange(per_class)
    fgsm = np.concatenate([scale * steps for scale in fgsm_scale])
    pgd = np.concatenate([scale * steps for scale in pgd_scale])
    classes = np.repeat(np.arange(len(fgsm_scale)), per_class)
    return fgsm, pgd, classes


def agreement(fgsm, pgd, classes, **options):
    table = attack_table({FGSM_UNIFORM: fgsm, PGD_UNIFORM: pgd}, classes=classes)
    return statistics.class_rank_agreements(table, bootstrap=200, **options).iloc[0]


def test_identical_class_orders_agree_at_one():
    fgsm, pgd, classes = classed([0.1, 0.2, 0.4, 0.8, 1.6], [0.01, 0.02, 0.04, 0.08, 0.16])
    row = agreement(fgsm, pgd, classes)
    assert (row["test"], row["a"], row["b"], row["search"], row["n"]) == (
        "class_rank_agreement",
        "uniform",
        "pgd_uniform",
        "uniform",
        5,
    )
    # classes never overlap, so every resample keeps both orders: a point CI
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == (1.0, 1.0, 1.0)
    # exact: 2 of the 5! pairings reach |rho| = 1 (the t approximation would say p = 0)
    assert row["p_value"] == pytest.approx(2 / 120, rel=1e-12)


def test_reversed_class_orders_agree_at_minus_one():
    fgsm, pgd, classes = classed([0.1, 0.2, 0.4, 0.8, 1.6], [0.16, 0.08, 0.04, 0.02, 0.01])
    row = agreement(fgsm, pgd, classes)
    assert (row["estimate"], row["ci_low"], row["ci_high"], row["n"]) == (-1.0, -1.0, -1.0, 5)


def test_rank_agreement_matches_spearman_of_the_class_medians():
    rng = np.random.default_rng(5)
    classes = np.repeat(np.arange(6), 7)
    fgsm = np.exp(rng.normal(-4, 1, classes.size))
    pgd = fgsm / np.exp(np.abs(rng.normal(0.5, 0.5, classes.size)))
    row = agreement(fgsm, pgd, classes)
    medians = pd.DataFrame({"c": classes, "f": fgsm, "p": pgd}).groupby("c").median()
    expected = scipy.stats.spearmanr(medians["f"], medians["p"])
    assert row["estimate"] == pytest.approx(expected.statistic, abs=1e-15)
    # scipy as the oracle: every order of one attack's medians against the other's (6! = 720;
    # permuting both samples gives the same p from 720**2 pairings, minutes of CPU).
    pgd_medians = medians["p"].to_numpy()
    exact = scipy.stats.permutation_test(
        (medians["f"].to_numpy(),),
        lambda x: scipy.stats.spearmanr(x, pgd_medians).statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
        vectorized=False,
    )
    assert row["p_value"] == pytest.approx(exact.pvalue, rel=1e-9)
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]


def test_classes_with_too_few_images_under_both_attacks_are_left_out():
    fgsm, pgd, classes = classed([0.1, 0.2, 0.4, 0.8, 1.6], [0.01, 0.02, 0.04, 0.08, 0.16])
    pgd[-1] = np.nan  # the last class has 4 images searched under both attacks
    row = agreement(fgsm, pgd, classes)
    assert row["n"] == 4
    assert row["note"] == (
        "classes with >= 5 images searched under both attacks; 1 with fewer left out; "
        "censored class medians (0) ranked above every finite one"
    )
    assert agreement(fgsm, pgd, classes, min_class_images=4)["n"] == 5


def test_fewer_than_three_ranked_classes_give_no_correlation():
    fgsm, pgd, classes = classed([0.1, 0.2, 0.4], [0.01, 0.02, 0.04])
    row = agreement(fgsm, pgd, classes, min_class_images=6)
    assert row["n"] == 0 and np.isnan(row["p_value"]) and np.isnan(row["estimate"])
    row = agreement(fgsm[:10], pgd[:10], classes[:10])
    assert row["n"] == 2 and np.isnan(row["p_value"])
    assert row["note"].endswith("; fewer than 3 ranked classes, no correlation")


def test_censored_class_medians_rank_above_every_finite_one():
    fgsm, pgd, classes = classed([0.1, 0.2, 0.4, 0.8], [0.01, 0.02, 0.04, 0.08])
    fgsm[classes == 3] = [0.5, INF, INF, INF, 0.6]  # median censored: the most robust class
    row = agreement(fgsm, pgd, classes)
    assert (row["estimate"], row["n"]) == (1.0, 4)
    assert "censored class medians (1) ranked above every finite one" in row["note"]


def test_attack_tests_form_their_own_family_per_model():
    rng = np.random.default_rng(7)
    object_ = (schema.Search(schema.FGSM, "object"), schema.Search(schema.PGD, "object"))
    classes = np.repeat(np.arange(6), 6)
    tables = []
    for model in ("m1", "m2"):
        epsilons = {}
        for fgsm_search, pgd_search in ((FGSM_UNIFORM, PGD_UNIFORM), object_):
            fgsm = np.exp(rng.normal(-4, 1, classes.size))
            epsilons[fgsm_search] = fgsm
            epsilons[pgd_search] = fgsm / np.exp(np.abs(rng.normal(0.2, 0.3, classes.size)))
        tables.append(attack_table(epsilons, classes=classes, model=model))
    table = statistics.statistics_table(pd.concat(tables), min_class_images=6, bootstrap=100)
    attacks = table[table["test"].isin(["attack_pair", "class_rank_agreement"])]
    assert attacks[["model", "test", "search", "family"]].values.tolist() == [
        [model, test, kind, f"{test}/{model}"]
        for test in ("attack_pair", "class_rank_agreement")
        for model in ("m1", "m2")
        for kind in ("uniform", "object")
    ]
    assert (attacks.loc[attacks["test"] == "class_rank_agreement", "n"] == 6).all()
    for _, rows in attacks.groupby("family"):
        p_values = rows["p_value"].to_numpy()
        holm = statsmodels.stats.multitest.multipletests(p_values, method="holm")[1]
        bh = statsmodels.stats.multitest.multipletests(p_values, method="fdr_bh")[1]
        np.testing.assert_allclose(rows["p_holm"], holm, rtol=1e-12)
        np.testing.assert_allclose(rows["q_bh"], bh, rtol=1e-12)
