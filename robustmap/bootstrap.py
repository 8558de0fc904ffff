"""Seeded percentile bootstrap: the one resampling scheme behind every confidence interval.

Each estimate draws from its own generator, seeded by the run's ``seed`` and a CRC-32 of the
estimate's key (e.g. model, test, a, b), so an interval does not move when other rows, models or
classes are added to a table. This module imports nothing else of robustmap, so the tables
(:mod:`robustmap.aggregate`) and the tests (:mod:`robustmap.statistics`) can both use it.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Hashable, Sequence

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
    values = []
    for start in range(0, bootstrap, _CHUNK):
        draws = rng.integers(0, len(data), size=(min(_CHUNK, bootstrap - start), len(data)))
        values.append(statistic(data[draws], axis=1))
    return np.concatenate(values)


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
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(
    data: np.ndarray, *, bootstrap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CIs of the column means of ``data`` [n, k]: (low [k], high [k]).

    One resample of rows serves every column, so the k intervals come from the same draws.
    """
    means = resampled(
        data, lambda samples, axis: samples.mean(axis=axis), bootstrap=bootstrap, rng=rng
    )
    low, high = np.quantile(means, TAILS, axis=0)
    return low, high
