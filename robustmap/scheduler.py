"""The row scheduler an attack runs on: which rows are in flight and which model calls they fill.

What an attack does with a row is the attack's own (:class:`Attack`); the FGSM search in
``robustmap.search`` is the first, and its module docstring describes the search and its
scheduling. A row is one search of one image: ``copies`` searches of N images give the rows
``copy * N + image``. A row is WAITING until its image's clean pass admits it, then in one of the
attack's own phases (numbers >= 0, each with exactly one probe pending) until it is DONE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

WAITING, DONE = -1, -2
"""The scheduler's phases: not admitted yet; finished. An attack's own phases are >= 0."""


class ModelCalls(Protocol):
    """The compiled model calls the scheduler makes, ``rows`` images per call. ``logits`` takes
    any number of images; so must ``logits_and_gradient`` for an attack whose probes need
    gradients (a clean pass is at most ``batch_size`` images)."""

    rows: int

    def logits(self, x: np.ndarray) -> np.ndarray: ...

    def logits_and_gradient(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


class Attack(Protocol):
    """What an attack supplies: the admission of a clean pass, and the evaluation of probes.

    ``admit`` gets the clean logits and loss gradient of images ``batch`` and moves their rows
    out of WAITING. ``probe_inputs`` builds the pending probe of each row; ``record`` gets its
    logits (and, when ``probe_needs_gradient``, its input gradient: the probe then costs a
    gradient call instead of a forward call) and moves the row to its next phase or to DONE.
    An attack moves rows by setting the ``phase`` of the :class:`Scheduler` it was built on.
    """

    probe_needs_gradient: bool

    def admit(self, batch: np.ndarray, logits: np.ndarray, gradient: np.ndarray) -> None: ...

    def probe_inputs(self, row: np.ndarray) -> np.ndarray: ...

    def record(self, row: np.ndarray, logits: np.ndarray, gradient: np.ndarray | None) -> None: ...


class CleanPasses:
    """Each image's clean pass (logits [N, K] and gradient sign [N, H, W, C]), recorded as one
    attack admits its images and replayed to another attack of the same images and labels, so
    the second spends no model call on admission (PGD after FGSM). The arrays are allocated at
    the first record, when the logits' width is known."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.logits: np.ndarray | None = None
        self.sign: np.ndarray | None = None

    def record(self, batch: np.ndarray, logits: np.ndarray, sign: np.ndarray) -> None:
        if self.logits is None or self.sign is None:
            self.logits = np.zeros((self.n, *logits.shape[1:]), np.float32)
            self.sign = np.zeros((self.n, *sign.shape[1:]), np.int8)
        self.logits[batch], self.sign[batch] = logits, sign

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The recorded (logits, gradient sign as float32) of images ``batch``."""
        if self.logits is None or self.sign is None:
            raise ValueError("no clean pass was recorded")
        return self.logits[batch], self.sign[batch].astype(np.float32)


class Scheduler:
    """The rows of ``copies`` searches of ``images`` (float32 [N, H, W, C]) with true ``labels``
    (int [N]): their phases, their model passes (``passes``) and the loop of :meth:`run`.
    ``progress(done, total)`` counts finished rows, reported every ``batch_size`` rows."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        copies: int,
        batch_size: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.image = np.tile(np.arange(len(images)), copies)  # the image of each row
        self.phase = np.full(len(self.image), WAITING, np.int8)
        self.passes = np.ones(len(self.image), np.int64)  # the clean pass, then one per probe
        self._reporter = _Reporter(progress, len(self.image), batch_size)

    def rows_of(self, batch: np.ndarray) -> np.ndarray:
        """The rows of images ``batch``, copy after copy."""
        copies = len(self.image) // len(self.images)
        return (np.arange(copies)[:, None] * len(self.images) + batch).ravel()

    def pending(self) -> np.ndarray:
        """Rows with a probe pending, oldest image first (they are closest to finishing)."""
        row = np.flatnonzero(self.phase >= 0)
        return row[np.argsort(self.image[row], kind="stable")]

    def run(
        self,
        attack: Attack,
        calls: ModelCalls,
        probe_gradient: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
        | None = None,
        clean: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        """Admit, probe and record until every row is DONE; each image's clean pass is one
        gradient call for its ``batch_size`` images, shared by its rows, or, given ``clean``
        (images -> their logits and clean gradient or its sign, e.g. a :class:`CleanPasses`),
        no model call at all. ``probe_gradient`` (default ``calls.logits_and_gradient``) is the
        call of probes that need a gradient, for an attack whose probes follow another loss than
        its clean pass."""
        probe_gradient = probe_gradient or calls.logits_and_gradient
        if clean is None:

            def clean(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return calls.logits_and_gradient(self.images[batch], self.labels[batch])

        admitted = 0
        while True:
            while len(self.pending()) < calls.rows and admitted < len(self.images):
                batch = np.arange(admitted, min(admitted + self.batch_size, len(self.images)))
                attack.admit(batch, *clean(batch))
                admitted = batch[-1] + 1
            row = self.pending()
            if len(row) == 0:
                break
            # Whole calls only; the rest wait a round (a row's probes depend only on its own
            # logits, so waiting changes no result). Past the last admission: a bucketed tail.
            row = row[: len(row) - len(row) % calls.rows or None]
            x = attack.probe_inputs(row)
            if attack.probe_needs_gradient:
                attack.record(row, *probe_gradient(x, self.labels[self.image[row]]))
            else:
                attack.record(row, calls.logits(x), None)
            self.passes[row] += 1
            self._reporter.update(int(np.sum(self.phase == DONE)))
        self._reporter.update(len(self.phase), final=True)


class _Reporter:
    """Calls progress(done, total) each time another ``step`` rows (images) are finished."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int, step: int) -> None:
        self.progress, self.total, self.step, self.reported = progress, total, step, 0

    def update(self, done: int, *, final: bool = False) -> None:
        if self.progress is None or done == self.reported:
            return
        if final or done >= self.reported + self.step or done == self.total:
            self.progress(done, self.total)
            self.reported = done
