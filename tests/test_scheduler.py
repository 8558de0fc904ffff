"""robustmap.scheduler with a counting attack and numpy model calls: no model, exact answers."""

import numpy as np
import pytest

from robustmap.scheduler import DONE, WAITING, Scheduler


class Calls:
    """Model calls of ``rows`` images; logits: each image's mean pixel; gradient: its label."""

    def __init__(self, rows: int) -> None:
        self.rows, self.sizes = rows, []

    def logits(self, x):
        self.sizes.append(("forward", len(x)))
        return x.reshape(len(x), -1).mean(axis=1, keepdims=True)

    def logits_and_gradient(self, x, y):
        self.sizes.append(("gradient", len(x)))
        logits = x.reshape(len(x), -1).mean(axis=1, keepdims=True)
        return logits, np.broadcast_to(y[:, None, None, None], x.shape)


class Steps:
    """Row r takes ``steps[r]`` probes; its probe input is the row number, so ``record`` sees
    which rows were probed (the logits are the inputs' means)."""

    def __init__(self, rows: Scheduler, steps: np.ndarray, *, gradient: bool) -> None:
        self.rows, self.left, self.probe_needs_gradient = rows, steps.copy(), gradient
        self.admitted, self.probed, self.gradients = [], [], []

    def admit(self, batch, logits, gradient) -> None:
        self.admitted.append(batch.tolist())
        rows = self.rows.rows_of(batch)
        assert np.all(self.rows.phase[rows] == WAITING)
        self.rows.phase[rows] = np.where(self.left[rows] > 0, 0, DONE)

    def probe_inputs(self, row):
        return np.broadcast_to(row[:, None, None, None].astype(np.float32), (len(row), 1, 1, 1))

    def record(self, row, logits, gradient) -> None:
        np.testing.assert_array_equal(logits[:, 0], row)
        self.probed.append(row.tolist())
        if gradient is not None:
            self.gradients.append(gradient[:, 0, 0, 0].tolist())
        self.left[row] -= 1
        self.rows.phase[row[self.left[row] == 0]] = DONE


def run(steps, *, images: int, copies: int, batch_size: int, rows: int, gradient=False):
    labels = np.arange(images) + 100
    progress = []
    scheduler = Scheduler(
        np.zeros((images, 1, 1, 1), np.float32),
        labels,
        copies,
        batch_size,
        lambda *a: progress.append(a),
    )
    attack, calls = Steps(scheduler, np.asarray(steps), gradient=gradient), Calls(rows)
    scheduler.run(attack, calls)
    assert np.all(scheduler.phase == DONE)
    return scheduler, attack, calls, progress


def test_rows_are_admitted_while_less_than_a_call_is_pending_and_probed_in_whole_calls():
    # 2 copies of 6 images, rows = copy * 6 + image; image 1 is done at admission in copy 0.
    steps = [2, 0, 1, 3, 1, 1] + [1, 1, 2, 1, 1, 1]
    scheduler, attack, calls, progress = run(steps, images=6, copies=2, batch_size=2, rows=4)

    assert attack.admitted == [[0, 1], [2, 3], [4, 5]]
    # Images 0-1 leave 3 rows pending (< 4): admit 2-3, then 7 pending: one whole call of the
    # oldest images' rows, the other 3 wait. Then 4 pending: a call; 2 left: admit 4-5, 6
    # pending: a call, 2 wait; past the last admission the 3 left go as a tail.
    assert attack.probed == [[0, 6, 7, 2], [0, 8, 3, 9], [8, 3, 4, 10], [3, 5, 11]]
    assert calls.sizes == [
        ("gradient", 2),
        ("gradient", 2),
        ("forward", 4),
        ("forward", 4),
        ("gradient", 2),
        ("forward", 4),
        ("forward", 3),
    ]
    probes = np.bincount(np.concatenate(attack.probed), minlength=12)
    np.testing.assert_array_equal(probes, steps)
    np.testing.assert_array_equal(scheduler.passes, 1 + np.asarray(steps))
    assert progress == [(4, 12), (6, 12), (9, 12), (12, 12)]  # every batch_size rows done


def test_probes_that_need_gradients_get_them_with_their_images_labels():
    _, attack, calls, _ = run([1, 2, 1], images=3, copies=1, batch_size=4, rows=4, gradient=True)

    assert calls.sizes == [("gradient", 3), ("gradient", 3), ("gradient", 1)]  # no forward call
    assert attack.probed == [[0, 1, 2], [1]]
    assert attack.gradients == [[100, 101, 102], [101]]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_every_row_gets_its_probes_whatever_the_batch_size(batch_size):
    steps = np.random.default_rng(batch_size).integers(0, 5, 3 * 7)
    scheduler, attack, _, _ = run(steps, images=7, copies=3, batch_size=batch_size, rows=4)

    np.testing.assert_array_equal(scheduler.passes, 1 + steps)
    assert sum(attack.admitted, []) == list(range(7))
    for probed in attack.probed:
        images = np.asarray(probed) % 7
        assert np.all(np.diff(images) >= 0)  # oldest images first
