"""Seeded percentile bootstrap: the one resampling scheme behind every confidence interval.

Each estimate draws from its own generator, seeded by the run's ``seed`` and a CRC-32 of the
estimate's key (e.g. model, test, a, b), so an interval does not move when other rows, models or
classes are added to a table. This module imports nothing else of robustmap, so the tables
(:mod:`robustmap.aggregate`) and the tests (:mod:`robustmap.statistics`) can both use it.

Rank correlations (Spearman, partial Spearman) re-rank every resample. Sorting each one costs
O(B n log n) and was most of the aggregate job at scale; :func:`rank_bootstrap_ci` instead
counts how often each row was drawn and derives every resample's ranks from one sort of the
sample (:func:`centred_rank_products`): the same draws and the same ranks, exactly. Column
means (:func:`mean_ci`) come from the same counts by one matrix product.
"""

from __future__ import annotations

import itertools
import warnings
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np

CONFIDENCE = 0.95
TAILS = ((1.0 - CONFIDENCE) / 2.0, (1.0 + CONFIDENCE) / 2.0)
"""The percentile points of every interval: 2.5% and 97.5% of the resampled statistic."""
_CHUNK = 256  # resamples computed at once; bounds memory at 256 x n values


def seeded_generator(seed: int, key: Sequence[Hashable]) -> np.random.Generator:
    """The generator of one estimate: ``seed`` and a CRC-32 of the key's text."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


def resampled(
    data: np.ndarray,
    statistic: Callable[..., np.ndarray],
    *,
    bootstrap: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``statistic`` of ``bootstrap`` resamples (rows drawn with replacement) of ``data``.

    Args:
        data: [n] or [n, k]; rows are resampled.
        statistic: ``f(samples, axis=1) -> [B]`` over resamples of shape [B, n, ...].

    Returns:
        [bootstrap] values, in draw order.
    """
    data = np.asarray(data, dtype=np.float64)
    draws = _draws(len(data), bootstrap=bootstrap, rng=rng)
    return np.concatenate([statistic(data[rows], axis=1) for rows in draws])


def resampled_counts(n: int, *, bootstrap: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The resamples :func:`resampled` would draw from ``rng``, as counts: chunks [B, n] of how
    often each of the n rows was drawn. A statistic that needs only the counts (e.g. one of
    ranks: :func:`centred_rank_products`) then never materialises or sorts a resample."""
    for rows in _draws(n, bootstrap=bootstrap, rng=rng):
        offsets = np.arange(len(rows))[:, np.newaxis] * n
        yield np.bincount((rows + offsets).ravel(), minlength=rows.size).reshape(rows.shape)


def _draws(n: int, *, bootstrap: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of ``bootstrap`` resamples of n rows, in chunks [<= _CHUNK, n]."""
    for start in range(0, bootstrap, _CHUNK):
        yield rng.integers(0, n, size=(min(_CHUNK, bootstrap - start), n))


def centred_rank_products(data: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of products of centred average ranks, within each resample: [B, k, k].

    ``data`` [n, k] holds k variables of n rows, ``counts`` [B, n] how often each row is in
    each resample (:func:`resampled_counts`; all ones for the sample itself). Entry (a, b) of a
    resample is sum over its members of (rank_a - mean rank) (rank_b - mean rank), ranks as
    ``scipy.stats.rankdata`` gives them (ties share their average; ``inf`` ranks above every
    finite value); every rank correlation is a function of these sums. A member's rank is the
    number of drawn values below its value plus half of (those equal to it, plus one), so the
    rows are sorted once instead of every resample. Twice a centred rank is an integer, so the
    sums are accumulated exactly, in integers, whatever their order.
    """
    data = np.asarray(data, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    size = counts.sum(axis=1, keepdims=True)
    doubled = [_doubled_ranks(column, counts) - (size + 1) for column in data.T]
    products = np.empty((len(counts), len(doubled), len(doubled)))
    for a, b in itertools.combinations_with_replacement(range(len(doubled)), 2):
        sums = np.einsum("bn,bn->b", counts * doubled[a], doubled[b])
        products[:, a, b] = products[:, b, a] = sums / 4.0
    return products


def _doubled_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Twice the average rank [B, n] of each row's value within each resample of ``counts``:
    2 (drawn below) + (drawn equal) + 1."""
    distinct, group = np.unique(values, return_inverse=True)
    order = np.argsort(group, kind="stable")
    drawn = np.take(counts, order, axis=1)
    if len(distinct) < len(values):  # ties: add up the rows of each distinct value
        drawn = np.add.reduceat(
            drawn, np.searchsorted(group[order], np.arange(len(distinct))), axis=1
        )
    doubled = np.cumsum(drawn, axis=1)
    doubled *= 2
    doubled -= drawn
    doubled += 1
    return np.take(doubled, group, axis=1)


def bootstrap_ci(
    data: np.ndarray,
    statistic: Callable[..., np.ndarray],
    *,
    bootstrap: int,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over the rows of ``data``.

    Args:
        data, statistic, bootstrap, rng: as for :func:`resampled`.

    Returns:
        (low, high) percentiles of the resampled statistic; nan-valued resamples (e.g. a
        correlation of a constant resample) are ignored.
    """
    values = resampled(data, statistic, bootstrap=bootstrap, rng=rng)
    return percentile_interval(values, confidence)


def rank_bootstrap_ci(
    data: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    bootstrap: int,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """:func:`bootstrap_ci` of a rank statistic, from the same draws: ``statistic`` maps the
    :func:`centred_rank_products` [B, k, k] of the resamples of ``data`` [n, k] to [B]."""
    chunks = resampled_counts(len(data), bootstrap=bootstrap, rng=rng)
    values = np.concatenate([statistic(centred_rank_products(data, counts)) for counts in chunks])
    return percentile_interval(values, confidence)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile CI of resampled values [B]; nan resamples (a constant one) are ignored."""
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every resample nan: (nan, nan)
        low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(
    data: np.ndarray, *, bootstrap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CIs of the column means of ``data`` [n, k]: (low [k], high [k]).

    One resample of rows serves every column, so the k intervals come from the same draws. A
    resample's means are its draw counts times the data over n (:func:`resampled_counts`), one
    matrix product per chunk instead of a copy of every resample.
    """
    data = np.asarray(data, dtype=np.float64)
    chunks = resampled_counts(len(data), bootstrap=bootstrap, rng=rng)
    means = np.concatenate([counts @ data / len(data) for counts in chunks])
    low, high = np.quantile(means, TAILS, axis=0)
    return low, high
