"""Censoring-aware summaries of epsilons: quantiles, the summary of a group, the median's CI.

Epsilon conventions (from :mod:`robustmap.search`):

* finite epsilon: the image flipped at that epsilon (an *observed* value);
* ``inf``: the image did not flip up to ``eps_max`` (``not_flipped``, ``zero_gradient``): it is
  *censored*, its minimal epsilon is larger than every epsilon searched;
* ``nan``: no epsilon exists (the image was not searched because the model got it wrong, or the
  search found it ``misclassified_at_start``).

Order statistics treat a censored epsilon as larger than every observed one, which is exactly what
``inf`` does inside a sort: a median, quartile or rank that lands on a censored image is ``inf``
and flagged, never replaced by a number. Means cannot be formed that way, so the tables report
the mean over flipped images only and name it so (``mean_flipped``).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from robustmap.bootstrap import TAILS, resampled


def censored_quantiles(samples: np.ndarray, q: float, axis: int = -1) -> np.ndarray:
    """The ``q`` quantile along ``axis`` (linear interpolation) of samples in which ``inf``
    marks censoring: the one quantile rule of the tables.

    numpy's interpolation would give ``nan`` between a finite value and ``inf``; a quantile that
    touches a censored order statistic is censored itself, so it is ``inf`` here. ``samples``
    must not be empty along ``axis``.
    """
    ordered = np.sort(np.asarray(samples, dtype=np.float64), axis=axis)
    position = q * (ordered.shape[axis] - 1)
    below = np.take(ordered, int(np.floor(position)), axis=axis)
    above = np.take(ordered, int(np.ceil(position)), axis=axis)
    with np.errstate(invalid="ignore"):
        middle = below + (position - np.floor(position)) * (above - below)
    return np.where(np.isinf(above), np.inf, middle)


def censored_quantile(values: np.ndarray, q: float) -> float:
    """:func:`censored_quantiles` of one sample; ``nan`` for an empty one."""
    values = np.asarray(values, dtype=np.float64)
    return float(censored_quantiles(values, q)) if values.size else np.nan


def epsilon_summary(epsilons: np.ndarray) -> dict[str, float | int | bool]:
    """Censoring-aware summary of one group's epsilons (float64, inf = censored, nan = undefined).

    Returns:
        n (epsilons defined: flipped + censored), n_flipped, n_censored, n_undefined,
        mean_flipped (mean over flipped images only), median, q25, q75, iqr (``inf`` where a
        quantile falls on a censored image; ``iqr`` is then ``inf`` too), median_censored
        (the median is censored: more than half the images never flipped). Quantiles follow
        :func:`censored_quantiles`.
    """
    epsilons = np.asarray(epsilons, dtype=np.float64)
    defined = epsilons[~np.isnan(epsilons)]
    flipped = defined[np.isfinite(defined)]
    summary: dict[str, float | int | bool] = {
        "n": int(defined.size),
        "n_flipped": int(flipped.size),
        "n_censored": int(defined.size - flipped.size),
        "n_undefined": int(epsilons.size - defined.size),
        "mean_flipped": float(flipped.mean()) if flipped.size else np.nan,
    }
    q25, median, q75 = (censored_quantile(defined, q) for q in (0.25, 0.5, 0.75))
    summary.update(
        median=median,
        q25=q25,
        q75=q75,
        iqr=np.inf if np.isinf(q75) else q75 - q25,
        median_censored=bool(np.isinf(median)),
    )
    return summary


def median_ci(
    epsilons: np.ndarray, *, bootstrap: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the censoring-aware median (``inf`` = censored).

    Each resample's median follows :func:`censored_quantiles`, and so do the 2.5% and 97.5%
    points of the resampled medians: a bound that touches a censored median is ``inf``.
    Undefined (nan) epsilons are left out; fewer than two defined values give (nan, nan).
    """
    defined = np.asarray(epsilons, dtype=np.float64)
    defined = defined[~np.isnan(defined)]
    if defined.size < 2:
        return np.nan, np.nan
    medians = resampled(defined, partial(censored_quantiles, q=0.5), bootstrap=bootstrap, rng=rng)
    return censored_quantile(medians, TAILS[0]), censored_quantile(medians, TAILS[1])
