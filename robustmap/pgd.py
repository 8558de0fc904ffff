"""The minimal epsilon of every image under an iterative attack (PGD), beside FGSM's.

Definition
----------
For an image x in [0, 1] (float32, NHWC), its true label y, a model f returning logits and
per-pixel weights w in [0, 1] (w = 1 for the uniform search; the same weights as
:func:`robustmap.search.minimal_epsilons`), an epsilon is *flipping* when the attack finds a
delta in the weighted L-inf box |delta_i| <= eps * w_i with argmax f(clip(x + delta, 0, 1)) != y.
The result is the smallest flipping epsilon found: an upper bound on the true minimal weighted
L-inf distance to another class, as FGSM's is, and a tighter one. ``epsilon_low`` is the largest
epsilon at which the attack failed (the true distance may still lie below it: PGD is a search,
not a proof).

Attack
------
Each image's search is a sequence of *stages*, one radius eps each. A stage is PGD inside the
box of that radius: up to ``steps`` steps delta <- clip(delta + alpha_j * sign(g) * w, -eps w,
eps w), with g the gradient of the margin loss max_{k != y} z_k - z_y (which finds smaller
epsilons than the cross-entropy). The step alpha_j falls along a cosine from
``STEP_FACTOR`` * eps / steps to ``STEP_FLOOR`` of that: long steps first to cross the box, short
ones last to settle by the boundary (on bench/pgd.py's images this brought the median ratio to
Foolbox's FMN from 1.006 to 1.003 at the same passes). One gradient pass evaluates the current
point and gives its gradient: a stage ends at its first flipping point (the stage succeeds: eps
is flipping), after ``steps`` passes without one (it fails), or, from its ``STALL_AFTER``-th pass,
as soon as its best margin so far, falling on at the stage's average rate, could not reach zero in
the passes left (it fails: the *stall rule*; margins fall fastest at first, so the rule rarely
cuts a stage that would flip, and it saves a third of a failing stage's passes). Every stage
starts from the last point of the one before, projected into its box (warm start).

The radii bracket the answer: lo (the largest failing one, 0 at first) < hi (the smallest
flipping one). The first stage is the FGSM point itself: the clean pass's cross-entropy gradient
gives the FGSM direction d = sign(g) * w, and the stage starts at delta = eps0 * d with eps0 the
FGSM epsilon ``upper`` (so hi = upper from the start: FGSM's adversarial image is its witness,
and the answer is never above it), or ``eps_max`` without one. Each next radius is the linear
estimate of the boundary from the last point of the stage, eps + m / sum_i w_i |g_i| (m: its
margin; exact for a linear model when the class it moves towards is the nearest one), aimed
``rel_tol`` / 4 above it and kept inside the bracket: at least a factor 1 + ``rel_tol`` above lo
and below hi (so a stage landing across the boundary closes it). While no stage has failed
(lo = 0), the k-th flipping stage in a row shrinks the radius at least by (1 + ``rel_tol``) **
2**(k - 1), at most by ``DESCENT_CAP``: far beyond the boundary the linear estimate sits just
below eps, and descending from a far FGSM epsilon 1 % a stage took up to 113 passes. Once lo > 0,
two stages in a row with the same outcome make the next radius the bracket's geometric mean. The
search stops when hi / lo - 1 <= ``rel_tol``. A typical search: the FGSM stage (one pass), a few
flipping stages near the estimate (a pass or two each) and one or two failing stages (three to
``steps`` passes each).

Scheduling is the FGSM search's (:class:`robustmap.scheduler.Scheduler`, with this attack's
probes costing a gradient call each): every image in flight has one point pending, and the points
of all images, stages and searches fill the same model calls. Radii are float32-exact and each
image's points depend only on its own logits and gradients, so for models whose rows are computed
independently of each other the epsilons do not depend on ``batch_size``. There is no randomness.

Witness
-------
Each time a stage flips, the flipping point is kept: its perturbation delta = clip(x + d, 0, 1)
- x (``PgdResult.delta``; the FGSM stage's point too). The reported epsilon is that witness's own
weighted L-inf norm, max_i |delta_i| / w_i over the pixels with w_i > 0, rounded up to a float32
and never above the stage radius hi (so never above ``upper``): the distance of an adversarial
image actually found, as FMN and other minimal-norm attacks report it, not the box it was found
in (clipping to [0, 1] and steps that stop short of the box can leave it below the radius).
Where no point flipped when evaluated (the FGSM point of ``upper`` not flipping again), the
delta is zeros and epsilon is hi.

Statuses are :func:`robustmap.search.minimal_epsilons`'s: ``flipped`` (epsilon in (0, eps_max]
or the FGSM epsilon), ``not_flipped`` (the stage at eps_max failed and there is no ``upper``;
epsilon inf), ``zero_gradient`` (the FGSM direction is all zero; epsilon inf),
``misclassified_at_start`` (epsilon nan).

``gradient_passes`` counts the clean pass and one per point evaluated, whether or not the clean
pass was this search's own: given a recorded clean pass (``clean``: the FGSM search's, which the
workflow's search job reuses), PGD makes no model call to admit an image, and the clean pass is
counted in both attacks' passes, as each would cost alone (as ``forward_passes`` counts a clean
pass that several kinds share). The model calls PGD itself made are ``gradient_passes - 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from robustmap import model_calls
from robustmap.scheduler import DONE, CleanPasses, Scheduler
from robustmap.schema import FLIPPED, MISCLASSIFIED_AT_START, NOT_FLIPPED, ZERO_GRADIENT
from robustmap.search import (
    all_zero,
    apply_weights,
    as_float32_exact,
    batch_weights,
    checked_inputs,
    float32_at_least,
    gradient_sign,
    perturb,
    weighted_directions,
)

if TYPE_CHECKING:
    import keras

STEP_FACTOR = 4.0
"""A stage's first PGD step is STEP_FACTOR * eps / steps (its steps shrink from there)."""
STEP_FLOOR = 0.1
"""The cosine step schedule's last step, as a share of the first."""
STAGE = 0
"""The attack's one phase: a row has a point pending in its current stage."""
MAX_STAGES = 200
STALL_AFTER = 3
"""A stage may fail before ``steps`` passes from its STALL_AFTER-th pass on (the stall rule)."""
DESCENT_CAP = 4.0
"""The most one flipping stage shrinks the next radius by while no stage has failed."""


@dataclass(frozen=True)
class PgdResult:
    """Per-image outcome of :func:`minimal_epsilons`; every field has shape [N].

    epsilon: float64, smallest flipping epsilon found (inf: no flip / zero gradient; nan:
    misclassified at start). epsilon_low: float64, largest epsilon at which the attack failed
    (0: none; nan where epsilon is nan or inf without a failing stage). adversarial_label:
    int64, argmax f at the flipping point (-1 where there is none, or where the only flipping
    point is FGSM's and it did not flip when evaluated again). status: str.
    gradient_passes: int64, gradient calls spent on the image (clean pass included; module
    docstring). delta: float32 [N, H, W, C], the witness perturbation (module docstring): the
    adversarial image is clip(x + delta, 0, 1) = x + delta; zeros where there is none.
    """

    epsilon: np.ndarray
    epsilon_low: np.ndarray
    adversarial_label: np.ndarray
    status: np.ndarray
    gradient_passes: np.ndarray
    delta: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per image, columns named as the per-image fields (not ``delta``)."""
        fields = {name: value for name, value in asdict(self).items() if name != "delta"}
        return pd.DataFrame(fields).astype({"status": object})


def minimal_epsilons(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    weights: Mapping[str, np.ndarray | None],
    upper: Mapping[str, np.ndarray] | None = None,
    eps_max: float = 1.0,
    steps: int = 10,
    rel_tol: float = 0.01,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    clean: CleanPasses | None = None,
) -> dict[str, PgdResult]:
    """Minimal PGD epsilon of each image and search (definition and attack: module docstring).

    images: float32 [N, H, W, C] in [0, 1]; labels: int [N]; ``weights`` maps a search name to
    its weights ([N, H, W], [N, H, W, 1] or [N, H, W, C] in [0, 1]; None for 1), as in
    :func:`robustmap.search.minimal_epsilons`, and the result maps each name to its
    :class:`PgdResult`. ``upper`` maps a search to epsilons [N] known to flip along the FGSM
    direction (that search's FGSM result; inf or nan: none); a search without an entry starts
    from eps_max. Searches share each image's clean pass and fill the same model calls, whose
    rows are ``batch_size``. ``progress(done, total)`` counts (image, search) pairs. ``clean``:
    the images' clean pass as another attack of the same images and labels recorded it
    (:func:`robustmap.search.minimal_epsilons`' ``clean_out``); admission then calls no model.
    """
    images, labels = checked_inputs(images, labels)
    if not weights:
        raise ValueError("weights must name at least one search")
    if not (rel_tol > 0.0 and eps_max > 0.0 and steps >= 1):
        raise ValueError("rel_tol and eps_max must be positive and steps at least 1")
    upper = upper or {}
    starts = [_checked_upper(upper.get(name), len(images), eps_max) for name in weights]
    compiled = model_calls.compiled(model, images.shape[1:], batch_size)
    scheduler = Scheduler(images, labels, len(weights), batch_size, progress)
    attack = _PgdAttack(
        scheduler, list(weights.values()), np.concatenate(starts), eps_max, steps, rel_tol
    )
    scheduler.run(attack, compiled, compiled.logits_and_margin_gradient, clean)
    return dict(zip(weights, attack.results(), strict=True))


def step_sizes(taken: np.ndarray, steps: int) -> np.ndarray:
    """The size of each row's next PGD step, float32, as a share of its radius, after ``taken``
    steps of its stage: a cosine from STEP_FACTOR / steps down to STEP_FLOOR of that (module
    docstring)."""
    cosine = 0.5 * (1 + np.cos(np.pi * np.asarray(taken) / steps))
    return (STEP_FACTOR / steps * (STEP_FLOOR + (1 - STEP_FLOOR) * cosine)).astype(np.float32)


def _checked_upper(upper: np.ndarray | None, n: int, eps_max: float) -> np.ndarray:
    """A search's known flipping epsilons float64 [n], float32-exact; inf where unknown."""
    if upper is None:
        return np.full(n, np.inf)
    upper = np.asarray(upper, dtype=np.float64)
    if upper.shape != (n,):
        raise ValueError(f"upper must hold one epsilon per image ({n})")
    known = np.isfinite(upper) & (upper > 0)
    return np.where(known, as_float32_exact(np.where(known, upper, 0.0)), np.inf)


@dataclass
class _Brackets:
    """Per row: the stage radius ``eps`` (float32-exact), the bracket (lo, hi], the passes spent
    in the stage, the margins of its first and best point, the last stage's outcome (1 flipped,
    -1 failed, 0 none), how many stages in a row ended so, and the stages so far."""

    eps: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    stage_passes: np.ndarray
    first_margin: np.ndarray
    best_margin: np.ndarray
    outcome: np.ndarray
    streak: np.ndarray
    stages: np.ndarray

    @classmethod
    def empty(cls, hi: np.ndarray) -> _Brackets:
        n = len(hi)
        return cls(
            np.zeros(n),
            np.zeros(n),
            hi.copy(),
            np.zeros(n, np.int64),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n, np.int8),
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
        )

    def end_stage(self, row: np.ndarray, flipped: np.ndarray) -> None:
        """The stages of ``row`` ended: a flipping one lowers hi, a failing one raises lo."""
        self.hi[row[flipped]] = self.eps[row[flipped]]
        self.lo[row[~flipped]] = self.eps[row[~flipped]]
        outcome = np.where(flipped, 1, -1).astype(np.int8)
        self.streak[row] = np.where(self.outcome[row] == outcome, self.streak[row] + 1, 1)
        self.outcome[row] = outcome
        self.stage_passes[row] = 0
        self.stages[row] += 1

    def count_pass(self, row: np.ndarray, margin: np.ndarray) -> None:
        """Count the pass that gave ``margin`` in each row's stage, and keep the stage's first
        and best margins."""
        self.stage_passes[row] += 1
        first = self.stage_passes[row] == 1
        self.first_margin[row[first]] = margin[first]
        self.best_margin[row] = np.where(first, margin, np.minimum(self.best_margin[row], margin))

    def stalled(self, row: np.ndarray, steps: int) -> np.ndarray:
        """Whether each row's stage cannot flip in its remaining passes even at the average rate
        its margin has fallen so far (the stall rule; passes counted by :meth:`count_pass`)."""
        passes, best = self.stage_passes[row], self.best_margin[row]
        rate = (self.first_margin[row] - best) / np.maximum(passes - 1, 1)
        return (passes >= STALL_AFTER) & (rate * (steps - passes) < best)

    def next_radius(self, row: np.ndarray, estimate: np.ndarray, rel_tol: float) -> np.ndarray:
        """The next stage's radius (module docstring), float32-exact; nan where no float32
        lies inside the bracket."""
        lo, hi = self.lo[row], self.hi[row]
        low = np.where(lo > 0, lo * (1 + rel_tol), hi / 64)
        streak = self.streak[row]
        descent = np.minimum((1 + rel_tol) ** (2.0 ** np.maximum(streak - 1, 0)), DESCENT_CAP)
        high = hi / np.where(lo > 0, 1 + rel_tol, descent)
        aim = np.clip(estimate * (1 + rel_tol / 4), low, high)
        middle = np.where(lo > 0, np.sqrt(lo * hi), 0.5 * hi)
        bisect = ~np.isfinite(estimate) | ((streak > 1) & (lo > 0)) | (low > high)
        radius = as_float32_exact(np.where(bisect, middle, aim))
        return np.where((radius > lo) & (radius < hi), radius, np.nan)


class _PgdAttack:
    """The PGD search of S weightings over N images on the rows of a :class:`Scheduler` (row =
    search * N + image), whose phases it sets; vectorised over rows. Each row holds its current
    perturbation ``delta`` (float32, like the images) and its :class:`_Brackets`."""

    probe_needs_gradient = True

    def __init__(
        self,
        scheduler: Scheduler,
        weights: list[np.ndarray | None],
        upper: np.ndarray,
        eps_max: float,
        steps: int,
        rel_tol: float,
    ) -> None:
        self.rows, self.weights, self.steps, self.rel_tol = scheduler, weights, steps, rel_tol
        self.upper = upper  # [n]: FGSM's flipping epsilon of each row, inf where unknown
        self.eps_max = float(as_float32_exact(eps_max))
        n = len(scheduler.image)
        self.labels = scheduler.labels[scheduler.image]
        self.delta = np.zeros((n, *scheduler.images.shape[1:]), np.float32)
        self.witness = np.zeros_like(self.delta)  # the last flipping point's clipped delta
        self.has_witness = np.zeros(n, bool)
        self.brackets = _Brackets.empty(upper)
        self.epsilon = np.full(n, np.inf)
        self.adversarial_label = np.full(n, -1, np.int64)
        self.status = np.full(n, FLIPPED, dtype=object)

    def admit(self, batch: np.ndarray, logits: np.ndarray, gradient: np.ndarray) -> None:
        """The clean pass of images ``batch``: statuses, and each searched row's first stage at
        the FGSM point of radius min(upper, eps_max)."""
        sign = gradient_sign(gradient)
        rows = self.rows.rows_of(batch)
        fgsm = weighted_directions(sign, self.weights, batch)
        _, clean_label = model_calls.margin(logits, self.labels[batch])
        misclassified = np.tile(clean_label != self.labels[batch], len(self.weights))
        zero = ~misclassified & all_zero(fgsm)
        self._finish(rows[misclassified], MISCLASSIFIED_AT_START, np.nan, np.nan)
        self._finish(rows[zero], ZERO_GRADIENT, np.inf, np.nan)
        searched = ~misclassified & ~zero
        row = rows[searched]
        eps = np.minimum(self.upper[row], self.eps_max)
        self.brackets.eps[row] = eps
        self.delta[row] = np.multiply(
            eps.astype(np.float32)[:, None, None, None], fgsm[searched], dtype=np.float32
        )
        self.rows.phase[row] = STAGE

    def probe_inputs(self, row: np.ndarray) -> np.ndarray:
        """clip(x + delta, 0, 1) of each row: at the first stage, FGSM's own probe bit for bit."""
        return perturb(self.rows.images[self.rows.image[row]], self.delta[row], 1.0)

    def record(self, row: np.ndarray, logits: np.ndarray, gradient: np.ndarray | None) -> None:
        """Logits and margin-loss gradient at the pending point of each row: end the stages that
        flipped or ran out of steps, open the next ones, and take each row's PGD step."""
        margin, label = model_calls.margin(logits, self.labels[row])
        flipped = label != self.labels[row]
        w = self._weights_of(row)
        weighted = gradient if w is None else gradient * w
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.abs(weighted, dtype=np.float64).reshape(len(row), -1).sum(axis=1)
            estimate = self.brackets.eps[row] + margin / reach
        self.adversarial_label[row[flipped]] = label[flipped]
        self._keep_witness(row[flipped])
        self.brackets.count_pass(row, margin)
        stalled = ~flipped & self.brackets.stalled(row, self.steps)
        ended = flipped | stalled | (self.brackets.stage_passes[row] == self.steps)
        self.brackets.end_stage(row[ended], flipped[ended])
        going = self._next_stages(row[ended], estimate[ended])
        keep = ~ended
        keep[ended] = going
        self._step(row[keep], gradient[keep], None if w is None else w[keep])

    def _keep_witness(self, row: np.ndarray) -> None:
        """The flipping points of ``row`` (their pending probes) as their witnesses: hi only
        falls, so a row's last flipping point is the one of its smallest flipping radius."""
        x = self.rows.images[self.rows.image[row]]
        self.witness[row] = self.probe_inputs(row) - x
        self.has_witness[row] = True

    def _next_stages(self, row: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        """Finish the rows whose bracket is closed; give the others their next radius. Returns
        which rows go on."""
        brackets = self.brackets
        lo, hi = brackets.lo[row], brackets.hi[row]
        never = np.isinf(hi)  # the stage at eps_max failed and nothing is known to flip
        self._finish(row[never], NOT_FLIPPED, np.inf, lo[never])
        closed = ~never & (hi <= lo * (1 + self.rel_tol))
        radius = brackets.next_radius(row, estimate, self.rel_tol)
        stuck = ~never & ~closed & (np.isnan(radius) | (brackets.stages[row] >= MAX_STAGES))
        done = closed | stuck
        self._finish(row[done], FLIPPED, hi[done], lo[done])
        going = ~never & ~done
        brackets.eps[row[going]] = radius[going]
        return going

    def _step(self, row: np.ndarray, gradient: np.ndarray, w: np.ndarray | None) -> None:
        """One PGD step of each row at its current radius, projected into its box."""
        eps = self.brackets.eps[row].astype(np.float32)[:, None, None, None]
        alpha = step_sizes(self.brackets.stage_passes[row], self.steps)[:, None, None, None] * eps
        step = apply_weights(gradient_sign(gradient), w)
        bound = eps if w is None else eps * w
        delta = self.delta[row] + alpha * step
        self.delta[row] = np.clip(delta, -bound, bound)

    def _weights_of(self, row: np.ndarray) -> np.ndarray | None:
        """The weights of each row's search and image, float32 [R, H, W, C]; None if every
        search is unweighted."""
        if all(w is None for w in self.weights):
            return None
        n = len(self.rows.images)
        search, image = row // n, self.rows.image[row]
        w = np.ones((len(row), *self.rows.images.shape[1:]), np.float32)
        for index, weights in enumerate(self.weights):
            mine = search == index
            if weights is not None and mine.any():
                w[mine] = batch_weights(weights, image[mine])
        return w

    def _finish(self, row: np.ndarray, status: str, epsilon, epsilon_low) -> None:
        self.status[row] = status
        self.epsilon[row] = epsilon
        self.brackets.lo[row] = epsilon_low
        self.rows.phase[row] = DONE

    def results(self) -> list[PgdResult]:
        """One result per search, in the order of the weights."""
        flipped = self.status == FLIPPED
        label = np.where(flipped, self.adversarial_label, -1).astype(np.int64)
        witnessed = flipped & self.has_witness
        epsilon = self.epsilon.copy()
        epsilon[witnessed] = np.minimum(epsilon[witnessed], self._witness_norm(witnessed))
        delta = np.where(witnessed[:, None, None, None], self.witness, np.float32(0))
        fields = (
            epsilon,
            self.brackets.lo,
            label,
            self.status.astype(str),
            self.rows.passes,
            delta,
        )
        parts = [np.split(field, len(self.weights)) for field in fields]
        return [PgdResult(*(part[s] for part in parts)) for s in range(len(self.weights))]

    def _witness_norm(self, mask: np.ndarray) -> np.ndarray:
        """The weighted L-inf norm max_i |delta_i| / w_i (pixels with w_i > 0) of the witnesses of
        the rows in ``mask``, rounded up to a float32 (module docstring)."""
        row = np.flatnonzero(mask)
        size = abs(self.witness[row]).astype(np.float64)
        w = self._weights_of(row)
        if w is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                size = np.where(w > 0, size / np.broadcast_to(w, size.shape), 0.0)
        pixels = int(np.prod(self.witness.shape[1:]))
        return float32_at_least(size.reshape(len(row), pixels).max(axis=1, initial=0.0))
