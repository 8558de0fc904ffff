"""robustmap.search against exact answers: linear models, a non-monotone path, edge cases."""

import keras
import numpy as np
import pytest

from robustmap import model_calls, search

SHAPE = (6, 6, 3)
PIXELS = int(np.prod(SHAPE))
CLASSES = 7
TOL = 1e-5
EPS_MAX = 0.25  # images lie in [0.3, 0.7]: clipping never acts below 0.3
FLOAT32_SLACK = 1e-6  # float32 logits move a flip boundary by ~1e-7


def linear_model(weight: np.ndarray, bias: np.ndarray) -> keras.Model:
    """logits = flatten(x) @ weight + bias; weight float [PIXELS, CLASSES]."""
    inputs = keras.Input(SHAPE)
    dense = keras.layers.Dense(weight.shape[1])
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([weight.astype(np.float32), bias.astype(np.float32)])
    return model


def random_linear_problem(seed: int, n: int = 24):
    """A random linear model, interior images and their (correct) labels, all float64 too."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 1.0, (PIXELS, CLASSES))
    bias = rng.normal(0.0, 1.0, CLASSES)
    images = rng.uniform(0.3, 0.7, (n, *SHAPE)).astype(np.float32)
    logits = images.reshape(n, -1).astype(np.float64) @ weight + bias
    return linear_model(weight, bias), weight, bias, images, logits.argmax(axis=1)


def exact_linear_epsilon(weight, bias, images, labels, weights=None):
    """min_k (z_y - z_k) / ((W_k - W_y) . d) over positive denominators; inf if none <= EPS_MAX.

    Returns the epsilons float64 [N] and the class that crosses first int [N].
    """
    x = images.reshape(len(images), -1).astype(np.float64)
    logits = x @ weight + bias
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    gradient = (softmax - np.eye(weight.shape[1])[labels]) @ weight.T  # d CE / dx, [N, PIXELS]
    w = (
        np.ones_like(images)
        if weights is None
        else np.broadcast_to(weights[..., None], images.shape)
    )
    direction = np.sign(gradient) * w.reshape(len(images), -1)
    rows = np.arange(len(images))
    gap = logits[rows, labels][:, None] - logits  # z_y - z_k
    rate = direction @ weight - (direction @ weight)[rows, labels][:, None]  # (W_k - W_y) . d
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(rate > 0, gap / rate, np.inf)
    crossing[rows, labels] = np.inf
    return crossing.min(axis=1), crossing.argmin(axis=1), crossing


@pytest.mark.parametrize("engine", model_calls.ENGINES)
@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_linear_models_match_the_closed_form(weighted, engine):
    for seed in (0, 1):
        model, weight, bias, images, labels = random_linear_problem(seed)
        rng = np.random.default_rng(100 + seed)
        weights = rng.uniform(0.0, 1.0, images.shape[:3]) if weighted else None
        expected, first_class, crossing = exact_linear_epsilon(
            weight, bias, images, labels, weights
        )

        result = search.minimal_epsilon(
            model,
            images,
            labels,
            weights=weights,
            eps_max=EPS_MAX,
            tol=TOL,
            batch_size=8,
            engine=engine,
        )

        reachable = expected <= EPS_MAX
        assert reachable.sum() >= len(images) // 2, "the problem should mostly flip"
        assert np.all(result.status[reachable] == search.FLIPPED)
        assert np.all(result.status[~reachable] == search.NOT_FLIPPED)
        assert np.all(np.isinf(result.epsilon[~reachable]))
        found = result.epsilon[reachable]
        assert np.all(found >= expected[reachable] - FLOAT32_SLACK)
        assert np.all(found <= expected[reachable] + TOL + FLOAT32_SLACK)
        # The class that crosses first is the adversarial label, unless a second one is within tol.
        second = np.sort(crossing, axis=1)[:, 1]
        clear = reachable & (second - expected > 2 * TOL)
        assert np.array_equal(result.adversarial_label[clear], first_class[clear])
        assert not result.non_monotone.any()  # a linear path flips once and stays flipped
        assert np.median(result.forward_passes[reachable]) <= 20


def window_model(window: tuple[float, float], later_flip: float) -> keras.Model:
    """Class 1 wins for s = mean(x) - 0.5 in the open ``window`` and beyond ``later_flip``.

    z0 = 0, z1 = max(r - |s - m|, s - later_flip) with m, r the window's centre and half-width;
    at s = 0 the loss of class 0 increases with every pixel, so d = +1 and s(eps) = eps.
    """
    centre, half = (window[0] + window[1]) / 2, (window[1] - window[0]) / 2
    inputs = keras.Input(SHAPE)
    mean = keras.layers.Dense(1)
    s = mean(keras.layers.Flatten()(inputs))
    mean.set_weights([np.full((PIXELS, 1), 1 / PIXELS, np.float32), np.array([-0.5], np.float32)])

    def logits(s):
        z1 = keras.ops.maximum(half - keras.ops.abs(s - centre), s - later_flip)
        return keras.ops.concatenate([keras.ops.zeros_like(s), z1], axis=1)

    return keras.Model(inputs, keras.layers.Lambda(logits)(s))


@pytest.mark.parametrize("engine", model_calls.ENGINES)
def test_first_narrow_window_is_found_before_a_wider_later_one(engine):
    grid = search.default_grid(eps_max=1.0, tol=TOL)
    inside = grid[np.argmin(np.abs(grid - 0.01))]  # a grid point inside the narrow window
    window = (0.9 * inside, 1.1 * inside)
    model = window_model(window, later_flip=0.3)
    images = np.full((2, *SHAPE), 0.5, np.float32)

    result = search.minimal_epsilon(model, images, np.zeros(2, np.int64), tol=TOL, engine=engine)

    assert np.all(result.status == search.FLIPPED)
    assert np.all(result.non_monotone)
    assert np.all(result.adversarial_label == 1)
    assert np.all(result.epsilon >= window[0] - FLOAT32_SLACK)
    assert np.all(result.epsilon <= window[0] + TOL + FLOAT32_SLACK)


@pytest.mark.parametrize("start", [1.1e-4, 3.7e-4, 2.9e-3, 0.021, 0.15])
def test_every_window_wider_than_the_grid_ratio_is_found(start):
    """A flip window (a, 1.04 r a), r the grid ratio, holds a grid point wherever it lies."""
    grid = search.default_grid(eps_max=1.0, tol=TOL)
    ratio = float(np.max(grid[1:] / grid[:-1]))
    window = (start, 1.04 * ratio * start)
    model = window_model(window, later_flip=0.45)  # s(eps) = eps stops at 0.5 (clipping)
    images = np.full((1, *SHAPE), 0.5, np.float32)

    result = search.minimal_epsilon(model, images, np.zeros(1, np.int64), tol=TOL)

    assert result.status[0] == search.FLIPPED
    assert window[0] - FLOAT32_SLACK <= result.epsilon[0] <= window[0] + TOL + FLOAT32_SLACK
    # non_monotone: the grid point after the first flipping one is past the window (no flip).
    after = grid[np.searchsorted(grid, result.epsilon[0]) + 1]
    assert result.non_monotone[0] == (window[1] <= after <= 0.45)


def test_a_monotone_path_is_not_marked_non_monotone():
    model = window_model((0.5, 0.6), later_flip=0.02)  # flips at 0.02 and stays flipped
    images = np.full((1, *SHAPE), 0.5, np.float32)
    result = search.minimal_epsilon(model, images, np.zeros(1, np.int64), tol=TOL)
    assert result.status[0] == search.FLIPPED and not result.non_monotone[0]
    assert 0.02 - FLOAT32_SLACK <= result.epsilon[0] <= 0.02 + TOL + FLOAT32_SLACK


@pytest.mark.parametrize("engine", model_calls.ENGINES)
def test_input_independent_logits_give_zero_gradient(engine):
    bias = np.zeros(CLASSES)
    bias[2] = 1.0
    model = linear_model(np.zeros((PIXELS, CLASSES)), bias)
    images = np.random.default_rng(0).uniform(0, 1, (3, *SHAPE)).astype(np.float32)
    result = search.minimal_epsilon(model, images, np.full(3, 2), engine=engine)
    assert list(result.status) == [search.ZERO_GRADIENT] * 3
    assert np.all(np.isinf(result.epsilon))
    assert np.all(result.adversarial_label == -1)
    assert np.all(result.forward_passes == 1)


def test_zero_weights_give_zero_gradient_only_where_they_vanish():
    model, _, _, images, labels = random_linear_problem(3, n=4)
    weights = np.ones(images.shape[:3])
    weights[1] = 0.0
    result = search.minimal_epsilon(model, images, labels, weights=weights, eps_max=EPS_MAX)
    assert result.status[1] == search.ZERO_GRADIENT
    assert search.ZERO_GRADIENT not in set(np.delete(result.status, 1))


@pytest.mark.parametrize("engine", model_calls.ENGINES)
def test_misclassified_images_are_not_searched(engine):
    model, _, _, images, labels = random_linear_problem(4, n=5)
    wrong = (labels + 1) % CLASSES
    result = search.minimal_epsilon(model, images, wrong, eps_max=EPS_MAX, engine=engine)
    assert list(result.status) == [search.MISCLASSIFIED_AT_START] * 5
    assert np.all(np.isnan(result.epsilon))
    assert np.all(result.adversarial_label == -1)
    assert np.all(result.forward_passes == 1)


@pytest.mark.parametrize("engine", model_calls.ENGINES)
def test_no_flip_up_to_eps_max_is_censored_not_dropped(engine):
    model, weight, bias, images, labels = random_linear_problem(5, n=12)
    expected, _, _ = exact_linear_epsilon(weight, bias, images, labels)
    eps_max = float(np.min(expected)) / 2
    result = search.minimal_epsilon(model, images, labels, eps_max=eps_max, tol=TOL, engine=engine)
    assert len(result.epsilon) == 12
    assert list(result.status) == [search.NOT_FLIPPED] * 12
    assert np.all(np.isinf(result.epsilon))
    grid_points = len(search.default_grid(eps_max=eps_max, tol=TOL))
    assert np.all(result.forward_passes == 1 + grid_points)


def small_conv_model() -> keras.Model:
    keras.utils.set_random_seed(7)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def row_independent_problem(kind: str):
    """A model whose rows are computed independently (``linear`` or ``conv``), 10 images and the
    labels it predicts for them (the linear model's are the true ones)."""
    model, _, _, images, labels = random_linear_problem(6, n=10)
    if kind == "conv":
        model = small_conv_model()
        labels = model.predict(images, verbose=0).argmax(axis=1)
    return model, images, labels


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_epsilons_do_not_depend_on_the_batch_size(kind):
    model, images, labels = row_independent_problem(kind)
    results = [
        search.minimal_epsilon(model, images, labels, eps_max=1.0, tol=TOL, batch_size=size)
        for size in (1, 3, 64)
    ]
    for other in results[1:]:
        assert np.array_equal(other.epsilon, results[0].epsilon)
        assert np.array_equal(other.status, results[0].status)
        assert np.array_equal(other.forward_passes, results[0].forward_passes)
    assert np.sum(results[0].status == search.FLIPPED) >= 5


def test_the_adversarial_image_at_epsilon_flips_and_progress_is_reported():
    model, _, _, images, labels = random_linear_problem(8, n=10)
    calls = []
    result = search.minimal_epsilon(
        model, images, labels, eps_max=EPS_MAX, batch_size=4, progress=lambda *a: calls.append(a)
    )
    done = [d for d, _ in calls]
    assert calls[-1] == (10, 10) and done == sorted(set(done)) and len(calls) <= 3
    assert all(total == 10 for _, total in calls)
    flipped = result.status == search.FLIPPED
    directions = search.fgsm_direction(model, images[flipped], labels[flipped])
    adversarial = search.perturb(images[flipped], directions, result.epsilon[flipped])
    predicted = model.predict(adversarial, verbose=0).argmax(axis=1)
    assert np.array_equal(predicted, result.adversarial_label[flipped])
    assert np.all(predicted != labels[flipped])


def test_result_frame_has_one_row_per_image():
    model, _, _, images, labels = random_linear_problem(9, n=3)
    frame = search.minimal_epsilon(model, images, labels, eps_max=EPS_MAX).to_frame()
    assert list(frame.columns) == [
        "epsilon",
        "adversarial_label",
        "forward_passes",
        "status",
        "non_monotone",
    ]
    assert len(frame) == 3


def test_all_ones_weights_equal_the_uniform_search_exactly():
    model, _, _, images, labels = random_linear_problem(6, n=8)
    uniform = search.minimal_epsilon(model, images, labels, eps_max=EPS_MAX, tol=TOL)
    ones = np.ones(images.shape[:3], np.float32)
    weighted = search.minimal_epsilon(model, images, labels, weights=ones, eps_max=EPS_MAX, tol=TOL)
    np.testing.assert_array_equal(weighted.epsilon, uniform.epsilon)
    np.testing.assert_array_equal(weighted.status, uniform.status)


def test_a_flat_grad_cam_makes_the_object_search_the_uniform_one():
    """A CAM with no location gives object weights of one everywhere (robustmap.measure)."""
    from robustmap import measure

    model, _, _, images, labels = random_linear_problem(7, n=5)
    flat_cam = np.full(images.shape[:3], 0.3, np.float32)
    weights = measure.search_weights("object", flat_cam, object_mask="soft", threshold="otsu")
    np.testing.assert_array_equal(weights, np.ones_like(flat_cam))
    uniform = search.minimal_epsilon(model, images, labels, eps_max=EPS_MAX, tol=TOL)
    weighted = search.minimal_epsilon(
        model, images, labels, weights=weights, eps_max=EPS_MAX, tol=TOL
    )
    np.testing.assert_array_equal(weighted.epsilon, uniform.epsilon)


def test_weights_by_kind_share_one_object_mask(monkeypatch):
    """One call gives each kind's weights, computing the object mask once for all of them."""
    from robustmap import heatmaps, measure

    rng = np.random.default_rng(13)
    cam = rng.uniform(0.0, 1.0, (3, 8, 8)).astype(np.float32)
    options = {"object_mask": "hard", "threshold": "otsu"}
    alone = {
        kind: measure.search_weights(kind, cam, **options)
        for kind in ("uniform", "object", "background")
    }
    masks = []
    original = heatmaps.object_weights

    def counted(*args, **kwargs):
        masks.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(heatmaps, "object_weights", counted)

    by_kind = measure.search_weights_by_kind(("uniform", "object", "background"), cam, **options)

    assert len(masks) == 1 and list(by_kind) == ["uniform", "object", "background"]
    assert by_kind["uniform"] is None
    np.testing.assert_array_equal(by_kind["object"], alone["object"])
    np.testing.assert_array_equal(by_kind["background"], 1.0 - alone["object"])
    assert set(np.unique(by_kind["object"])) == {0.0, 1.0}
    assert measure.search_weights_by_kind(["uniform"], None, **options) == {"uniform": None}
    with pytest.raises(ValueError, match="background search needs the shard's Grad-CAM"):
        measure.search_weights_by_kind(["uniform", "background"], None, **options)
    with pytest.raises(ValueError, match="unknown search kind 'edge'"):
        measure.search_weights_by_kind(["edge"], cam, **options)


def test_a_straight_margin_is_refined_in_at_most_two_probes():
    """Two classes, no clipping: m(eps) is a straight line, so the first aim is the root itself.

    That probe lands on one side of the root; the tol step from it lands on the other side and
    closes the bracket.
    """
    _, weight, bias, images, _ = random_linear_problem(11, n=32)
    two = weight[:, :2], bias[:2]
    model = linear_model(*two)
    logits = images.reshape(len(images), -1).astype(np.float64) @ two[0] + two[1]
    labels = logits.argmax(axis=1)
    expected, _, _ = exact_linear_epsilon(*two, images, labels)
    reachable = expected <= EPS_MAX
    assert reachable.sum() >= 8

    result = search.minimal_epsilon(model, images, labels, eps_max=EPS_MAX, tol=TOL)

    grid = search.default_grid(eps_max=EPS_MAX, tol=TOL)
    first = np.searchsorted(grid, result.epsilon[reachable])  # the first flipping grid point
    scan = first + 1 + (first + 1 < len(grid))  # up to it, and the point after it (the check)
    refinement = result.forward_passes[reachable] - 1 - scan
    assert np.all(refinement <= 2) and np.all(refinement >= 1)
    found = result.epsilon[reachable]
    assert np.all(found >= expected[reachable] - FLOAT32_SLACK)
    assert np.all(found <= expected[reachable] + TOL + FLOAT32_SLACK)


def test_next_probe_steps_exactly_tol_from_a_near_end_and_halves_narrow_brackets():
    lo = np.array([0.01, 0.01, 0.01, 0.01, 0.01])
    hi = np.array([0.02, 0.02, 0.02, 0.01 + 1.5 * TOL, 0.02])
    # Straight margins whose roots lie: near lo, near hi, mid-bracket, in a narrow bracket, and
    # a bracket that has not halved in GUARD_PROBES probes (bisection).
    roots = np.array([0.01 + 0.2 * TOL, 0.02 - 0.3 * TOL, 0.0137, 0.01 + TOL, 0.0137])
    f_lo, f_hi = roots - lo, roots - hi
    nan = np.full(5, np.nan)
    halved = np.array([True, True, True, True, False])

    probe = search._next_probe(lo, f_lo, hi, f_hi, nan, nan, halved=halved, tol=TOL)

    assert probe[0] <= lo[0] + TOL and probe[0] > lo[0] + TOL - 1e-9  # step up, float32 below
    assert probe[1] >= hi[1] - TOL and probe[1] < hi[1] - TOL + 1e-9  # step down
    assert probe[2] == np.float32(0.0137)  # the secant root, float32-exact
    assert probe[3] == np.float32(0.5 * (lo[3] + hi[3]))  # closes the bracket either way
    assert probe[4] == np.float32(0.015)  # guarded: bisection
    assert np.all(probe == probe.astype(np.float32))


def test_inverse_quadratic_interpolation_hits_a_quadratic_root():
    """eps as a quadratic of the margin is interpolated exactly from three points."""

    def eps_of(m):
        return 0.012 - 0.004 * m + 0.003 * m**2

    f_lo, f_hi, f_c = np.array([0.5]), np.array([-0.4]), np.array([0.9])
    lo, hi, c = eps_of(f_lo), eps_of(f_hi), eps_of(f_c)
    probe = search._next_probe(lo, f_lo, hi, f_hi, c, f_c, halved=np.array([True]), tol=TOL)
    assert probe[0] == np.float32(0.012)


def test_searches_run_together_equal_each_search_run_alone():
    """minimal_epsilons shares the clean pass and the model calls; nothing else may change."""
    model = small_conv_model()
    _, _, _, images, _ = random_linear_problem(10, n=11)
    labels = model.predict(images, verbose=0).argmax(axis=1)
    labels[3] = (labels[3] + 1) % CLASSES  # misclassified at start, in every search
    rng = np.random.default_rng(11)
    object_w = rng.uniform(0.0, 1.0, images.shape[:3]).astype(np.float32)
    object_w[5] = 0.0  # zero gradient in the object search only
    weights = {"uniform": None, "object": object_w, "background": 1.0 - object_w}

    together = search.minimal_epsilons(
        model, images, labels, weights=weights, eps_max=1.0, tol=TOL, batch_size=4
    )

    assert list(together) == ["uniform", "object", "background"]
    for name, w in weights.items():
        alone = search.minimal_epsilon(
            model, images, labels, weights=w, eps_max=1.0, tol=TOL, batch_size=4
        )
        for field in ("epsilon", "adversarial_label", "forward_passes", "status", "non_monotone"):
            np.testing.assert_array_equal(getattr(together[name], field), getattr(alone, field))
    assert together["object"].status[5] == search.ZERO_GRADIENT
    assert together["uniform"].status[5] != search.ZERO_GRADIENT
    assert all(result.status[3] == search.MISCLASSIFIED_AT_START for result in together.values())
    assert sum(np.sum(r.status == search.FLIPPED) for r in together.values()) >= 15


def test_searches_run_together_take_one_clean_pass_per_image(monkeypatch):
    model, _, _, images, labels = random_linear_problem(12, n=9)
    compiled = model_calls.compiled(model, images.shape[1:], 4)
    cleaned = []
    original = compiled.logits_and_gradient

    def counted(x, y):
        cleaned.append(len(x))
        return original(x, y)

    monkeypatch.setattr(compiled, "logits_and_gradient", counted)
    progress = []
    results = search.minimal_epsilons(
        model,
        images,
        labels,
        weights={"a": None, "b": np.full(images.shape[:3], 0.5)},
        eps_max=EPS_MAX,
        batch_size=4,
        progress=lambda *a: progress.append(a),
    )
    assert sum(cleaned) == len(images)
    assert progress[-1] == (2 * len(images), 2 * len(images))
    assert all(np.all(r.forward_passes >= 1) for r in results.values())
    with pytest.raises(ValueError, match="at least one search"):
        search.minimal_epsilons(model, images, labels, weights={})


def full_scan(model: keras.Model, images: np.ndarray, labels: np.ndarray, grid: np.ndarray):
    """Flips at EVERY grid point, bool [N, K], through the search's own compiled model calls."""
    directions = search.fgsm_direction(model, images, labels, batch_size=8)
    compiled = model_calls.compiled(model, images.shape[1:], 8)
    return np.stack(
        [
            compiled.logits(search.perturb(images, directions, eps)).argmax(axis=1) != labels
            for eps in grid
        ],
        axis=1,
    )


def assert_lazy_scan_matches_full_scan(model, images, labels, *, eps_max: float) -> None:
    """The lazy scan's first flipping grid point is the full scan's on every image; epsilon lies
    in the first flipping interval and flips; non_monotone is the next grid point's un-flip."""
    grid = search.default_grid(eps_max=eps_max, tol=TOL)
    flips = full_scan(model, images, labels, grid)
    result = search.minimal_epsilon(model, images, labels, eps_max=eps_max, tol=TOL, batch_size=8)

    flipped = flips.any(axis=1)
    assert np.array_equal(result.status == search.FLIPPED, flipped)
    assert np.all(result.status[~flipped] == search.NOT_FLIPPED)
    assert np.all(result.forward_passes[~flipped] == 1 + len(grid))
    first = flips[flipped].argmax(axis=1)
    eps = result.epsilon[flipped]
    assert np.array_equal(np.searchsorted(grid, eps), first)
    below = np.where(first > 0, grid[np.maximum(first - 1, 0)], 0.0)
    assert np.all((eps > below) & (eps <= grid[first]))
    after = np.minimum(first + 1, len(grid) - 1)
    has_after = first + 1 < len(grid)
    expected_non_monotone = has_after & ~flips[flipped][np.arange(len(first)), after]
    assert np.array_equal(result.non_monotone[flipped], expected_non_monotone)
    # Passes: clean pass, grid points up to the first flip, the check, at least one refinement.
    scanned = 1 + first + 1 + has_after
    assert np.all(result.forward_passes[flipped] >= scanned + (eps - below > TOL))
    directions = search.fgsm_direction(model, images[flipped], labels[flipped])
    adversarial = search.perturb(images[flipped], directions, eps)
    compiled = model_calls.compiled(model, images.shape[1:], 8)
    assert np.all(compiled.logits(adversarial).argmax(axis=1) != labels[flipped])


def test_lazy_scan_finds_the_full_scans_first_flip_on_a_non_monotone_model():
    """Seeded images whose mean starts below a flip window: some flip in it, then un-flip."""
    rng = np.random.default_rng(21)
    offset = rng.uniform(-0.03, 0.0, 24)  # s(0) = mean(x) - 0.5, below the window
    noise = rng.uniform(-0.1, 0.1, (24, *SHAPE))
    images = 0.5 + offset[:, None, None, None] + noise - noise.mean(axis=(1, 2, 3), keepdims=True)
    model = window_model((0.01, 0.02), later_flip=0.3)

    assert_lazy_scan_matches_full_scan(
        model, images.astype(np.float32), np.zeros(24, np.int64), eps_max=1.0
    )


def test_lazy_scan_finds_the_full_scans_first_flip_on_a_real_model():
    """EfficientNet-Lite0 on seeded 64x64 crops of real photos, labelled with its own top-1."""
    import skimage.data
    import skimage.transform

    from robustmap import models

    rng = np.random.default_rng(5)
    crops = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
    ):
        photo = getattr(skimage.data, name)().astype(np.float32) / 255.0
        for _ in range(2):
            side = int(rng.uniform(0.4, 1.0) * min(photo.shape[:2]))
            top, left = (rng.integers(0, photo.shape[k] - side + 1) for k in (0, 1))
            crop = photo[top : top + side, left : left + side]
            crops.append(skimage.transform.resize(crop, (64, 64), anti_aliasing=True))
    images = np.clip(np.stack(crops), 0.0, 1.0).astype(np.float32)
    model = models.load("efficientnet_lite0")
    labels = model_calls.compiled(model, images.shape[1:], 8).logits(images).argmax(axis=1)

    assert_lazy_scan_matches_full_scan(model, images, labels, eps_max=1.0)


def test_the_bracket_step_without_a_model():
    """A flipping probe lowers hi, any other raises lo, the replaced end becomes the third
    point; iterated on known margins, the brackets close on the roots within tol."""
    brackets = search._Brackets.empty(3)
    row = np.array([0, 1, 2])
    lo, hi = np.array([0.01, 0.04, 0.0]), np.array([0.02, 0.05, 0.004])
    root = np.array([0.0123, 0.0457, 0.0031])

    def margin(eps, at=row):  # curved, decreasing through zero at the root
        return (root[at] - eps) * (1.0 + 30.0 * eps)

    nan = np.full(3, np.nan)
    brackets.open(row, lo, margin(lo), hi, margin(hi), nan, nan)
    eps = np.array([0.015, 0.045, 0.003])
    flipped = search._flips(np.array([1, 0, 0]), np.array([0, 0, 0]))  # only row 0 flips
    brackets.step(row, eps, margin(eps), flipped)
    np.testing.assert_array_equal(brackets.hi, [0.015, 0.05, 0.004])
    np.testing.assert_array_equal(brackets.lo, [0.01, 0.045, 0.003])
    np.testing.assert_array_equal(brackets.c, [0.02, 0.04, 0.0])  # the end each probe replaced
    np.testing.assert_array_equal(brackets.widths[:, -2], hi - lo)
    np.testing.assert_array_equal(brackets.widths[:, -1], brackets.hi - brackets.lo)
    np.testing.assert_array_equal(brackets.rounds, [1, 1, 1])

    while not np.all(brackets.narrow(row, TOL)):
        active = row[~brackets.narrow(row, TOL)]
        probe = brackets.aim(active, TOL)
        assert np.all((probe > brackets.lo[active]) & (probe < brackets.hi[active]))
        brackets.step(active, probe, margin(probe, active), margin(probe, active) < 0)
        assert np.all(margin(brackets.lo) >= 0) and np.all(margin(brackets.hi) < 0)
    assert np.all((brackets.lo < root) & (root <= brackets.hi))
    assert np.all(brackets.rounds <= 4)


def test_sign_out_records_the_closed_form_gradient_sign():
    """On a linear model d CE / dx = (softmax - onehot) W^T: the recorded sign is its sign, and
    the sign the searches followed (along it, the float64 margin is gone at the recorded
    epsilon, up to the model's float32 round-off)."""
    model, weight, bias, images, labels = random_linear_problem(11, n=12)
    x = images.reshape(len(images), -1).astype(np.float64)
    logits = x @ weight + bias
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    gradient = (softmax - np.eye(CLASSES)[labels]) @ weight.T
    signs = np.full(images.shape, 7, np.int8)
    found = search.minimal_epsilons(
        model, images, labels, weights={"uniform": None}, tol=TOL, batch_size=5, sign_out=signs
    )["uniform"]
    np.testing.assert_array_equal(signs.reshape(len(images), -1), np.sign(gradient))
    flipped = found.status == search.FLIPPED
    adversarial = search.perturb(images, signs.astype(np.float32), found.epsilon)[flipped]
    crossed = adversarial.reshape(len(adversarial), -1).astype(np.float64) @ weight + bias
    rows = np.arange(len(crossed))
    true = crossed[rows, labels[flipped]]
    crossed[rows, labels[flipped]] = -np.inf
    assert flipped.sum() >= 6 and (true - crossed.max(axis=1) < 1e-4).all()
    with pytest.raises(ValueError, match="sign_out must have the images' shape"):
        search.minimal_epsilons(
            model, images, labels, weights={"uniform": None}, sign_out=signs[:3]
        )
