"""robustmap.pgd against exact answers: linear models, whose minimal weighted L-inf distance to
another class has a closed form, and the statuses' edge cases."""

import numpy as np
import pytest
from test_search import (
    CLASSES,
    EPS_MAX,
    PIXELS,
    linear_model,
    random_linear_problem,
    row_independent_problem,
)

from robustmap import model_calls, pgd, scheduler, search

ROUND_OFF = 1e-4  # relative: float32 logits and box bounds move a flip boundary by ~1e-5


def exact_minimum(weight, bias, images, labels, weights=None) -> np.ndarray:
    """min_j (z_y - z_j) / sum_i w_i |W_y,i - W_j,i| per image, float64 [N]: the smallest
    weighted L-inf distance to another class while the box stays inside [0, 1]."""
    x = images.reshape(len(images), -1).astype(np.float64)
    logits = x @ weight + bias
    rows = np.arange(len(x))
    w = np.ones_like(x) if weights is None else np.repeat(weights.reshape(len(x), -1), 3, axis=1)
    gap = logits[rows, labels][:, None] - logits
    # |W_y,i - W_j,i| for every image's y, class j and pixel i: [N, CLASSES, PIXELS]
    spread = np.abs(weight.T[labels][:, None, :] - weight.T[None, :, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = gap / np.einsum("nkp,np->nk", spread, w)
    distance[rows, labels] = np.inf
    return distance.min(axis=1)


def run_with_fgsm_upper(model, images, labels, weights, **kwargs):
    """The FGSM result and the PGD result started from it, one search named ``s``."""
    fgsm = search.minimal_epsilon(model, images, labels, weights=weights, eps_max=EPS_MAX)
    result = pgd.minimal_epsilons(
        model,
        images,
        labels,
        weights={"s": weights},
        upper={"s": fgsm.epsilon},
        eps_max=EPS_MAX,
        **kwargs,
    )["s"]
    return fgsm, result


@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_linear_models_reach_the_exact_minimum(weighted):
    ratios, passes = [], []
    for seed in (0, 1, 2):
        model, weight, bias, images, labels = random_linear_problem(seed, n=16)
        channel = np.random.default_rng(100 + seed).uniform(0.0, 1.0, images.shape[:3])
        weights = channel if weighted else None
        exact = exact_minimum(weight, bias, images, labels, weights)
        assert np.all(exact < 0.3), "the box must stay inside [0, 1] (images in [0.3, 0.7])"

        fgsm, result = run_with_fgsm_upper(model, images, labels, weights, batch_size=8)

        reachable = exact < EPS_MAX
        assert reachable.sum() >= 8
        assert np.all(result.status[reachable] == search.FLIPPED)
        found = result.epsilon[reachable]
        assert np.all(found >= exact[reachable] * (1 - ROUND_OFF))
        assert np.all(result.epsilon_low[reachable] < found)
        assert np.all(found <= result.epsilon_low[reachable] * 1.01 * (1 + ROUND_OFF))
        assert np.all(result.epsilon <= fgsm.epsilon)
        flipped = result.status == search.FLIPPED
        assert np.all(result.adversarial_label[flipped] != labels[flipped])
        ratios += list(found / exact[reachable])
        passes += list(result.gradient_passes[reachable])
    assert np.mean(np.array(ratios) <= 1.02) >= 0.9
    assert np.median(passes) <= 40


def test_the_answer_never_exceeds_upper_even_when_pgd_cannot_beat_it():
    model, weight, bias, images, labels = random_linear_problem(3, n=8)
    exact = exact_minimum(weight, bias, images, labels)
    upper = exact * 1.005  # known to flip (a box containing the closest point), within rel_tol

    result = pgd.minimal_epsilons(
        model, images, labels, weights={"u": None}, upper={"u": upper}, eps_max=EPS_MAX
    )["u"]

    assert np.all(result.status == search.FLIPPED)
    assert np.all(result.epsilon <= search.as_float32_exact(upper))
    assert np.all(result.epsilon >= exact * (1 - ROUND_OFF))


def test_without_upper_the_search_starts_at_eps_max_and_censors_no_flip():
    model, weight, bias, images, labels = random_linear_problem(4, n=8)
    exact = exact_minimum(weight, bias, images, labels)
    eps_max = float(np.median(exact))

    result = pgd.minimal_epsilons(
        model, images, labels, weights={"u": None}, eps_max=eps_max, steps=5
    )["u"]

    below = exact < eps_max * (1 - ROUND_OFF)
    above = exact > eps_max * (1 + ROUND_OFF)
    assert np.all(result.status[below] == search.FLIPPED)
    assert np.all(result.epsilon[below] <= eps_max)
    assert np.all(result.epsilon[below] >= exact[below] * (1 - ROUND_OFF))
    assert np.all(result.status[above] == search.NOT_FLIPPED)
    assert np.all(np.isinf(result.epsilon[above]))
    assert np.all(result.epsilon_low[above] == search.as_float32_exact(eps_max))
    # The clean pass and one stage at eps_max, which the stall rule ends at its STALL_AFTER-th
    # point: a linear model's margin stops falling once the steps have crossed the box.
    assert np.all(result.gradient_passes[above] == 1 + pgd.STALL_AFTER)
    assert pgd.STALL_AFTER < 5


def test_a_stage_stalls_once_its_average_fall_cannot_reach_the_boundary():
    brackets = pgd._Brackets.empty(np.ones(2))
    row = np.arange(2)
    # After 3 of 10 passes, row 0 falls 1.0 a pass and could still flip in the 7 passes left
    # from 5.0; row 1 falls 0.5 a pass and could not (3.5 < 5.0).
    for margins in ([7.0, 6.0], [6.0, 5.5]):
        brackets.count_pass(row, np.array(margins))
        assert not brackets.stalled(row, steps=10).any()
    brackets.count_pass(row, np.array([5.0, 5.0]))
    assert brackets.stalled(row, steps=10).tolist() == [False, True]


@pytest.mark.parametrize("streak", [1, 2, 3, 4, 5, 9])
def test_flipping_stages_in_a_row_descend_ever_faster_until_one_fails(streak):
    brackets = pgd._Brackets.empty(np.ones(1))
    brackets.streak[:] = streak
    close = np.array([0.9999])  # a linear estimate from far beyond the boundary: just below eps
    radius = brackets.next_radius(np.arange(1), close, rel_tol=0.01)
    shrink = min(1.01**2 ** (streak - 1), pgd.DESCENT_CAP)
    assert radius[0] == search.as_float32_exact(1 / shrink)
    brackets.lo[:] = 0.5  # a stage failed: the bracket closes by estimates and bisection
    expected = 1 / 1.01 if streak == 1 else np.sqrt(0.5)
    assert brackets.next_radius(np.arange(1), close, rel_tol=0.01)[0] == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_epsilons_do_not_depend_on_the_batch_size(kind):
    model, images, labels = row_independent_problem(kind)
    weights = {"u": None, "w": np.random.default_rng(1).uniform(0, 1, images.shape[:3])}
    results = [
        pgd.minimal_epsilons(model, images, labels, weights=weights, batch_size=size)
        for size in (1, 3, 64)
    ]
    for other in results[1:]:
        for name in weights:
            assert np.array_equal(other[name].epsilon, results[0][name].epsilon)
            assert np.array_equal(other[name].epsilon_low, results[0][name].epsilon_low)
            assert np.array_equal(other[name].gradient_passes, results[0][name].gradient_passes)
    assert np.sum(results[0]["u"].status == search.FLIPPED) >= 5


def test_misclassified_and_zero_gradient_images_are_not_searched():
    model, _, _, images, labels = random_linear_problem(4, n=5)
    wrong = (labels + 1) % CLASSES
    misclassified = pgd.minimal_epsilons(model, images, wrong, weights={"u": None})["u"]
    assert list(misclassified.status) == [search.MISCLASSIFIED_AT_START] * 5
    assert np.all(np.isnan(misclassified.epsilon))

    bias = np.zeros(CLASSES)
    bias[2] = 1.0
    constant = linear_model(np.zeros((PIXELS, CLASSES)), bias)
    zero = pgd.minimal_epsilons(constant, images, np.full(5, 2), weights={"u": None})["u"]
    assert list(zero.status) == [search.ZERO_GRADIENT] * 5
    assert np.all(np.isinf(zero.epsilon))

    for result in (misclassified, zero):
        assert np.all(result.adversarial_label == -1)
        assert np.all(result.gradient_passes == 1)
        assert list(result.to_frame().columns) == [
            "epsilon",
            "epsilon_low",
            "adversarial_label",
            "status",
            "gradient_passes",
        ]


def test_the_adversarial_point_flips_at_the_reported_epsilon():
    """A flipping stage ends at its first flipping point, so the attack's own result can be
    rebuilt: PGD at the reported epsilon, from the FGSM point, reaches a flip."""
    model, weight, bias, images, labels = random_linear_problem(8, n=6)
    fgsm, result = run_with_fgsm_upper(model, images, labels, None, batch_size=4)
    flipped = result.status == search.FLIPPED
    assert flipped.sum() >= 3
    # The label is the one the model predicts at some point inside the reported box: for a
    # linear model, at the box's corner along the winning class's weights.
    x = images[flipped].reshape(flipped.sum(), -1).astype(np.float64)
    y, target = labels[flipped], result.adversarial_label[flipped]
    corner = np.sign(weight.T[target] - weight.T[y]) * result.epsilon[flipped][:, None]
    logits = np.clip(x + corner, 0, 1) @ weight + bias
    assert np.all(logits.argmax(axis=1) != y)


@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_the_witness_flips_and_its_weighted_norm_is_the_epsilon(weighted):
    """delta is an adversarial perturbation of the reported size: x + delta is in [0, 1], flips,
    and its weighted L-inf norm rounded up to a float32 is the epsilon, unless that is above the
    stage radius (float32 round-off of x + delta - x); never above FGSM's."""
    model, weight, bias, images, labels = random_linear_problem(9, n=12)
    weights = np.random.default_rng(9).uniform(0.0, 1.0, images.shape[:3]) if weighted else None
    fgsm, result = run_with_fgsm_upper(model, images, labels, weights, batch_size=4)
    flipped = result.status == search.FLIPPED
    assert flipped.sum() >= 6 and result.delta.dtype == np.float32
    assert result.delta.shape == images.shape and not result.delta[~flipped].any()
    adversarial = images[flipped] + result.delta[flipped]
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    # the model's own float32 logits: a witness lies within round-off of the boundary
    predicted = model.predict(adversarial, verbose=0).argmax(axis=1)
    assert np.array_equal(predicted, result.adversarial_label[flipped])
    w = np.ones(images.shape) if weights is None else np.repeat(weights[..., None], 3, axis=3)
    norm = (np.abs(result.delta[flipped]) / w[flipped]).reshape(flipped.sum(), -1).max(axis=1)
    # the norm rounded up, or the stage radius where x + delta - x rounded past it (by up to an
    # ulp of x over w_i: more where weights are small)
    assert np.all(result.epsilon[flipped] <= search.float32_at_least(norm))
    np.testing.assert_allclose(result.epsilon[flipped], norm, rtol=ROUND_OFF)
    assert np.all(result.epsilon <= fgsm.epsilon)


def test_a_recorded_clean_pass_admits_without_a_model_call(monkeypatch):
    """Given FGSM's recorded clean pass, PGD spends no gradient call on admission, and finds
    exactly what it finds with its own clean pass."""
    model, _, _, images, labels = random_linear_problem(10, n=9)
    weights = {"u": None, "w": np.random.default_rng(10).uniform(0, 1, images.shape[:3])}
    clean = scheduler.CleanPasses(len(images))
    fgsm = search.minimal_epsilons(
        model, images, labels, weights=weights, eps_max=EPS_MAX, batch_size=4, clean_out=clean
    )
    upper = {name: result.epsilon for name, result in fgsm.items()}
    own = pgd.minimal_epsilons(
        model, images, labels, weights=weights, upper=upper, eps_max=EPS_MAX, batch_size=4
    )
    calls = []
    real = model_calls.CompiledCalls.logits_and_gradient

    def counted(self, x, y):
        calls.append(len(x))
        return real(self, x, y)

    monkeypatch.setattr(model_calls.CompiledCalls, "logits_and_gradient", counted)
    reused = pgd.minimal_epsilons(
        model,
        images,
        labels,
        weights=weights,
        upper=upper,
        eps_max=EPS_MAX,
        batch_size=4,
        clean=clean,
    )
    assert calls == []
    for name in weights:
        for field in ("epsilon", "epsilon_low", "adversarial_label", "status", "gradient_passes"):
            assert np.array_equal(getattr(reused[name], field), getattr(own[name], field)), field
        assert np.array_equal(reused[name].delta, own[name].delta)
    assert np.sum(reused["u"].status == search.FLIPPED) >= 5
