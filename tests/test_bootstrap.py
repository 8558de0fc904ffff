"""Tests of robustmap.bootstrap: the rank statistics of resamples, computed from draw counts,
against the same resamples materialised and ranked by scipy."""

import math

import numpy as np
import pytest
import scipy.stats

from robustmap import bootstrap


def tied_censored_sample(n: int, seed: int) -> np.ndarray:
    """[n, 3]: a continuous column, a coarse one with many ties, epsilons with inf (censored)."""
    rng = np.random.default_rng(seed)
    epsilon = rng.lognormal(-6, 1.5, n)
    epsilon[rng.random(n) < 0.2] = math.inf
    return np.column_stack([rng.normal(size=n), rng.integers(0, 5, n).astype(float), epsilon])


def materialised_products(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The definition: rank each resample with scipy, centre, sum the products. [B, k, k]."""
    ranks = scipy.stats.rankdata(data[rows], axis=1)
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    return np.einsum("bni,bnj->bij", centred, centred)


def test_counts_are_the_draws_of_resampled():
    n, draws = 37, 600  # more than one chunk, the last one partial
    seen = bootstrap.resampled(
        np.arange(n), lambda rows, axis: rows, bootstrap=draws, rng=np.random.default_rng(5)
    ).astype(int)
    counts = np.concatenate(
        list(bootstrap.resampled_counts(n, bootstrap=draws, rng=np.random.default_rng(5)))
    )
    assert counts.shape == (draws, n)
    assert np.array_equal(counts, [np.bincount(row, minlength=n) for row in seen])


@pytest.mark.parametrize("n", [2, 9, 200])
def test_rank_products_from_counts_equal_the_materialised_resamples_exactly(n):
    data = tied_censored_sample(n, seed=n)
    rows = np.random.default_rng(1).integers(0, n, size=(64, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in rows])
    # exact: twice a centred rank is an integer, so both sums are exact in float64
    assert np.array_equal(
        bootstrap.centred_rank_products(data, counts), materialised_products(data, rows)
    )


def test_rank_products_of_the_sample_itself():
    x, y = np.array([3.0, 1.0, 2.0, math.inf]), np.array([1.0, 1.0, 5.0, 7.0])
    products = bootstrap.centred_rank_products(np.column_stack([x, y]), np.ones((1, 4)))
    # ranks x: 3 1 2 4, y: 1.5 1.5 3 4; centred by 2.5
    expected_xy = 0.5 * -1 + -1.5 * -1 + -0.5 * 0.5 + 1.5 * 1.5
    assert products[0].tolist() == [[5.0, expected_xy], [expected_xy, 4.5]]


def test_rank_bootstrap_ci_equals_bootstrap_ci_on_the_same_draws():
    data = tied_censored_sample(150, seed=3)[:, 1:]

    def spearman_of_resamples(samples, axis):
        ranks = scipy.stats.rankdata(samples, axis=axis)
        centred = ranks - ranks.mean(axis=axis, keepdims=True)
        cov = (centred[..., 0] * centred[..., 1]).sum(axis=axis)
        return cov / np.sqrt((centred[..., 0] ** 2).sum(axis) * (centred[..., 1] ** 2).sum(axis))

    def spearman_of_products(products):
        return products[:, 0, 1] / np.sqrt(products[:, 0, 0] * products[:, 1, 1])

    expected = bootstrap.bootstrap_ci(
        data, spearman_of_resamples, bootstrap=700, rng=np.random.default_rng(11)
    )
    got = bootstrap.rank_bootstrap_ci(
        data, spearman_of_products, bootstrap=700, rng=np.random.default_rng(11)
    )
    assert got == expected
    assert -1 < got[0] < got[1] < 1


def test_mean_ci_from_counts_equals_the_materialised_resamples():
    rng = np.random.default_rng(2)
    hits = (rng.random((300, 4)) < [0.1, 0.5, 0.9, 1.0]).astype(float)  # 0/1: sums are exact
    energy = rng.random((300, 1))

    def materialised(data):
        means = bootstrap.resampled(
            data, lambda s, axis: s.mean(axis=axis), bootstrap=900, rng=np.random.default_rng(4)
        )
        return np.quantile(means, bootstrap.TAILS, axis=0)

    low, high = bootstrap.mean_ci(hits, bootstrap=900, rng=np.random.default_rng(4))
    assert np.array_equal([low, high], materialised(hits))
    assert low[3] == high[3] == 1.0 and low[0] < 0.1 < high[0]
    low, high = bootstrap.mean_ci(energy, bootstrap=900, rng=np.random.default_rng(4))
    np.testing.assert_allclose([low, high], materialised(energy), rtol=0, atol=1e-15)
