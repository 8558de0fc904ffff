"""Does the model look where a human would? Localisation scores summarised against chance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustmap.bootstrap import mean_ci, seeded_generator
from robustmap.kinds import HEATMAP_KINDS
from robustmap.schema import BOX_FRACTION_COLUMN, LOCALISATION_SUMMARY_COLUMNS, localisation_column


def localisation_summary(
    per_image_table: pd.DataFrame, *, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Does the model look where a human would? Per model, heatmap and class, against chance.

    Over the correctly classified images with a valid human box: ``pointing_accuracy`` (share
    of pointing-game hits) and ``energy_in_box`` (mean share of heat inside the box), each with
    a percentile bootstrap 95% CI, beside ``chance`` (mean box fraction: what a random pixel or
    a uniform map would score), and the means of ``rank_accuracy`` and ``auc`` (chance 0.5).
    One row per class and one ``all`` row (``imagenet_index`` null) per model and heatmap.

    Returns:
        model, heatmap, imagenet_index, class_name, n, pointing_accuracy, pointing_ci_low,
        pointing_ci_high, energy_in_box, energy_ci_low, energy_ci_high, chance, rank_accuracy,
        auc.
    """
    rows = []
    if BOX_FRACTION_COLUMN in per_image_table:
        boxed = per_image_table[per_image_table[BOX_FRACTION_COLUMN].notna()]
        for (model, heatmap), images, index, name in _localisation_groups(boxed):
            rng = seeded_generator(seed, (model, "localisation", heatmap, index))
            rows.append(
                {"model": model, "heatmap": heatmap, "imagenet_index": index, "class_name": name}
                | _localisation_row(images, heatmap, bootstrap=bootstrap, rng=rng)
            )
    return pd.DataFrame(rows, columns=list(LOCALISATION_SUMMARY_COLUMNS)).astype(
        {"imagenet_index": "Int64"}
    )


def _localisation_groups(boxed: pd.DataFrame):
    """(model, heatmap), images, class index, class name: the ``all`` group, then each class."""
    for model, images in boxed.groupby("model", sort=True):
        for heatmap in HEATMAP_KINDS:
            yield (model, heatmap), images, None, "all"
            for index, members in images.groupby("imagenet_index", sort=True):
                yield (model, heatmap), members, int(index), members["class_name"].iloc[0]


def _localisation_row(
    images: pd.DataFrame, heatmap: str, *, bootstrap: int, rng: np.random.Generator
) -> dict:
    hits = images[localisation_column(heatmap, "pointing_hit")].to_numpy(dtype=np.float64)
    energy = images[localisation_column(heatmap, "energy_in_box")].to_numpy(dtype=np.float64)
    both = ~np.isnan(hits) & ~np.isnan(energy)  # an all-zero map has neither
    pair = np.column_stack([hits[both], energy[both]])
    low, high = (np.full(2, np.nan),) * 2
    if len(pair) >= 2:
        low, high = mean_ci(pair, bootstrap=bootstrap, rng=rng)
    mean = pair.mean(axis=0) if len(pair) else np.full(2, np.nan)
    return {
        "n": int(both.sum()),
        "pointing_accuracy": mean[0],
        "pointing_ci_low": low[0],
        "pointing_ci_high": high[0],
        "energy_in_box": mean[1],
        "energy_ci_low": low[1],
        "energy_ci_high": high[1],
        "chance": float(images.loc[both, BOX_FRACTION_COLUMN].mean()) if both.any() else np.nan,
        "rank_accuracy": _defined_mean(images[localisation_column(heatmap, "rank_accuracy")]),
        "auc": _defined_mean(images[localisation_column(heatmap, "auc")]),
    }


def _defined_mean(values: pd.Series) -> float:
    """Mean of the defined values; nan, without numpy's empty-slice warning, if there is none
    (e.g. the AUC of a class whose boxes all cover the whole image)."""
    defined = values.to_numpy(dtype=np.float64)
    defined = defined[~np.isnan(defined)]
    return float(defined.mean()) if defined.size else np.nan
