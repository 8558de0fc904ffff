"""The findings' sentences on constructed tables: exact wording for every kind of result."""

import math

import pandas as pd

from robustmap import findings
from robustmap.leaderboard import ATTACKS

NAN = math.nan
INF = math.inf
FGSM, PGD = (next(a for a in ATTACKS if a.name == name) for name in ("fgsm", "pgd"))


def board(*rows):
    """Leaderboard rows: (model, n, median, ci_low, ci_high, pointing, p_low, p_high, chance, q)."""
    columns = [
        "model",
        "fgsm_n",
        "fgsm_median",
        "fgsm_median_ci_low",
        "fgsm_median_ci_high",
        "pointing_accuracy",
        "pointing_ci_low",
        "pointing_ci_high",
        "pointing_chance",
        "pointing_q",
    ]
    return pd.DataFrame(list(rows), columns=columns)


def statistics_rows(*rows):
    """Statistics rows: (model, test, a, b, search, n, estimate, ci_low, ci_high, q_bh)."""
    columns = ["model", "test", "a", "b", "search", "n", "estimate", "ci_low", "ci_high", "q_bh"]
    return pd.DataFrame(list(rows), columns=columns)


def classes(*rows):
    """Per-class rows: (model, class, n, median, ci_low, ci_high, rank or None)."""
    frame = pd.DataFrame(
        list(rows),
        columns=[
            "model",
            "class_name",
            "n",
            "median",
            "median_ci_low",
            "median_ci_high",
            "sensitivity_rank",
        ],
    )
    frame["sensitivity_rank"] = frame["sensitivity_rank"].astype("Int64")
    return frame.assign(search="uniform")


TWO_MODELS = board(
    ("m1", 20, 0.004, 0.003, 0.005, 0.9, 0.8, 1.0, 0.5, 0.001),
    ("m2", 18, 0.002, 0.0015, 0.0025, 0.55, 0.4, 0.7, 0.5, 0.4),
)


def test_models_significant_pair():
    stats = statistics_rows(("all", "model_pair", "m2", "m1", "uniform", 15, 0.5, 0.4, 0.7, 0.012))
    found = findings.models_finding(TWO_MODELS, stats, FGSM)
    assert found.sentence == (
        "m1 has the largest median FGSM ε (uniform search), 0.004, 95% CI 0.003–0.005, and m2 "
        "the smallest, 0.002, 95% CI 0.0015–0.0025. On the images every model got right, m1 "
        "needs a larger step than m2 (median ratio m2/m1 0.5, 95% CI 0.4–0.7, n = 15, "
        "q = 0.012)."
    )
    assert found.links == ("leaderboard.html",)


def test_models_not_significant_reads_no_evidence():
    stats = statistics_rows(("all", "model_pair", "m1", "m2", "uniform", 15, 1.3, 0.9, 1.8, 0.3))
    found = findings.models_finding(TWO_MODELS, stats, FGSM)
    assert found.sentence.endswith(
        "On the images every model got right, no pair of models differs (smallest q = 0.3): "
        "no evidence of a difference."
    )
    assert "needs a larger step" not in found.sentence


def test_a_single_model_is_compared_with_nothing():
    found = findings.models_finding(TWO_MODELS.iloc[:1], statistics_rows(), FGSM)
    assert found.sentence == (
        "Only m1 has searched images: its median FGSM ε (uniform search) is 0.004, 95% CI "
        "0.003–0.005; there is no other model to compare it with."
    )


def test_a_zero_correct_model_is_named_but_not_ranked():
    zero = board(("m3", 0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN))
    found = findings.models_finding(pd.concat([TWO_MODELS.iloc[:1], zero]), statistics_rows(), FGSM)
    assert found.sentence.endswith("m3 got no image right, so it has no epsilon and no rank.")
    assert found.sentence.startswith("Only m1 has searched images")


def test_equal_medians_are_not_called_largest_and_smallest():
    twins = board(
        ("a", 21, 0.00183, 0.001, 0.003, NAN, NAN, NAN, NAN, NAN),
        ("b", 21, 0.00183, 0.001, 0.0029, NAN, NAN, NAN, NAN, NAN),
    )
    found = findings.models_finding(twins, statistics_rows(), FGSM)
    assert found.sentence == (
        "a and b have the same median FGSM ε (uniform search), 0.00183. No model pair could be "
        "tested on the images every model got right."
    )


def test_censored_medians_are_called_censored():
    censored = board(
        ("m1", 20, INF, 0.42, INF, NAN, NAN, NAN, NAN, NAN),
        ("m2", 18, 0.002, 0.0015, 0.0025, NAN, NAN, NAN, NAN, NAN),
    )
    stats = statistics_rows(("all", "model_pair", "m1", "m2", "uniform", 3, 1.1, 0.5, 2.0, 0.8))
    found = findings.models_finding(censored, stats, FGSM)
    assert found.sentence.startswith(
        "m1 has the largest median FGSM ε (uniform search), censored (above eps_max), 95% CI "
        "0.42 to above eps_max, and m2 the smallest, 0.002, 95% CI 0.0015–0.0025."
    )
    both = board(
        ("m1", 20, INF, 0.42, INF, NAN, NAN, NAN, NAN, NAN),
        ("m3", 20, INF, INF, INF, NAN, NAN, NAN, NAN, NAN),
    )
    found = findings.models_finding(both, stats, FGSM)
    assert found.sentence.startswith(
        "m1 and m3 each have a censored median FGSM ε (uniform search) (above eps_max)."
    )
    three = pd.concat([both, censored.iloc[1:]])
    found = findings.models_finding(three, stats, FGSM)
    assert found.sentence.startswith(
        "m1 and m3 have censored medians (above eps_max), and m2 the smallest, 0.002, 95% CI "
        "0.0015–0.0025."
    )
    assert findings.median_text(INF, INF, INF) == (
        "censored (above eps_max), 95% CI above eps_max to above eps_max"
    )


def test_classes_below_the_minimum_are_never_named():
    table = classes(
        ("m1", "tiny", 2, 0.00001, NAN, NAN, None),  # the smallest median, but 2 images
        ("m1", "cat", 6, 0.001, 0.0008, 0.002, 1),
        ("m1", "dog", 5, 0.01, 0.005, 0.02, 2),
        ("m2", "tiny", 2, 0.5, NAN, NAN, None),
    )
    found = findings.classes_finding(table, FGSM, min_class_images=5)
    assert found.sentence == (
        "Among classes with at least 5 searched images (FGSM, uniform search), m1's most "
        "sensitive is cat (median ε 0.001, 95% CI 0.0008–0.002, n = 6) and most robust dog "
        "(median ε 0.01, 95% CI 0.005–0.02, n = 5) and m2 has no such class. No test compares "
        "classes: overlapping CIs are no evidence of a difference."
    )
    assert "tiny" not in found.sentence
    assert found.links == ("class_extremes_uniform.png",)


def test_no_ranked_class_anywhere():
    table = classes(("m1", "tiny", 2, 0.1, NAN, NAN, None))
    found = findings.classes_finding(table, FGSM, min_class_images=5)
    assert found.sentence == (
        "No model has a class with at least 5 searched images (FGSM, uniform search), so no "
        "class is named as most sensitive or most robust."
    )


def test_object_against_background_by_significance():
    stats = statistics_rows(
        ("m1", "search_pair", "object", "background", None, 21, 2.2195, 1.673, 2.647, 0.0028),
        ("m2", "search_pair", "object", "background", None, 18, 1.6695, 1.131, 2.192, 0.054),
        ("m3", "search_pair", "object", "background", None, 21, 0.8, 0.7, 0.9, 0.01),
        ("never", "search_pair", "object", "background", None, 0, NAN, NAN, NAN, NAN),
    )
    found = findings.object_background_finding(stats)
    assert found.sentence == (
        "The object-weighted search needs a larger step than the background-weighted one for "
        "m1 (median ratio object/background 2.22, 95% CI 1.67–2.65, n = 21, q = 0.0028); a "
        "smaller step than the background-weighted one for m3 (median ratio object/background "
        "0.8, 95% CI 0.7–0.9, n = 21, q = 0.01). For m2 (median ratio object/background 1.67, "
        "95% CI 1.13–2.19, n = 18, q = 0.054): no evidence of a difference. Not tested for "
        "never (n = 0): too few images."
    )


def test_compactness_without_any_association():
    stats = statistics_rows(
        ("m1", "compactness_spearman", "gradcam_gini", "epsilon_uniform", "uniform", 20, 0.1,
         -0.3, 0.5, 0.21),
        ("m1", "compactness_spearman", "saliency_gini", "epsilon_uniform", "uniform", 20, 0.2,
         -0.2, 0.6, 0.4),
    )  # fmt: skip
    found = findings.compactness_finding(stats)
    assert found.sentence == (
        "None of 2 Spearman correlations between a heatmap compactness score and the uniform ε "
        "has q < 0.05 (smallest q = 0.21): no evidence of an association."
    )


def test_compactness_with_an_association_and_its_partial():
    stats = statistics_rows(
        ("m1", "compactness_spearman", "saliency_gini", "epsilon_uniform", "uniform", 21,
         -0.582, -0.821, -0.145, 0.0195),
        ("m1", "compactness_spearman", "gradcam_gini", "epsilon_uniform", "uniform", 21, 0.1,
         -0.3, 0.5, 0.5),
        ("m1", "compactness_partial_spearman", "saliency_gini", "epsilon_uniform", "uniform",
         21, -0.2, -0.5, 0.2, 0.3),
    )  # fmt: skip
    found = findings.compactness_finding(stats)
    assert found.sentence == (
        "1 of 2 Spearman correlations between a heatmap compactness score and the uniform ε "
        "have q < 0.05 (strongest: m1 saliency_gini, rho -0.582, 95% CI -0.821 to -0.145, "
        "q = 0.019); given the clean logit margin, 0 of 1 partial correlations do. An "
        "association is not a cause."
    )


def test_localisation_against_chance():
    found = findings.localisation_finding(TWO_MODELS)
    assert found.sentence == (
        "Grad-CAM's hottest pixel lies in the human box more often than chance for m1 (90.0%, "
        "95% CI 80.0–100.0%, chance 50.0%, q = 0.001). Grad-CAM's pointing game against "
        "chance: no evidence of a difference for m2 (55.0%, 95% CI 40.0–70.0%, chance 50.0%, "
        "q = 0.4)."
    )


ATTACK_ROWS = statistics_rows(
    ("m1", "attack_pair", "uniform", "pgd_uniform", "uniform", 40, 1.8, 1.5, 2.1, 0.001),
    ("m2", "attack_pair", "uniform", "pgd_uniform", "uniform", 30, 1.1, 0.9, 1.3, 0.2),
    ("m1", "class_rank_agreement", "uniform", "pgd_uniform", "uniform", 12, 0.9, 0.7, 0.98, 1e-4),
    ("m2", "class_rank_agreement", "uniform", "pgd_uniform", "uniform", 2, NAN, NAN, NAN, NAN),
    ("m1", "search_pair", "object", "uniform", None, 40, 3.0, 2.0, 4.0, 0.001),  # not read
)


def test_fgsm_against_pgd_only_once_pgd_exists():
    assert findings.attacks_finding(ATTACK_ROWS, [FGSM]) is None
    assert findings.attacks_finding(ATTACK_ROWS.iloc[4:], [FGSM, PGD]) is None
    found = findings.attacks_finding(ATTACK_ROWS, [FGSM, PGD])
    assert found.question == "FGSM vs PGD"
    assert found.sentence == (
        "FGSM over PGD for m1: median ratio uniform/pgd_uniform 1.8, 95% CI 1.5–2.1, n = 40, "
        "q = 0.001, class medians ranked alike at Spearman rho 0.9 (95% CI 0.7–0.98, 12 "
        "classes); FGSM over PGD for m2: median ratio uniform/pgd_uniform 1.1, 95% CI 0.9–1.3, "
        "n = 30, q = 0.2, no evidence of a difference."
    )


def test_an_attack_pair_without_pairs_is_not_worded():
    empty = ATTACK_ROWS.iloc[[0, 1]].assign(estimate=[1.8, NAN])
    found = findings.attacks_finding(empty, [FGSM, PGD])
    assert found.sentence == (
        "FGSM over PGD for m1: median ratio uniform/pgd_uniform 1.8, 95% CI 1.5–2.1, n = 40, "
        "q = 0.001."
    )


def test_with_pgd_the_headline_is_pgd_and_the_attacks_come_last():
    table = TWO_MODELS.assign(
        pgd_n=[20, 18],
        pgd_median=[0.002, 0.001],
        pgd_median_ci_low=[0.0015, 0.0008],
        pgd_median_ci_high=[0.0025, 0.0012],
    )
    pgd_pair = ("all", "model_pair", "m1", "m2", "pgd_uniform", 15, 2.0, 1.5, 2.5, 0.01)
    stats = pd.concat([ATTACK_ROWS, statistics_rows(pgd_pair)], ignore_index=True)
    found = findings.findings(table, classes(), stats, min_class_images=5)
    assert [f.question for f in found] == ["Models", "Localisation", "FGSM vs PGD"]
    assert found[0].sentence.startswith(
        "m1 has the largest median PGD ε (pgd_uniform search), 0.002, 95% CI 0.0015–0.0025"
    )


def test_all_findings_in_study_order_and_as_rst():
    stats = statistics_rows(("all", "model_pair", "m1", "m2", "uniform", 15, 1.3, 0.9, 1.8, 0.3))
    table = classes(("m1", "cat", 6, 0.001, 0.0008, 0.002, 1))
    found = findings.findings(TWO_MODELS, table, stats, min_class_images=5)
    assert [f.question for f in found] == ["Classes", "Models", "Localisation"]
    text = findings.findings_rst(found)
    assert text.startswith("- **Classes.** Among classes")
    assert "See `leaderboard.html`_." in text
    unranked = TWO_MODELS.drop(columns=[c for c in TWO_MODELS if c.startswith("fgsm")])
    assert [f.question for f in findings.findings(unranked, table, stats, min_class_images=5)] == [
        "Localisation"
    ]
    assert findings.rst_escape("saliency_gini *x*") == "saliency\\_gini \\*x\\*"
