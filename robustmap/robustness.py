"""Robustness curves: per model and search, the share of images that survive each step."""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustmap.bootstrap import mean_ci, seeded_generator
from robustmap.kinds import SEARCH_KINDS
from robustmap.schema import ATTACK_COLUMN, NO_BOX, ROBUSTNESS_COLUMNS, search_column, searched

CUSTOMARY_STEPS = {"1/255": 1 / 255, "2/255": 2 / 255, "4/255": 4 / 255, "8/255": 8 / 255}
ROBUSTNESS_GRID = (1e-4, 41)  # the curve's log grid: from 1e-4 to eps_max, this many points


def robustness(
    per_image_table: pd.DataFrame, *, eps_max: float, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Robustness curves: per model and search, the share of images that survive each step.

    An image *survives* a step s when the model classifies it correctly and its minimal epsilon
    exceeds s: the search's attack (FGSM along the image's own weighted direction, or PGD in
    the weighted box) found no flip up to size s. This is not robustness to every perturbation
    of that size. Censored images (``inf``)
    survive every step up to ``eps_max``; misclassified images, and correct ones whose search
    found them misclassified at start, survive none. The denominator is every scoreable image,
    so at s -> 0 the curve starts at clean top-1 accuracy. Images whose box search could not
    run (status ``no_box``: no valid human box) are left out of that search's denominator.

    Steps: the customary 1/255, 2/255, 4/255 and 8/255 (``step`` names them; those above
    ``eps_max`` are left out: a censored image's fate there is unknown) and a log grid of
    :data:`ROBUSTNESS_GRID` points from 1e-4 to ``eps_max`` (``step`` null).

    Returns:
        model, attack, search, step, epsilon, customary, n (scoreable images), survivors,
        share, ci_low, ci_high (percentile bootstrap 95% over images, seeded per model and
        search), sorted by model, search (FGSM's first) and epsilon.
    """
    steps = _robustness_steps(eps_max)
    found = searched(per_image_table, SEARCH_KINDS)
    rows = []
    for model, images in per_image_table.groupby("model", sort=True):
        scored = images[images["correct"].notna()]
        correct = scored["correct"].astype(bool).to_numpy()
        for search in found:
            # an image without a human box has no box-search epsilon: unknown, not a failure
            column = search_column("status", search)
            known = (
                (scored[column] != NO_BOX).to_numpy()
                if column in scored
                else np.ones(len(scored), bool)
            )
            epsilon = scored[search_column("epsilon", search)].to_numpy(dtype=np.float64)[known]
            with np.errstate(invalid="ignore"):
                survive = correct[known, None] & (epsilon[:, None] > steps["epsilon"].to_numpy())
            rng = seeded_generator(seed, (model, "robustness", search.name))
            low, high = _share_ci(survive, bootstrap=bootstrap, rng=rng)
            rows.append(
                steps.assign(
                    model=model,
                    **{ATTACK_COLUMN: search.attack},
                    search=search.name,
                    n=len(survive),
                    survivors=survive.sum(axis=0),
                    share=survive.mean(axis=0) if len(survive) else np.nan,
                    ci_low=low,
                    ci_high=high,
                )
            )
    if not rows:
        return pd.DataFrame(columns=list(ROBUSTNESS_COLUMNS))
    table = pd.concat(rows, ignore_index=True)[list(ROBUSTNESS_COLUMNS)]
    return table.astype({"n": "int64", "survivors": "int64"})


def _robustness_steps(eps_max: float) -> pd.DataFrame:
    """The customary steps up to ``eps_max`` and the log grid, merged in increasing order."""
    low, points = ROBUSTNESS_GRID
    customary = {name: step for name, step in CUSTOMARY_STEPS.items() if step <= eps_max}
    grid = np.geomspace(min(low, eps_max), eps_max, points)
    steps = pd.DataFrame(
        {
            "step": [*customary, *[None] * len(grid)],
            "epsilon": [*customary.values(), *grid],
            "customary": [True] * len(customary) + [False] * len(grid),
        }
    )
    return steps.sort_values(["epsilon", "customary"], kind="stable").reset_index(drop=True)


def _share_ci(
    survive: np.ndarray, *, bootstrap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap 95% CI of the surviving share at every step: survive [n, S]."""
    if len(survive) == 0:
        return np.full(survive.shape[1], np.nan), np.full(survive.shape[1], np.nan)
    return mean_ci(survive, bootstrap=bootstrap, rng=rng)
