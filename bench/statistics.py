"""Time the rank-correlation bootstrap: resamples ranked one by one against ranks from draw counts.

    python bench/statistics.py [--sizes 1000 10000] [--bootstrap 2000] [--repeats 2]
    python bench/statistics.py --results RESULTS   # also: statistics_table of a finished run

For each sample size n it builds a score, a censored epsilon (inf for 20%) and a margin, and
takes the percentile bootstrap CI of Spearman's rho (2 variables) and of the partial Spearman
(3 variables) two ways from the same seeded draws: ``bootstrap_ci`` with each resample
materialised and ranked by ``scipy.stats.rankdata`` (the definition, and robustmap's way up to
44a0e19), and ``rank_bootstrap_ci`` (robustmap's path now). It prints the best time of each over
``--repeats`` alternating rounds, their ratio, and whether the intervals are identical (Spearman:
exactly; partial: to float64 round-off, the residual sums are taken in another order).
With ``--results`` it also times ``statistics.statistics_table`` on that run's per-image table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.stats

from robustmap import bootstrap, statistics, tables


def main() -> None:
    args = parse_args()
    print(f"B = {args.bootstrap} resamples; best of {args.repeats} alternating rounds")
    print(f"{'n':>6}  {'statistic':<8}  {'ranked s':>8}  {'counts s':>8}  {'ratio':>6}  same CI")
    for n in args.sizes:
        data = sample(n)
        for name, columns, materialised, from_counts in STATISTICS:
            best = {"ranked": np.inf, "counts": np.inf}
            intervals = {}
            for _ in range(args.repeats):
                for path, ci, statistic in (
                    ("ranked", bootstrap.bootstrap_ci, materialised),
                    ("counts", bootstrap.rank_bootstrap_ci, from_counts),
                ):
                    rng = np.random.default_rng(0)
                    start = time.perf_counter()
                    intervals[path] = ci(
                        data[:, columns], statistic, bootstrap=args.bootstrap, rng=rng
                    )
                    best[path] = min(best[path], time.perf_counter() - start)
            ratio = best["counts"] / best["ranked"]
            same = intervals["ranked"] == intervals["counts"]
            difference = np.max(np.abs(np.subtract(intervals["ranked"], intervals["counts"])))
            print(
                f"{n:>6}  {name:<8}  {best['ranked']:>8.2f}  {best['counts']:>8.2f}  "
                f"{ratio:>6.2f}  {same} (max difference {difference:.1e})"
            )
    if args.results:
        per_image = tables.read_parquet(args.results / "tables" / "per_image.parquet")
        start = time.perf_counter()
        tests = statistics.statistics_table(per_image, bootstrap=args.bootstrap, seed=0)
        seconds = time.perf_counter() - start
        print(f"statistics_table of {args.results}: {len(tests)} rows in {seconds:.1f} s")


def sample(n: int) -> np.ndarray:
    """[n, 3]: score, epsilon (lognormal, 20% censored as inf, coupled to both), margin."""
    rng = np.random.default_rng(n)
    margin = rng.gamma(2.0, 2.0, n)
    score = 0.3 * margin + rng.normal(size=n)
    epsilon = np.exp(-7 + 0.2 * margin + 0.3 * score + rng.normal(size=n))
    epsilon[rng.random(n) < 0.2] = np.inf
    return np.column_stack([score, epsilon, margin])


def ranked_spearman(samples: np.ndarray, axis: int) -> np.ndarray:
    centred = _centred_ranks(samples, axis)
    return _correlation(centred[..., 0], centred[..., 1], axis)


def ranked_partial(samples: np.ndarray, axis: int) -> np.ndarray:
    centred = _centred_ranks(samples, axis)
    control = centred[..., 2]
    norm = (control**2).sum(axis=axis, keepdims=True)
    residual = [
        centred[..., i] - (centred[..., i] * control).sum(axis=axis, keepdims=True) / norm * control
        for i in (0, 1)
    ]
    return _correlation(*residual, axis)


def _centred_ranks(samples: np.ndarray, axis: int) -> np.ndarray:
    ranks = scipy.stats.rankdata(samples, axis=axis)
    return ranks - ranks.mean(axis=axis, keepdims=True)


def _correlation(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))


STATISTICS = (
    ("spearman", [0, 1], ranked_spearman, statistics.rank_correlation),
    ("partial", [0, 1, 2], ranked_partial, statistics.partial_rank_correlation),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results", type=Path, help="a finished run's results/ folder")
    return parser.parse_args()


if __name__ == "__main__":
    main()
