"""The study's tests, with uncertainty and multiple-testing control.

Every function reads the per-image table of :func:`robustmap.aggregate.per_image` and returns rows
of one long, tidy table (:data:`robustmap.schema.STATISTICS_COLUMNS`):

``model, test, a, b, search, control, n, statistic, p_value, estimate, ci_low, ci_high,
family, p_holm, q_bh, note``

Tests
-----
``search_pair`` (per model; a, b = two search kinds of :data:`robustmap.kinds.SEARCH_PAIRS`)
    Wilcoxon signed-rank test on ``log eps_a - log eps_b`` over the images flipped in both
    searches (two-sided, zero differences dropped, scipy's exact distribution for small samples
    without ties). ``estimate`` is the median of the ratio ``eps_a / eps_b`` with a percentile
    bootstrap 95% CI over images. Images censored (never flipped) in either search are left out
    of this test, and counted in ``note``: a ratio with a censored member has no value.
``compactness_spearman`` (per model; a = ``<heatmap>_<score>``, b = ``epsilon_uniform``)
    Spearman rank correlation between a compactness score and the uniform epsilon over the
    images with both. Censored epsilons are *kept*: they rank above every flipped image (ties
    among them share the average rank), which is exactly what "not flipped up to eps_max" says
    about their order. ``estimate`` is rho with a percentile bootstrap 95% CI over images.
``compactness_partial_spearman`` (as above, ``control`` = ``clean_margin``)
    The same correlation given the clean logit margin (:func:`partial_spearman`): to first order
    the minimal epsilon is the margin over the rate at which the step erodes it, so a score that
    tracks the margin correlates with epsilon for that reason alone. p-value: t-test of the
    partial correlation with n - 3 degrees of freedom.
``pointing_vs_chance``, ``energy_vs_chance`` (per model; a = ``<heatmap>_pointing_hit`` or
``<heatmap>_energy_in_box``, b = ``chance``)
    Does the heatmap point into the human box more often, or put more heat there, than a
    random pixel or a uniform map would (:func:`localisation_vs_chance`)?
``localisation_spearman``, ``localisation_partial_spearman`` (per model; a = ``loc_<heatmap>_
<score>``)
    As the compactness rows, for each localisation score against the uniform epsilon.
``attack_pair`` (per model and kind searched under both attacks; a = ``<kind>`` (FGSM), b =
``pgd_<kind>``, search = the kind)
    How much FGSM overstates an image's minimal epsilon (:func:`attack_pairs`): Wilcoxon
    signed-rank test on ``log eps_fgsm - log eps_pgd`` and median ratio ``eps_fgsm / eps_pgd``
    with its bootstrap CI, as ``search_pair``; censored images are left out and counted alike.
``class_rank_agreement`` (per model and kind, as ``attack_pair``; n = ranked classes)
    Do the two attacks rank the classes alike (:func:`class_rank_agreements`)? Spearman rho
    between the censoring-aware class medians under FGSM and under PGD, over the classes with at
    least ``min_class_images`` images searched under both; bootstrap CI resampling images within
    each class.
``model_pair`` (model = ``all``; a, b = two models; one set per search)
    Wilcoxon signed-rank test on ``log eps_a - log eps_b`` of one search's epsilons of the
    images that every model classified correctly, restricted to those flipped under both
    models; ``estimate`` is the median ratio ``eps_a / eps_b`` with its bootstrap CI.

Multiple testing: every row belongs to a ``family`` (:func:`family_of`: one test type for one
model; model pairs one family per search), and rows with a p-value get ``p_holm`` (Holm) and
``q_bh`` (Benjamini-Hochberg) within it (:func:`adjust_families`).

Reproducibility: each row's bootstrap draws from its own generator seeded by ``seed`` and a CRC-32
of the row's (model, test, a, b), so a row does not change when models or tests are added.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import partial

import numpy as np
import pandas as pd
import scipy.stats

from robustmap.aggregate import MIN_CLASS_IMAGES
from robustmap.bootstrap import (
    bootstrap_ci,
    centred_rank_products,
    percentile_interval,
    rank_bootstrap_ci,
    resampled,
    seeded_generator,
)
from robustmap.censored import censored_quantiles
from robustmap.kinds import HEATMAP_KINDS, SEARCH_KINDS, SEARCH_PAIRS
from robustmap.schema import (
    ATTACKS,
    BOX_FRACTION_COLUMN,
    FGSM,
    PGD,
    STATISTICS_COLUMNS,
    STATISTICS_FLOATS,
    Search,
    compactness_columns,
    heatmap_column,
    localisation_column,
    localisation_columns,
    search_column,
    searched,
)

UNIFORM = Search(FGSM, "uniform")  # the search every score is related to
UNIFORM_EPSILON = search_column("epsilon", UNIFORM)
MARGIN_CONTROL = "clean_margin"  # the per-image table's ``logit_margin`` under its study name
SIGNIFICANCE = 0.05  # figures and the report mark rows with q_bh below this


def statistics_table(
    per_image_table: pd.DataFrame,
    *,
    min_class_images: int = MIN_CLASS_IMAGES,
    bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """All tests of this module in a fixed order, with Holm and BH adjustments per family.

    Order: search pairs, attack pairs, class rank agreement of the attacks (over classes with at
    least ``min_class_images`` images searched under both), compactness correlations, their
    partial correlations given the clean margin, localisation against chance, localisation
    correlations and their partial correlations, model pairs. See :func:`adjust_families` for
    the families.
    """
    tests = (
        search_pairs,
        attack_pairs,
        partial(class_rank_agreements, min_class_images=min_class_images),
        compactness_correlations,
        partial_compactness_correlations,
        localisation_vs_chance,
        localisation_correlations,
        partial_localisation_correlations,
        model_pairs,
    )
    frames = [test(per_image_table, bootstrap=bootstrap, seed=seed) for test in tests]
    table = pd.concat([f for f in frames if len(f)] or [_empty()], ignore_index=True)
    return adjust_families(table)


def search_pairs(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Every pair of :data:`robustmap.kinds.SEARCH_PAIRS` searched (with the same attack), per
    model."""
    found = set(searched(per_image_table, SEARCH_KINDS))
    pairs = [
        (Search(attack, a), Search(attack, b))
        for attack in ATTACKS
        for a, b in SEARCH_PAIRS
        if {Search(attack, a), Search(attack, b)} <= found
    ]
    rows = []
    for model, images in per_image_table.groupby("model", sort=True):
        for a, b in pairs:
            rows.append(
                _paired_wilcoxon(
                    images[search_column("epsilon", a)].to_numpy(dtype=float),
                    images[search_column("epsilon", b)].to_numpy(dtype=float),
                    key=(model, "search_pair", a.name, b.name),
                    bootstrap=bootstrap,
                    seed=seed,
                )
            )
    return _frame(rows)


def attack_searches(per_image_table: pd.DataFrame) -> list[tuple[Search, Search]]:
    """(FGSM, PGD) searches of every kind the table holds under both attacks, in kind order."""
    found = set(searched(per_image_table, SEARCH_KINDS))
    pairs = [(Search(FGSM, kind), Search(PGD, kind)) for kind in SEARCH_KINDS]
    return [pair for pair in pairs if set(pair) <= found]


def attack_pairs(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """How much FGSM overstates the minimal epsilon PGD finds, per model and kind.

    PGD starts from FGSM's adversarial point, so eps_pgd <= eps_fgsm by construction and every
    ratio is at least 1: the question is not the sign but whether the overstatement exceeds 1
    (some images need a smaller step than FGSM's), and by how much (the median ratio
    ``eps_fgsm / eps_pgd`` with its bootstrap CI). The Wilcoxon test is two-sided like every
    paired test here; with no negative difference its p is twice the one-sided one. Images
    censored under either attack are left out and counted in ``note`` (FGSM-censored images
    that PGD flips included: their ratio has no value).
    """
    rows = [
        _paired_wilcoxon(eps_fgsm, eps_pgd, key=key, bootstrap=bootstrap, seed=seed)
        | {"search": kind}
        for key, kind, _, eps_fgsm, eps_pgd in _attack_epsilons(per_image_table, "attack_pair")
    ]
    return _frame(rows)


def _attack_epsilons(
    per_image_table: pd.DataFrame, test: str
) -> Iterator[tuple[tuple[str, str, str, str], str, np.ndarray | None, np.ndarray, np.ndarray]]:
    """Per model and kind searched under both attacks: the row key of ``test``, the kind, the
    images' class indices (None without that column), their FGSM and their PGD epsilons."""
    has_classes = "imagenet_index" in per_image_table
    for model, images in per_image_table.groupby("model", sort=True):
        for fgsm, pgd in attack_searches(per_image_table):
            yield (
                (model, test, fgsm.name, pgd.name),
                fgsm.kind,
                images["imagenet_index"].to_numpy() if has_classes else None,
                images[search_column("epsilon", fgsm)].to_numpy(dtype=float),
                images[search_column("epsilon", pgd)].to_numpy(dtype=float),
            )


def class_rank_agreements(
    per_image_table: pd.DataFrame,
    *,
    min_class_images: int = MIN_CLASS_IMAGES,
    bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman rho between the class medians under FGSM and under PGD, per model and kind.

    Would the per-class ranking (which classes are most sensitive) change under the stronger
    attack? A class is ranked when at least ``min_class_images`` of its images were searched
    under both attacks (epsilon defined under both), as the per-class table ranks classes; its
    two medians are taken over those same images and follow the censoring rule of
    :mod:`robustmap.censored` (a censored median is ``inf`` and ranks above every finite one,
    censored medians tie). p-value: exact, from every pairing of the medians' ranks, for up to
    :data:`EXACT_RANK_CLASSES` classes (the t approximation says p = 0 for rho = 1 on 3
    classes, where the exact two-sided p is 1/3); ``scipy.stats.spearmanr``'s beyond. The CI
    resamples images within each class (stratified) and recomputes both medians and rho, since
    that keeps the set of ranked classes fixed and carries each median's own uncertainty, which
    resampling whole classes would ignore. Fewer than 3 ranked classes: a row with n and a note.
    """
    if "imagenet_index" not in per_image_table:
        return _frame([])
    rows = [
        _class_rank_agreement(
            classes,
            eps_fgsm,
            eps_pgd,
            min_class_images=min_class_images,
            key=key,
            bootstrap=bootstrap,
            seed=seed,
        )
        | {"search": kind}
        for key, kind, classes, eps_fgsm, eps_pgd in _attack_epsilons(
            per_image_table, "class_rank_agreement"
        )
    ]
    return _frame(rows)


def _class_rank_agreement(
    classes: np.ndarray,
    eps_a: np.ndarray,
    eps_b: np.ndarray,
    *,
    min_class_images: int,
    key: tuple,
    bootstrap: int,
    seed: int,
) -> dict:
    """One model's rank agreement row: rho of the ranked classes' medians, CI, p-value."""
    both = ~np.isnan(eps_a) & ~np.isnan(eps_b) & pd.notna(classes)
    pairs = np.column_stack([eps_a, eps_b])[both]
    groups = [pairs[classes[both] == c] for c in sorted(pd.unique(classes[both]))]
    ranked = [group for group in groups if len(group) >= min_class_images]
    medians = np.array([censored_quantiles(g, 0.5, axis=0) for g in ranked]).reshape(-1, 2)
    note = (
        f"classes with >= {min_class_images} images searched under both attacks; "
        f"{len(groups) - len(ranked)} with fewer left out; censored class medians "
        f"({int(np.isinf(medians).sum())}) ranked above every finite one"
    )
    row = _row(key, n=len(ranked), note=note)
    if len(ranked) < 3:
        row["note"] += "; fewer than 3 ranked classes, no correlation"
        return row
    if np.any(np.all(medians == medians[0], axis=0)):
        row["note"] += "; every class has the same median under one attack, no correlation"
        return row
    rho = float(_rank_correlations(medians[np.newaxis])[0])  # the resamples' formula
    p_value = _rank_agreement_p(scipy.stats.rankdata(medians, axis=0))
    rng = seeded_generator(seed, key)
    median = partial(censored_quantiles, q=0.5)
    resampled_medians = np.stack(
        [resampled(group, median, bootstrap=bootstrap, rng=rng) for group in ranked], axis=1
    )  # [B, classes, 2]: both attacks' medians from the same drawn images
    low, high = percentile_interval(_rank_correlations(resampled_medians))
    row.update(statistic=rho, p_value=p_value, estimate=rho, ci_low=low, ci_high=high)
    return row


EXACT_RANK_CLASSES = 8
"""Up to this many ranked classes (8! = 40,320 pairings), class_rank_agreement's p is exact."""


def _rank_agreement_p(ranks: np.ndarray) -> float:
    """Two-sided p of Spearman's rho between the two rank columns of ``ranks`` [k, 2]: the share
    of all k! pairings whose |rho| reaches the observed one (exact), or spearmanr's beyond
    :data:`EXACT_RANK_CLASSES`."""
    k = len(ranks)
    if k > EXACT_RANK_CLASSES:
        return float(scipy.stats.spearmanr(ranks[:, 0], ranks[:, 1]).pvalue)
    centred = ranks - ranks.mean(axis=0)
    scale = np.sqrt(np.sum(centred**2, axis=0).prod())
    pairings = np.array(list(itertools.permutations(range(k))))
    rhos = centred[pairings, 1] @ centred[:, 0] / scale  # every pairing of column 1 with 0
    observed = centred[:, 0] @ centred[:, 1] / scale
    return float(np.mean(np.abs(rhos) >= abs(observed) - 1e-12))


def _rank_correlations(values: np.ndarray) -> np.ndarray:
    """Spearman rho between the two columns of each of B samples [B, k, 2] -> [B]."""
    ranks = scipy.stats.rankdata(values, axis=1)
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    return rank_correlation(np.einsum("bki,bkj->bij", centred, centred))


def compactness_correlations(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Spearman rho between each compactness score and the uniform epsilon, per model."""
    return _correlations(
        per_image_table,
        compactness_columns(per_image_table.columns, HEATMAP_KINDS),
        test="compactness_spearman",
        controlled=False,
        bootstrap=bootstrap,
        seed=seed,
    )


def localisation_correlations(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Spearman rho between each localisation score and the uniform epsilon, per model."""
    return _correlations(
        per_image_table,
        localisation_columns(per_image_table.columns, HEATMAP_KINDS),
        test="localisation_spearman",
        controlled=False,
        bootstrap=bootstrap,
        seed=seed,
    )


def _correlations(
    per_image_table: pd.DataFrame,
    scores: list[str],
    *,
    test: str,
    controlled: bool,
    bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """Each score against the uniform epsilon per model: Spearman, or (``controlled``) partial
    Spearman given the clean logit margin."""
    needed = {UNIFORM_EPSILON, "logit_margin"} if controlled else {UNIFORM_EPSILON}
    rows = []
    if not needed <= set(per_image_table.columns):
        return _frame(rows)
    for model, images in per_image_table.groupby("model", sort=True):
        epsilon = images[UNIFORM_EPSILON].to_numpy(dtype=float)
        for score in scores:
            key = (model, test, score, UNIFORM_EPSILON)
            values = images[score].to_numpy(dtype=float)
            if controlled:
                margin = images["logit_margin"].to_numpy(dtype=float)
                row = _partial(values, epsilon, margin, key=key, bootstrap=bootstrap, seed=seed)
                row["control"] = MARGIN_CONTROL
            else:
                row = _spearman(values, epsilon, key=key, bootstrap=bootstrap, seed=seed)
            rows.append(row | {"search": UNIFORM.name})
    return _frame(rows)


def partial_compactness_correlations(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Each compactness score vs the uniform epsilon given the clean logit margin, per model.

    To first order the minimal epsilon is the clean margin over the rate at which the step
    erodes it, so a score that merely tracks the margin correlates with epsilon for that reason
    alone; the partial correlation removes what the margin's ranks explain linearly.
    """
    return _correlations(
        per_image_table,
        compactness_columns(per_image_table.columns, HEATMAP_KINDS),
        test="compactness_partial_spearman",
        controlled=True,
        bootstrap=bootstrap,
        seed=seed,
    )


def partial_localisation_correlations(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Each localisation score vs the uniform epsilon given the clean logit margin, per model."""
    return _correlations(
        per_image_table,
        localisation_columns(per_image_table.columns, HEATMAP_KINDS),
        test="localisation_partial_spearman",
        controlled=True,
        bootstrap=bootstrap,
        seed=seed,
    )


def localisation_vs_chance(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Pointing-game accuracy and energy in the box of each heatmap against chance, per model.

    Chance is each image's own box fraction: a random pixel lands in the box, and a uniform map
    puts its energy there, in that proportion.

    ``pointing_vs_chance`` (a = ``<heatmap>_pointing_hit``): estimate = hit rate with a
    bootstrap CI; statistic = z of the number of hits against its null distribution (a sum of
    independent Bernoulli(box fraction) draws, normal approximation), two-sided p-value.
    ``energy_vs_chance`` (a = ``<heatmap>_energy_in_box``): estimate = mean energy in the box
    with a bootstrap CI; Wilcoxon signed-rank test of energy minus box fraction, two-sided.
    """
    rows = []
    if BOX_FRACTION_COLUMN not in per_image_table:
        return _frame(rows)
    for model, images in per_image_table.groupby("model", sort=True):
        fraction = images[BOX_FRACTION_COLUMN].to_numpy(dtype=float)
        for heatmap in HEATMAP_KINDS:
            hits = images[localisation_column(heatmap, "pointing_hit")].to_numpy(dtype=float)
            energy = images[localisation_column(heatmap, "energy_in_box")].to_numpy(dtype=float)
            key = (model, "pointing_vs_chance", heatmap_column(heatmap, "pointing_hit"), "chance")
            rows.append(_pointing_test(hits, fraction, key=key, bootstrap=bootstrap, seed=seed))
            key = (model, "energy_vs_chance", heatmap_column(heatmap, "energy_in_box"), "chance")
            rows.append(_energy_test(energy, fraction, key=key, bootstrap=bootstrap, seed=seed))
    return _frame(rows)


def _pointing_test(
    hits: np.ndarray, chance: np.ndarray, *, key: tuple, bootstrap: int, seed: int
) -> dict:
    usable = ~np.isnan(hits) & ~np.isnan(chance)
    hits, chance = hits[usable], chance[usable]
    row = _row(key, n=int(usable.sum()), note=f"chance = mean box fraction {_mean(chance)}")
    variance = float((chance * (1 - chance)).sum())
    if len(hits) == 0 or variance == 0:
        row["note"] += "; no image with a box, or every box covers its image: no test"
        return row
    z = (hits.sum() - chance.sum()) / np.sqrt(variance)
    low, high = bootstrap_ci(hits, np.mean, bootstrap=bootstrap, rng=seeded_generator(seed, key))
    row.update(
        statistic=float(z),
        p_value=float(2 * scipy.stats.norm.sf(abs(z))),
        estimate=float(hits.mean()),
        ci_low=low,
        ci_high=high,
    )
    return row


def _energy_test(
    energy: np.ndarray, chance: np.ndarray, *, key: tuple, bootstrap: int, seed: int
) -> dict:
    usable = ~np.isnan(energy) & ~np.isnan(chance)
    energy, chance = energy[usable], chance[usable]
    row = _row(key, n=int(usable.sum()), note=f"chance = mean box fraction {_mean(chance)}")
    difference = energy - chance
    if len(energy) == 0 or np.all(difference == 0):
        row["note"] += "; nothing to test"
        return row
    result = scipy.stats.wilcoxon(difference, zero_method="wilcox", alternative="two-sided")
    rng = seeded_generator(seed, key)
    low, high = bootstrap_ci(energy, np.mean, bootstrap=bootstrap, rng=rng)
    row.update(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        estimate=float(energy.mean()),
        ci_low=low,
        ci_high=high,
    )
    return row


def _mean(values: np.ndarray) -> str:
    return f"{values.mean():.4f}" if len(values) else "n/a"


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman correlation of x and y given z: Pearson of the rank residuals on z's ranks.

    Ranks are averages over ties; ``inf`` ranks above every finite value (a censored epsilon).
    Each of rank(x) and rank(y) is regressed on rank(z) with an intercept.
    """
    return float(partial_rank_correlation(_sample_products(np.column_stack([x, y, z])))[0])


def _sample_products(data: np.ndarray) -> np.ndarray:
    """:func:`robustmap.bootstrap.centred_rank_products` of the sample itself: [1, k, k]."""
    return centred_rank_products(data, np.ones((1, len(data))))


def _partial(
    score: np.ndarray,
    epsilon: np.ndarray,
    margin: np.ndarray,
    *,
    key: tuple,
    bootstrap: int,
    seed: int,
) -> dict:
    """Partial Spearman row: estimate, t-test p-value (n - 3 df) and bootstrap CI."""
    usable = np.isfinite(score) & ~np.isnan(epsilon) & np.isfinite(margin)
    data = np.column_stack([score, epsilon, margin])[usable]
    censored = int(np.isinf(data[:, 1]).sum())
    note = f"censored epsilons ({censored}) ranked above every flipped one; control: clean margin"
    row = _row(key, n=int(usable.sum()), note=note)
    sums = _sample_products(data)  # a variable is constant where its diagonal sum is zero
    if len(data) < 4 or np.any(np.diagonal(sums[0]) == 0):
        row["note"] += "; fewer than 4 images or a constant variable, no correlation"
        return row
    rho = float(partial_rank_correlation(sums)[0])
    freedom = len(data) - 3
    t = rho * np.sqrt(freedom / max(1.0 - rho**2, np.finfo(float).tiny))
    low, high = rank_bootstrap_ci(
        data, partial_rank_correlation, bootstrap=bootstrap, rng=seeded_generator(seed, key)
    )
    row.update(
        statistic=rho,
        p_value=float(2 * scipy.stats.t.sf(abs(t), freedom)),
        estimate=rho,
        ci_low=low,
        ci_high=high,
    )
    return row


def partial_rank_correlation(products: np.ndarray) -> np.ndarray:
    """Partial Spearman of variables 0 and 1 given 2, from centred rank products [B, 3, 3]:
    each rank residual on the control is r_i - beta_i r_2 with beta_i = S_i2 / S_22, so its sums
    follow from S alone. [B]; nan where a residual vanishes or the control is constant."""
    control = products[:, 2, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        beta_x = products[:, 0, 2] / control
        beta_y = products[:, 1, 2] / control
        cov = products[:, 0, 1] - beta_x * products[:, 1, 2]
        var_x = products[:, 0, 0] - beta_x * products[:, 0, 2]
        var_y = products[:, 1, 1] - beta_y * products[:, 1, 2]
        defined = (var_x > 0) & (var_y > 0)
        return np.where(defined, cov / np.sqrt(np.where(defined, var_x * var_y, 1.0)), np.nan)


def model_pairs(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Every model pair's epsilons, search by search, on the images all models got right."""
    rows = []
    if "correct" not in per_image_table or per_image_table["model"].nunique() < 2:
        return _frame(rows)
    correct = per_image_table.pivot(index="image_id", columns="model", values="correct")
    everywhere = correct.fillna(False).astype(bool).all(axis=1)
    for search in searched(per_image_table, SEARCH_KINDS):
        wide = per_image_table.pivot(
            index="image_id", columns="model", values=search_column("epsilon", search)
        )
        common = wide[everywhere]
        for a, b in itertools.combinations(sorted(wide.columns), 2):
            # uniform rows keep the generator key they had before other searches were compared
            key_search = () if search == UNIFORM else (search.name,)
            row = _paired_wilcoxon(
                common[a].to_numpy(dtype=float),
                common[b].to_numpy(dtype=float),
                key=("all", "model_pair", a, b),
                bootstrap=bootstrap,
                seed=seed,
                rng_key=("all", "model_pair", a, b, *key_search),
            )
            row["search"] = search.name
            row["note"] = f"{int(everywhere.sum())} images correct for every model; " + row["note"]
            rows.append(row)
    return _frame(rows)


def _paired_wilcoxon(
    eps_a: np.ndarray,
    eps_b: np.ndarray,
    *,
    key: tuple,
    bootstrap: int,
    seed: int,
    rng_key: tuple | None = None,
) -> dict:
    """Wilcoxon on log ratios of the pairs flipped in both, median ratio with bootstrap CI."""
    model, test, a, b = key
    defined = ~np.isnan(eps_a) & ~np.isnan(eps_b)
    both = defined & np.isfinite(eps_a) & np.isfinite(eps_b)
    note = (
        f"pairs flipped in both; {int((defined & ~both).sum())} pairs with a censored "
        f"epsilon left out; estimate = median of {a}/{b}"
    )
    ratio = eps_a[both] / eps_b[both]  # formed directly: a constant ratio reads exactly
    log_ratio = np.log(ratio)
    row = _row(key, n=int(both.sum()), note=note)
    if log_ratio.size == 0:
        row["note"] += "; no pair to test"
        return row
    if np.all(log_ratio == 0):
        row.update(estimate=1.0, ci_low=1.0, ci_high=1.0)
        row["note"] += "; all pairs equal, no test"
        return row
    result = scipy.stats.wilcoxon(log_ratio, zero_method="wilcox", alternative="two-sided")
    rng = seeded_generator(seed, rng_key or key)
    low, high = bootstrap_ci(ratio, np.median, bootstrap=bootstrap, rng=rng)
    row.update(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        estimate=float(np.median(ratio)),
        ci_low=low,
        ci_high=high,
    )
    return row


def _spearman(score: np.ndarray, epsilon: np.ndarray, *, key: tuple, bootstrap: int, seed: int):
    """Spearman rho with censored epsilons (inf) ranked above all flipped ones."""
    usable = np.isfinite(score) & ~np.isnan(epsilon)
    score, epsilon = score[usable], epsilon[usable]
    censored = int(np.isinf(epsilon).sum())
    note = f"censored epsilons ({censored}) ranked above every flipped one"
    row = _row(key, n=int(usable.sum()), note=note)
    if usable.sum() < 3 or np.ptp(score) == 0 or np.all(epsilon == epsilon[0]):
        row["note"] += "; fewer than 3 images or a constant variable, no correlation"
        return row
    ranks = np.column_stack([scipy.stats.rankdata(score), scipy.stats.rankdata(epsilon)])
    result = scipy.stats.spearmanr(ranks[:, 0], ranks[:, 1])
    low, high = rank_bootstrap_ci(
        ranks, rank_correlation, bootstrap=bootstrap, rng=seeded_generator(seed, key)
    )
    row.update(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        estimate=float(result.statistic),
        ci_low=low,
        ci_high=high,
    )
    return row


def rank_correlation(products: np.ndarray) -> np.ndarray:
    """Spearman rho from centred rank products [B, 2, 2] -> [B] (nan: a constant resample)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return products[:, 0, 1] / np.sqrt(products[:, 0, 0] * products[:, 1, 1])


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order.

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)); tied
    p-values get the same adjusted value whatever their order.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p_values, kind="stable")
    factors = len(p_values) - np.arange(len(p_values))
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p_values[order]))
    return adjusted


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate), in the input's order."""
    p_values = np.asarray(p_values, dtype=np.float64)
    if p_values.size == 0:
        return p_values.copy()
    return scipy.stats.false_discovery_control(p_values, method="bh")


def family_of(row: pd.Series) -> str:
    """A row's multiple-testing family: one test type for one model; model pairs per search."""
    if row["test"] == "model_pair":
        return f"model_pair/{row['search']}"
    return f"{row['test']}/{row['model']}"


def adjust_families(table: pd.DataFrame) -> pd.DataFrame:
    """``family``, ``p_holm`` and ``q_bh`` for every row: Holm and BH within each family.

    Rows without a p-value (too few images, no test) keep their family but get no adjusted
    value, and do not count in their family's number of tests.
    """
    table = table.copy()
    table["family"] = table.apply(family_of, axis=1) if len(table) else pd.Series(dtype=object)
    table["p_holm"] = np.nan
    table["q_bh"] = np.nan
    tested = table[table["p_value"].notna()]
    for _, rows in tested.groupby("family", sort=False):
        p_values = rows["p_value"].to_numpy(dtype=np.float64)
        table.loc[rows.index, "p_holm"] = holm(p_values)
        table.loc[rows.index, "q_bh"] = benjamini_hochberg(p_values)
    return table[list(STATISTICS_COLUMNS)]


def marked(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a last column ``q_bh < 0.05``: ``*`` on rows significant within family."""
    significant = table["q_bh"].lt(SIGNIFICANCE).to_numpy()
    return table.assign(**{f"q_bh < {SIGNIFICANCE:g}": np.where(significant, "*", "")})


def _row(key: tuple, *, n: int, note: str) -> dict:
    model, test, a, b = key
    return {column: np.nan for column in STATISTICS_FLOATS} | {
        "model": model,
        "test": test,
        "a": a,
        "b": b,
        "search": None,
        "control": None,
        "n": n,
        "family": None,
        "note": note,
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return _empty()
    return pd.DataFrame(rows, columns=list(STATISTICS_COLUMNS)).astype({"n": "int64"})


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in STATISTICS_COLUMNS})
    return frame.astype({"n": "int64"} | {c: "float64" for c in STATISTICS_FLOATS})
