"""The study's tests, with uncertainty: paired searches, compactness vs robustness, model pairs.

Every function reads the per-image table of :func:`robustmap.aggregate.per_image` and returns rows
of one long, tidy table (:data:`COLUMNS`):

``model, test, a, b, n, statistic, p_value, estimate, ci_low, ci_high, note``

Tests
-----
``search_pair`` (per model; a, b = two search kinds)
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
``model_pair`` (model = ``all``; a, b = two models)
    Wilcoxon signed-rank test on ``log eps_a - log eps_b`` of the uniform epsilons of the images
    that every model classified correctly, restricted to those flipped under both models;
    ``estimate`` is the median ratio ``eps_a / eps_b`` with its bootstrap CI.

Reproducibility: each row's bootstrap draws from its own generator seeded by ``seed`` and a CRC-32
of the row's (model, test, a, b), so a row does not change when models or tests are added.
"""

from __future__ import annotations

import itertools
import warnings
import zlib

import numpy as np
import pandas as pd
import scipy.stats

from robustmap.aggregate import AGREEMENT_COLUMNS, HEATMAP_KINDS, SEARCH_KINDS

COLUMNS = (
    "model",
    "test",
    "a",
    "b",
    "n",
    "statistic",
    "p_value",
    "estimate",
    "ci_low",
    "ci_high",
    "note",
)
SEARCH_PAIRS = (("object", "uniform"), ("background", "uniform"), ("object", "background"))
CONFIDENCE = 0.95
_CHUNK = 256  # bootstrap resamples computed at once; bounds memory at 256 x n floats


def statistics_table(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """All tests of this module, in a fixed order: search pairs, compactness, model pairs."""
    frames = [
        search_pairs(per_image_table, bootstrap=bootstrap, seed=seed),
        compactness_correlations(per_image_table, bootstrap=bootstrap, seed=seed),
        model_pairs(per_image_table, bootstrap=bootstrap, seed=seed),
    ]
    return pd.concat([f for f in frames if len(f)] or [_empty()], ignore_index=True)


def search_pairs(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Object vs uniform, background vs uniform, object vs background, per model."""
    pairs = [(a, b) for a, b in SEARCH_PAIRS if {a, b} <= set(_searched(per_image_table))]
    rows = []
    for model, images in per_image_table.groupby("model", sort=True):
        for a, b in pairs:
            rows.append(
                _paired_wilcoxon(
                    images[f"epsilon_{a}"].to_numpy(dtype=float),
                    images[f"epsilon_{b}"].to_numpy(dtype=float),
                    key=(model, "search_pair", a, b),
                    bootstrap=bootstrap,
                    seed=seed,
                )
            )
    return _frame(rows)


def _searched(per_image_table: pd.DataFrame) -> list[str]:
    """Search kinds with at least one defined epsilon in the table."""
    return [
        kind
        for kind in SEARCH_KINDS
        if f"epsilon_{kind}" in per_image_table and per_image_table[f"epsilon_{kind}"].notna().any()
    ]


def compactness_correlations(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Spearman rho between each compactness score and the uniform epsilon, per model."""
    scores = compactness_columns(per_image_table)
    rows = []
    if "epsilon_uniform" not in per_image_table:
        return _frame(rows)
    for model, images in per_image_table.groupby("model", sort=True):
        epsilon = images["epsilon_uniform"].to_numpy(dtype=float)
        for score in scores:
            rows.append(
                _spearman(
                    images[score].to_numpy(dtype=float),
                    epsilon,
                    key=(model, "compactness_spearman", score, "epsilon_uniform"),
                    bootstrap=bootstrap,
                    seed=seed,
                )
            )
    return _frame(rows)


def compactness_columns(per_image_table: pd.DataFrame) -> list[str]:
    """The per-image table's compactness columns: ``<heatmap>_<score>`` and the agreement."""
    scores = [
        column
        for column in per_image_table.columns
        if any(column.startswith(f"{heatmap}_") for heatmap in HEATMAP_KINDS)
    ]
    agreement = [f"heatmap_{c}" for c in AGREEMENT_COLUMNS if f"heatmap_{c}" in per_image_table]
    return scores + agreement


def model_pairs(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Uniform epsilons of every model pair on the images all models classified correctly."""
    if "epsilon_uniform" not in per_image_table:
        return _frame([])
    wide = per_image_table.pivot(index="image_id", columns="model", values="epsilon_uniform")
    correct = per_image_table.pivot(index="image_id", columns="model", values="correct")
    everywhere = correct.fillna(False).astype(bool).all(axis=1)
    common = wide[everywhere]
    rows = []
    for a, b in itertools.combinations(sorted(wide.columns), 2):
        row = _paired_wilcoxon(
            common[a].to_numpy(dtype=float),
            common[b].to_numpy(dtype=float),
            key=("all", "model_pair", a, b),
            bootstrap=bootstrap,
            seed=seed,
        )
        row["note"] = f"{int(everywhere.sum())} images correct for every model; " + row["note"]
        rows.append(row)
    return _frame(rows)


def _paired_wilcoxon(
    eps_a: np.ndarray, eps_b: np.ndarray, *, key: tuple, bootstrap: int, seed: int
) -> dict:
    """Wilcoxon on log ratios of the pairs flipped in both, median ratio with bootstrap CI."""
    model, test, a, b = key
    defined = ~np.isnan(eps_a) & ~np.isnan(eps_b)
    both = defined & np.isfinite(eps_a) & np.isfinite(eps_b)
    note = (
        f"pairs flipped in both; {int((defined & ~both).sum())} pairs with a censored "
        f"epsilon left out; estimate = median of {a}/{b}"
    )
    log_ratio = np.log(eps_a[both]) - np.log(eps_b[both])
    row = _row(key, n=int(both.sum()), note=note)
    if log_ratio.size == 0:
        row["note"] += "; no pair to test"
        return row
    if np.all(log_ratio == 0):
        row.update(estimate=1.0, ci_low=1.0, ci_high=1.0)
        row["note"] += "; all pairs equal, no test"
        return row
    result = scipy.stats.wilcoxon(log_ratio, zero_method="wilcox", alternative="two-sided")
    ratio = np.exp(log_ratio)
    low, high = bootstrap_ci(ratio, np.median, bootstrap=bootstrap, rng=_rng(seed, key))
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
    low, high = bootstrap_ci(ranks, _rank_correlation, bootstrap=bootstrap, rng=_rng(seed, key))
    row.update(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        estimate=float(result.statistic),
        ci_low=low,
        ci_high=high,
    )
    return row


def _rank_correlation(samples: np.ndarray, axis: int) -> np.ndarray:
    """Spearman rho of each resample: samples [B, n, 2] -> [B] (nan for a constant resample)."""
    ranks = scipy.stats.rankdata(samples, axis=axis)
    centred = ranks - ranks.mean(axis=axis, keepdims=True)
    cov = (centred[..., 0] * centred[..., 1]).sum(axis=axis)
    norm = np.sqrt((centred[..., 0] ** 2).sum(axis=axis) * (centred[..., 1] ** 2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / norm


def bootstrap_ci(
    data: np.ndarray,
    statistic,
    *,
    bootstrap: int,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over the rows of ``data``.

    Args:
        data: [n] or [n, k]; rows are resampled with replacement ``bootstrap`` times.
        statistic: ``f(samples, axis=1) -> [B]`` over resamples of shape [B, n, ...].
        rng: the row's own generator (see :func:`_rng`).

    Returns:
        (low, high) percentiles of the resampled statistic, nan-valued resamples ignored.
    """
    data = np.asarray(data, dtype=np.float64)
    values = []
    for start in range(0, bootstrap, _CHUNK):
        draws = rng.integers(0, len(data), size=(min(_CHUNK, bootstrap - start), len(data)))
        values.append(statistic(data[draws], axis=1))
    values = np.concatenate(values)
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _rng(seed: int, key: tuple) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


def _row(key: tuple, *, n: int, note: str) -> dict:
    model, test, a, b = key
    return {
        "model": model,
        "test": test,
        "a": a,
        "b": b,
        "n": n,
        "statistic": np.nan,
        "p_value": np.nan,
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "note": note,
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return _empty()
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"n": "int64"})


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS})
    return frame.astype({"n": "int64"} | {c: "float64" for c in COLUMNS[5:10]})
