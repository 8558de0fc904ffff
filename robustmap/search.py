"""The minimal FGSM epsilon of every image: exact, batched, and never past the first flip.

Definition
----------
For an image x in [0, 1] (float32, NHWC), its true label y and a model f returning logits:

* one gradient g = d CE(f(x), y) / dx at the clean image, computed on the logits;
* the direction d = sign(g) * w, with per-pixel weights w in [0, 1] (w = 1 for the uniform
  search; Grad-CAM weights for the object/background searches);
* the path x(eps) = clip(x + eps * d, 0, 1);
* the minimal epsilon is the smallest eps in (0, eps_max] with argmax f(x(eps)) != y.

Epsilon is in units of the full pixel range: 1/255 is one grey level.

Search
------
Flips need not be monotone in eps, so a plain bisection on [0, eps_max] can jump over a small
flipping window. The search therefore

1. scans a geometric grid (``default_grid``: ``GRID_POINTS`` = 12 points from ``EPS_MIN`` =
   1e-4, or ``tol`` if larger, to ``eps_max``; neighbours 2.31x apart for eps_max = 1) upwards,
   one point per model call, and stops at the FIRST flipping grid point (the lazy scan: points
   above it are never probed, except the next one, see ``non_monotone``). A flip window (a, b)
   within [1e-4, eps_max] with b > 2.31 a always holds a grid point;
2. refines the first flipping interval (lo not flipped, hi flipped; lo = 0 for the first grid
   point, where the clean image is correctly classified) to ``tol`` on the logit margin
   m(eps) = z_y - max_{k != y} z_k. Each probe aims at the root estimated by inverse quadratic
   interpolation through the two ends and a third path point (the end replaced last; at first the
   path point below lo, a grid point or the clean image, or the grid point above hi when lo is
   the clean image), falling back to the secant of the ends, and to
   bisection whenever the last ``GUARD_PROBES`` = 3 probes failed to halve the bracket. An aim
   within ``tol`` of an end is moved to exactly ``tol`` from it ("tol step"), so a probe that
   lands across the root closes the bracket at once: refinement typically costs two probes (one
   close to the root, one tol step) or three. Every probe that flips lowers hi, every other one
   raises lo, so the bracket always shrinks and hi always flips;
3. returns eps = hi, a flipping epsilon within ``tol`` of a non-flipping one.

``non_monotone`` records that THE grid point right after the first flipping one does not flip
(False when the first flipping point is the last grid point). It costs one probe, made before
the refinement. It is a lower bound on non-monotone paths: a path that flips at the next point
and un-flips further up is not flagged.
Within the first bracket the root finder finds *a* flip boundary; windows narrower than the grid
spacing that lie wholly between two non-flipping grid points cannot be seen by any grid search.

Scheduling (:class:`robustmap.scheduler.Scheduler`, with the FGSM steps above as its attack):
gradients are taken ``batch_size`` images at a time; every image in flight has exactly one
probe pending (its next grid point, its check point, or its next refinement probe), and these
are evaluated together, ``batch_size`` per model call, oldest images first: new images are
admitted whenever fewer than a call's worth are pending, and probes beyond whole calls wait a
round, so calls stay full. There is no Python loop over images: every step is vectorised over
the images in flight. Searches of the same images that differ only in their weights
(``minimal_epsilons``: the workflow's uniform, object and background searches) share each
image's clean pass, since the gradient does not depend on the weights, and their probes fill the
same model calls.

Every probe epsilon is rounded to float32 on the host (the value the model really sees; the
probe x(eps) is built on the host exactly as :func:`perturb` builds it), and each image's sequence
of probes depends only on its own logits. Model calls have fixed shapes
(:mod:`robustmap.model_calls`), so for models whose rows are computed independently of each
other the epsilons do not depend on ``batch_size``.

Statuses
--------
``flipped``: epsilon in (0, eps_max]. ``not_flipped``: no grid point (the last one is eps_max)
flips, epsilon = inf (kept: the image is censored at eps_max, not dropped). ``zero_gradient``:
the direction is all zero (the loss does not depend on the pixels, or the weights vanish where it
does), epsilon = inf.
``misclassified_at_start``: argmax f(x) != y already; the minimal epsilon is undefined (the
definition asks for a correctly classified start), epsilon = nan.
``engine_disagrees``: the clean image is correctly classified, but the engine the probes run on
(below) classifies it otherwise: a margin below the two engines' round-off. Its first probe would
"flip" at any epsilon, so the epsilon is undefined, nan, never a wrong number.

Engines
-------
The clean pass (logits and gradient) always runs in TensorFlow and defines which images are
correctly classified. The probes run on ``engine`` (:data:`robustmap.model_calls.ENGINES`), and
every flip of a search is decided on that one engine's logits. An engine other than TensorFlow
also evaluates each admitted clean image once (one forward row per image, shared by its
searches): its margin, not TensorFlow's, starts the scan, so the whole path, from eps = 0 up, is
the same engine's; and where that engine already flips the clean image the rows get
``engine_disagrees``. Checking the first probes instead could not tell such a row from a genuine
flip below the first grid point. That forward row is part of the clean pass in
``forward_passes``, so the engines' counts compare probe for probe.

``forward_passes`` counts model evaluations per image: 1 for the clean pass (logits and gradient
in one call), then one per grid point up to the first flipping one, one for the point after it
(when there is one), and one per refinement probe; ``1 + len(grid)`` for ``not_flipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from robustmap import model_calls
from robustmap.scheduler import DONE, CleanPasses, Scheduler
from robustmap.schema import (
    ENGINE_DISAGREES,
    FLIPPED,
    MISCLASSIFIED_AT_START,
    NOT_FLIPPED,
    ZERO_GRADIENT,
)

if TYPE_CHECKING:
    import keras

# TensorFlow is imported by the functions that run a model, not here: rebuilding a probe from a
# recorded sign (:func:`perturb`, :func:`weighted_direction`) is numpy, and the jobs that only
# draw searched images (panels) then start without TensorFlow.

GRID_POINTS = 12
EPS_MIN = 1e-4
MAX_REFINEMENT_ROUNDS = 200
GUARD_PROBES = 3


@dataclass(frozen=True)
class SearchResult:
    """Per-image outcome of ``minimal_epsilon``; every field has shape [N].

    epsilon: float64, minimal epsilon (inf: no flip / zero gradient; nan: misclassified at start).
    adversarial_label: int64, argmax f(x(epsilon)); -1 where there is no adversarial image.
    forward_passes: int64, model evaluations spent on the image (clean pass included).
    status: str, one of :data:`robustmap.schema.STATUSES`.
    non_monotone: bool, the grid point right after the first flipping one does not flip.
    """

    epsilon: np.ndarray
    adversarial_label: np.ndarray
    forward_passes: np.ndarray
    status: np.ndarray
    non_monotone: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per image, columns named as the fields."""
        return pd.DataFrame(
            {
                "epsilon": self.epsilon,
                "adversarial_label": self.adversarial_label,
                "forward_passes": self.forward_passes,
                "status": self.status.astype(object),
                "non_monotone": self.non_monotone,
            }
        )


def default_grid(
    *, eps_max: float = 1.0, tol: float = 1e-5, points: int = GRID_POINTS
) -> np.ndarray:
    """Geometric grid float64 [points] from max(EPS_MIN, tol) to ``eps_max``, float32-exact.

    A flip below the first point is bracketed by (0, first point] and refined from the clean
    image's margin; below 1e-4 (a fortieth of a grey level) the margin is close to linear.
    """
    low = min(max(EPS_MIN, tol), eps_max)
    grid = np.geomspace(low, eps_max, points) if points > 1 else np.array([eps_max])
    return np.unique(as_float32_exact(grid))


def perturb(images: np.ndarray, directions: np.ndarray, eps: float | np.ndarray) -> np.ndarray:
    """x(eps) = clip(x + eps * d, 0, 1) in float32, bit-identical to the search's own probes.

    images, directions: float32 [N, H, W, C]; eps: scalar or [N]. Returns float32 [N, H, W, C].
    """
    eps32 = np.broadcast_to(np.asarray(eps, dtype=np.float32), (len(images),))
    # One float32 product, one sum, one clip, each rounded once, written in place: the search
    # builds every probe here, so this is on its critical path.
    probe = np.multiply(eps32[:, None, None, None], directions, dtype=np.float32)
    np.add(probe, images.astype(np.float32, copy=False), out=probe)
    return np.clip(probe, 0.0, 1.0, out=probe)


def fgsm_direction(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """d = sign(d CE(f(x), y) / dx) * w, float32 [N, H, W, C]; gradient taken on the logits."""
    images, labels = checked_inputs(images, labels)
    compiled = model_calls.compiled(model, images.shape[1:], batch_size)
    directions = np.empty_like(images)
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        _, gradient = compiled.logits_and_gradient(images[start:stop], labels[start:stop])
        directions[start:stop] = apply_weights(
            gradient_sign(gradient), batch_weights(weights, slice(start, stop))
        )
    return directions


def weighted_direction(direction: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """An unweighted FGSM direction of N images times ``weights`` (as in :func:`minimal_epsilon`;
    None: 1). Equal to :func:`fgsm_direction` with those weights, without another gradient."""
    return apply_weights(direction, batch_weights(weights, slice(0, len(direction))))


def minimal_epsilon(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    eps_max: float = 1.0,
    tol: float = 1e-5,
    batch_size: int = 64,
    grid: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: str = model_calls.TENSORFLOW,
) -> SearchResult:
    """Minimal FGSM epsilon of each image (definition and search: see the module docstring).

    images: float32 [N, H, W, C] in [0, 1]; labels: int [N] true classes; weights: [N, H, W],
    [N, H, W, 1] or [N, H, W, C] in [0, 1], or None for 1. ``grid`` overrides ``default_grid``
    (increasing, within (0, eps_max]). Gradients are taken ``batch_size`` images at a time and
    probes are evaluated ``batch_size`` at a time; the directions of all N images are kept, so
    memory is about twice that of ``images``. ``progress(images_done, total)`` is called each
    time another ``batch_size`` images are finished, and at the end.
    """
    (result,) = minimal_epsilons(
        model,
        images,
        labels,
        weights={"search": weights},
        eps_max=eps_max,
        tol=tol,
        batch_size=batch_size,
        grid=grid,
        progress=progress,
        engine=engine,
    ).values()
    return result


def minimal_epsilons(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    weights: Mapping[str, np.ndarray | None],
    eps_max: float = 1.0,
    tol: float = 1e-5,
    batch_size: int = 64,
    grid: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    sign_out: np.ndarray | None = None,
    engine: str = model_calls.TENSORFLOW,
    clean_out: CleanPasses | None = None,
) -> dict[str, SearchResult]:
    """Several searches of the same images that differ only in their weights, run together.

    ``weights`` maps a search name to its weights (as in :func:`minimal_epsilon`; None for 1),
    e.g. ``{"uniform": None, "object": w, "background": 1 - w}``; the result maps each name to
    its :class:`SearchResult`. The gradient g does not depend on the weights, so each image gets
    ONE clean pass (logits and gradient) that all its searches share, and the probes of all
    searches fill the same model calls. Each result equals :func:`minimal_epsilon` with that
    search's weights alone (an image's probes depend only on its own logits): bit for bit when
    the model's rows are independent, up to float32 round-off of differently composed calls on a
    real network (docs/architecture.md).
    ``forward_passes`` counts the shared clean pass in every search, as each would cost alone;
    the model evaluates N clean passes plus ``sum(forward_passes - 1)`` probes over all searches.
    Memory: the images plus one direction per image and search. ``progress(done, total)``
    counts (image, search) pairs. ``sign_out``, an int8 array shaped like ``images``, receives
    sign(g) of every image: with a search's weights w, ``weighted_direction(sign_out, w)`` is
    exactly the direction that search perturbed along (no second gradient, which could differ
    in round-off where g is near zero). ``engine``: where the probes run, a name of
    :data:`robustmap.model_calls.ENGINES` or ``auto`` (:func:`robustmap.model_calls.resolve_engine`;
    see "Engines" in the module docstring). ``clean_out`` records every image's clean pass
    (TensorFlow's logits and gradient sign), for a later attack of the same images to reuse
    (:func:`robustmap.pgd.minimal_epsilons`' ``clean``).
    """
    images, labels = checked_inputs(images, labels)
    if not weights:
        raise ValueError("weights must name at least one search")
    if not (tol > 0.0 and eps_max > 0.0):
        raise ValueError("tol and eps_max must be positive")
    grid = default_grid(eps_max=eps_max, tol=tol) if grid is None else _checked_grid(grid, eps_max)
    if sign_out is not None and sign_out.shape != images.shape:
        raise ValueError(f"sign_out must have the images' shape {images.shape}")
    engine = model_calls.resolve_engine(engine)
    compiled = model_calls.compiled(model, images.shape[1:], batch_size, engine)
    scheduler = Scheduler(images, labels, len(weights), batch_size, progress)
    # TensorFlow's clean pass is already the engine's: no second evaluation of the clean image.
    engine_logits = None if engine == model_calls.TENSORFLOW else compiled.logits
    attack = _FgsmAttack(
        scheduler, list(weights.values()), grid, tol, sign_out, engine_logits, clean_out
    )
    scheduler.run(attack, compiled)
    return dict(zip(weights, attack.results(), strict=True))


SCAN, CHECK, REFINE = 0, 1, 2
"""The FGSM phases of a row (besides the scheduler's WAITING and DONE): scanning the grid upwards;
probing the grid point after its first flipping one (``non_monotone``); refining the first
flipping interval."""


def _flips(label: np.ndarray, true_label: np.ndarray) -> np.ndarray:
    """The one flip predicate of the search: the predicted class is not the true one."""
    return label != true_label


@dataclass
class _Outcome:
    """What each row returns, filled in as rows finish; one entry per row, fields as in
    :class:`SearchResult` (``adversarial_label`` holds the label of the last flipping probe)."""

    epsilon: np.ndarray
    adversarial_label: np.ndarray
    status: np.ndarray
    non_monotone: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Outcome:
        return cls(
            epsilon=np.full(n, np.inf),
            adversarial_label=np.full(n, -1, np.int64),
            status=np.full(n, FLIPPED, dtype=object),
            non_monotone=np.zeros(n, bool),
        )

    def results(self, searches: int, passes: np.ndarray) -> list[SearchResult]:
        """One result per search (rows search * N + image), in the order of the weights;
        ``passes``: the model passes of each row."""
        label = np.where(self.status == FLIPPED, self.adversarial_label, -1).astype(np.int64)
        fields = (self.epsilon, label, passes, self.status.astype(str), self.non_monotone)
        parts = [np.split(field, searches) for field in fields]
        return [SearchResult(*(part[search] for part in parts)) for search in range(searches)]


@dataclass
class _GridScan:
    """The lazy grid scan: each row probes its grid points in increasing order, one per model
    call, and stops at the first that flips.

    The path points are the clean image (eps = 0) and then the grid. Below the next grid point
    the scan keeps the margins of the two path points it passed last, because they become the
    first bracket's lo end and its third interpolation point.
    """

    grid: np.ndarray  # float64 [K], float32-exact, increasing
    point: np.ndarray  # int64 [n]: the grid point a scanning row probes next
    margin_lo: np.ndarray  # float64 [n]: margin at the path point below ``point``
    margin_below: np.ndarray  # float64 [n]: margin one path point further down (nan: none)

    @classmethod
    def empty(cls, grid: np.ndarray, n: int) -> _GridScan:
        return cls(grid, np.zeros(n, np.int64), np.zeros(n), np.full(n, np.nan))

    def start(self, row: np.ndarray, clean_margin: np.ndarray) -> None:
        self.point[row] = 0
        self.margin_lo[row], self.margin_below[row] = clean_margin, np.nan

    def path_eps(self, index: np.ndarray) -> np.ndarray:
        """Epsilon of path point ``index`` (0: the clean image; i + 1: grid point i)."""
        return np.concatenate([[0.0], self.grid])[index]

    def passed(self, row: np.ndarray, margin: np.ndarray) -> np.ndarray:
        """Rows whose probe did not flip move up one point; returns which passed the last one."""
        self.margin_below[row], self.margin_lo[row] = self.margin_lo[row], margin
        self.point[row] += 1
        return self.point[row] == len(self.grid)


@dataclass
class _Brackets:
    """Refinement brackets (lo, hi] per row: lo does not flip, hi flips, and (c, f_c) is a third
    path point for inverse quadratic interpolation (the end replaced last; nan: none yet).

    ``f_*`` are logit margins; ``widths`` the last GUARD_PROBES + 1 bracket widths, oldest
    first, for the bisection guard; ``rounds`` the refinement probes so far.
    """

    lo: np.ndarray
    f_lo: np.ndarray
    hi: np.ndarray
    f_hi: np.ndarray
    c: np.ndarray
    f_c: np.ndarray
    widths: np.ndarray
    rounds: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Brackets:
        ends = [np.zeros(n) for _ in range(4)]
        return cls(
            *ends,
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.zeros((n, GUARD_PROBES + 1)),
            np.zeros(n, np.int64),
        )

    def open(self, row, lo, f_lo, hi, f_hi, c, f_c) -> None:
        """New brackets; the bisection guard starts from their width."""
        self.lo[row], self.f_lo[row], self.hi[row], self.f_hi[row] = lo, f_lo, hi, f_hi
        self.c[row], self.f_c[row] = c, f_c
        self.widths[row] = np.inf
        self.widths[row, -1] = hi - lo
        self.rounds[row] = 0

    def set_third(self, row: np.ndarray, c: float | np.ndarray, f_c: np.ndarray) -> None:
        """A new third interpolation point (c, f_c) for the brackets of ``row``."""
        self.c[row], self.f_c[row] = c, f_c

    def step(self, row: np.ndarray, eps: np.ndarray, margin: np.ndarray, flipped) -> None:
        """The bracket step: a flipping probe lowers hi, any other raises lo; the end it
        replaces becomes the third point. ``row`` must not repeat."""
        up, down = row[flipped], row[~flipped]
        self.c[up], self.f_c[up] = self.hi[up], self.f_hi[up]
        self.hi[up], self.f_hi[up] = eps[flipped], margin[flipped]
        self.c[down], self.f_c[down] = self.lo[down], self.f_lo[down]
        self.lo[down], self.f_lo[down] = eps[~flipped], margin[~flipped]
        self.widths[row] = np.roll(self.widths[row], -1, axis=1)
        self.widths[row, -1] = self.hi[row] - self.lo[row]
        self.rounds[row] += 1

    def narrow(self, row: np.ndarray, tol: float) -> np.ndarray:
        """Which brackets are done: no wider than ``tol``."""
        return self.hi[row] - self.lo[row] <= tol

    def aim(self, row: np.ndarray, tol: float) -> np.ndarray:
        """The next probe of each bracket (see ``_next_probe``), float32-exact."""
        return _next_probe(
            self.lo[row],
            self.f_lo[row],
            self.hi[row],
            self.f_hi[row],
            self.c[row],
            self.f_c[row],
            halved=self.hi[row] - self.lo[row] <= 0.5 * self.widths[row, 0],
            tol=tol,
        )


class _FgsmAttack:
    """The FGSM search of S weightings over N images, on the rows of a :class:`Scheduler`
    (row = search * N + image, held as ``rows``), whose phases it sets. Every method is
    vectorised over rows.

    A row is admitted with its image's clean pass (status, direction), then has exactly one probe
    pending at a time: its next grid point (SCAN), the grid point after its first flipping one
    (CHECK), or its next refinement probe (REFINE), until it is DONE. A probe costs one forward
    call. The parts: ``scan`` (:class:`_GridScan`), ``brackets`` (:class:`_Brackets`),
    ``outcome`` (:class:`_Outcome`). ``engine_logits``: the probes' engine, when it is not
    the clean pass's (TensorFlow), to evaluate each clean image once more on it.
    """

    probe_needs_gradient = False

    def __init__(
        self,
        scheduler: Scheduler,
        weights: list[np.ndarray | None],
        grid: np.ndarray,
        tol: float,
        sign_out: np.ndarray | None,
        engine_logits: Callable[[np.ndarray], np.ndarray] | None = None,
        clean_out: CleanPasses | None = None,
    ) -> None:
        self.rows, self.weights, self.grid, self.tol = scheduler, weights, grid, tol
        self.engine_logits = engine_logits
        self.sign_out = sign_out  # receives sign(g) of each admitted image
        self.clean_out = clean_out  # receives the clean logits and sign(g) of each
        n = len(scheduler.image)
        self.labels = scheduler.labels[scheduler.image]  # the true label of each row
        self.direction = np.zeros((n, *scheduler.images.shape[1:]), np.float32)
        self.probe_eps = np.zeros(n)  # the pending probe of each row, float32-exact
        self.outcome = _Outcome.empty(n)
        self.scan = _GridScan.empty(grid, n)
        self.brackets = _Brackets.empty(n)

    def admit(self, batch: np.ndarray, logits: np.ndarray, gradient: np.ndarray) -> None:
        """The clean pass of images ``batch``, shared by their rows in every search: statuses,
        directions, and each searched row's first grid probe."""
        sign = gradient_sign(gradient)  # once per image, shared by sign_out and every search
        if self.sign_out is not None:
            self.sign_out[batch] = sign
        if self.clean_out is not None:
            self.clean_out.record(batch, logits, sign)
        searches = len(self.weights)
        rows = self.rows.rows_of(batch)
        direction = self.direction[rows] = weighted_directions(sign, self.weights, batch)
        # Rows < N are the images themselves: the margin is the image's, whatever the search.
        margin, clean_label = model_calls.margin(logits, self.labels[batch])
        misclassified = _flips(clean_label, self.labels[batch])
        disagrees = np.zeros_like(misclassified)
        if self.engine_logits is not None:
            engine_logits = self.engine_logits(self.rows.images[batch])
            margin, engine_label = model_calls.margin(engine_logits, self.labels[batch])
            disagrees = ~misclassified & _flips(engine_label, self.labels[batch])
        misclassified, disagrees = np.tile(misclassified, searches), np.tile(disagrees, searches)
        zero = ~misclassified & ~disagrees & all_zero(direction)
        self._finish(rows[misclassified], MISCLASSIFIED_AT_START, np.nan)
        self._finish(rows[disagrees], ENGINE_DISAGREES, np.nan)
        self._finish(rows[zero], ZERO_GRADIENT, np.inf)
        searched = ~misclassified & ~disagrees & ~zero
        self.scan.start(rows[searched], np.tile(margin, searches)[searched])
        self._set_phase(rows[searched], SCAN, self.grid[0])

    def probe_inputs(self, row: np.ndarray) -> np.ndarray:
        """x(eps) of the pending probe of each row."""
        return perturb(
            self.rows.images[self.rows.image[row]], self.direction[row], self.probe_eps[row]
        )

    def record(self, row: np.ndarray, logits: np.ndarray, gradient: np.ndarray | None) -> None:
        """Logits of the pending probes of ``row`` (each row at most once); no gradient."""
        margin, label = model_calls.margin(logits, self.labels[row])
        flipped = _flips(label, self.labels[row])
        phase = self.rows.phase[row]
        for which, handler in (
            (SCAN, self._scanned),
            (CHECK, self._checked),
            (REFINE, self._refined),
        ):
            mask = phase == which
            handler(row[mask], margin[mask], label[mask], flipped[mask])

    def _scanned(self, row, margin, label, flipped) -> None:
        """A grid probe: below the first flip the scan moves on; the first flip opens the
        bracket (lo: the path point below, c: the one below that) and queues the check."""
        passed, last = row[~flipped], self.scan.passed(row[~flipped], margin[~flipped])
        self._finish(passed[last], NOT_FLIPPED, np.inf)
        self._set_phase(passed[~last], SCAN, self.grid[self.scan.point[passed[~last]]])
        row, margin, label = row[flipped], margin[flipped], label[flipped]
        first = self.scan.point[row]  # the path index of lo is `first`, of hi `first + 1`
        self.outcome.adversarial_label[row] = label
        self.brackets.open(
            row,
            self.scan.path_eps(first),
            self.scan.margin_lo[row],
            self.grid[first],
            margin,
            np.where(first > 0, self.scan.path_eps(np.maximum(first - 1, 0)), np.nan),
            self.scan.margin_below[row],
        )
        has_next = first + 1 < len(self.grid)
        self._set_phase(row[has_next], CHECK, self.grid[first[has_next] + 1])
        self._refine(row[~has_next])

    def _checked(self, row, margin, label, flipped) -> None:
        """The grid point after the first flipping one: ``non_monotone`` if it does not flip.
        A bracket from the clean image takes it as its third point."""
        self.outcome.non_monotone[row] = ~flipped
        from_clean = self.scan.point[row] == 0
        self.brackets.set_third(row[from_clean], self.grid[1], margin[from_clean])
        self._refine(row)

    def _refined(self, row, margin, label, flipped) -> None:
        self.brackets.step(row, self.probe_eps[row], margin, flipped)
        if np.any(self.brackets.rounds[row] > MAX_REFINEMENT_ROUNDS):
            raise RuntimeError("refinement did not converge; is tol below float32 resolution?")
        self.outcome.adversarial_label[row[flipped]] = label[flipped]
        self._refine(row)

    def _refine(self, row: np.ndarray) -> None:
        """Finish brackets no wider than tol at hi; queue the next probe of the others."""
        narrow = self.brackets.narrow(row, self.tol)
        self._finish(row[narrow], FLIPPED, self.brackets.hi[row[narrow]])
        row = row[~narrow]
        probe = self.brackets.aim(row, self.tol)
        # float32 rounding may leave no float strictly inside the bracket: stop at hi.
        stuck = (probe <= self.brackets.lo[row]) | (probe >= self.brackets.hi[row])
        self._finish(row[stuck], FLIPPED, self.brackets.hi[row[stuck]])
        self._set_phase(row[~stuck], REFINE, probe[~stuck])

    def _set_phase(self, row: np.ndarray, phase: int, probe_eps) -> None:
        self.rows.phase[row] = phase
        self.probe_eps[row] = probe_eps

    def _finish(self, row: np.ndarray, status: str, epsilon) -> None:
        self.outcome.status[row] = status
        self.outcome.epsilon[row] = epsilon
        self.rows.phase[row] = DONE

    def results(self) -> list[SearchResult]:
        return self.outcome.results(len(self.weights), self.rows.passes)


def _next_probe(lo, f_lo, hi, f_hi, c, f_c, *, halved, tol) -> np.ndarray:
    """Next refinement probe inside each bracket (lo, hi), float32-exact, float64 [R].

    f_lo >= 0 >= f_hi are the margins at the ends and (c, f_c) a third point of the path (nan
    when there is none). The root estimate is inverse quadratic interpolation through the three
    points where it lands inside the bracket, else the secant of the two ends; bisection where the
    last GUARD_PROBES probes did not halve the bracket (``halved`` False). An estimate within tol
    of an end is moved to exactly tol from that end, so that a probe landing across the root closes
    the bracket at once; a bracket narrower than 2 tol is split in the middle, which closes it.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        secant = lo + (hi - lo) * f_lo / (f_lo - f_hi)
        quadratic = (
            lo * f_hi * f_c / ((f_lo - f_hi) * (f_lo - f_c))
            + hi * f_lo * f_c / ((f_hi - f_lo) * (f_hi - f_c))
            + c * f_lo * f_hi / ((f_c - f_lo) * (f_c - f_hi))
        )
    estimate = np.where((quadratic > lo) & (quadratic < hi), quadratic, secant)
    midpoint = 0.5 * (lo + hi)
    estimate = np.where(np.isfinite(estimate) & halved, estimate, midpoint)
    step_up = _float32_on_side(lo + tol, below=True)  # closes the bracket if it flips
    step_down = _float32_on_side(hi - tol, below=False)  # closes it if it does not flip
    estimate = np.where(estimate - lo < tol, step_up, estimate)
    estimate = np.where(hi - estimate < tol, step_down, estimate)
    probe = np.where(hi - lo <= 2 * tol, midpoint, estimate)
    return as_float32_exact(probe)


def gradient_sign(gradient: np.ndarray) -> np.ndarray:
    """sign(g), float32 (exactly -1, 0 or 1)."""
    return np.sign(gradient).astype(np.float32)


def apply_weights(sign: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """sign(g) * w, float32; weights broadcast over channels. ``sign`` is not modified."""
    return sign if weights is None else sign * weights


def weighted_directions(
    sign: np.ndarray, weights: list[np.ndarray | None], batch: np.ndarray
) -> np.ndarray:
    """sign(g) of images ``batch`` times each search's weights, the searches stacked in the order
    of ``weights`` (the rows of a :class:`~robustmap.scheduler.Scheduler`), float32."""
    return np.concatenate([apply_weights(sign, batch_weights(w, batch)) for w in weights])


def all_zero(directions: np.ndarray) -> np.ndarray:
    """Which directions (axis 0) are zero everywhere: nothing to perturb along (zero_gradient)."""
    return ~directions.reshape(len(directions), -1).any(axis=1)


def batch_weights(weights: np.ndarray | None, index: slice | np.ndarray) -> np.ndarray | None:
    """The weights of images ``index`` (a slice or an index array) of a search's weights, float32
    [n, H, W, C or 1] ready to broadcast over the channels; None (weights 1) stays None."""
    if weights is None:
        return None
    w = np.asarray(weights[index], dtype=np.float32)
    if w.ndim == 3:
        w = w[..., None]
    if w.ndim != 4 or np.any(w < 0) or np.any(w > 1):
        raise ValueError("weights must be [N,H,W], [N,H,W,1] or [N,H,W,C] with values in [0, 1]")
    return w


def checked_inputs(images, labels) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or labels.shape != (len(images),):
        raise ValueError("images must be [N, H, W, C] and labels [N]")
    return images, labels


def _checked_grid(grid, eps_max: float) -> np.ndarray:
    grid = as_float32_exact(np.asarray(grid, dtype=np.float64))
    if grid.ndim != 1 or np.any(np.diff(grid) <= 0) or grid[0] <= 0 or grid[-1] > eps_max:
        raise ValueError("grid must increase strictly within (0, eps_max]")
    return grid


def _float32_on_side(eps: np.ndarray, *, below: bool) -> np.ndarray:
    """The float32 nearest ``eps`` not above it (below=True) or not below it, as float64."""
    rounded = np.asarray(eps, dtype=np.float32)
    exact = rounded.astype(np.float64)
    wrong = exact > eps if below else exact < eps
    rounded[wrong] = np.nextafter(rounded[wrong], np.float32(-np.inf if below else np.inf))
    return rounded.astype(np.float64)


def float32_at_least(eps: np.ndarray) -> np.ndarray:
    """The smallest float32 not below ``eps`` (rounded up), as float64."""
    return _float32_on_side(np.asarray(eps, dtype=np.float64), below=False)


def as_float32_exact(eps: np.ndarray) -> np.ndarray:
    """Round to the nearest float32, kept as float64: the epsilon the model actually sees."""
    return np.asarray(eps, dtype=np.float32).astype(np.float64)
