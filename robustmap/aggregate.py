"""The study's summary tables: the per-image join, and per class and per model, censoring kept.

Epsilons follow the conventions of :mod:`robustmap.censored` (``inf`` censored, ``nan``
undefined). Neighbours by concern: :mod:`robustmap.epsilon_table` (one model's merged searches,
its panel images), :mod:`robustmap.robustness` (robustness curves),
:mod:`robustmap.localisation_summary` (localisation against chance); column names come from
:mod:`robustmap.schema`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from robustmap.bootstrap import seeded_generator
from robustmap.censored import epsilon_summary, median_ci
from robustmap.epsilon_table import id_examples
from robustmap.kinds import HEATMAP_KINDS, SEARCH_KINDS
from robustmap.schema import (
    ATTACK_COLUMN,
    CI_COLUMNS,
    FGSM,
    LONG_EPSILON_COLUMNS,
    PER_CLASS_COLUMNS,
    PER_MODEL_COLUMNS,
    PREDICTION_FIELDS,
    SUMMARY_COLUMNS,
    search_column,
    searched,
    searches,
    wide_compactness,
    wide_localisation,
    wide_searches,
)

MIN_CLASS_IMAGES = 5  # default of report.min_class_images: fewer searched images, no rank


def per_image(
    labels: pd.DataFrame,
    predictions_by_model: Mapping[str, pd.DataFrame],
    epsilons_by_model: Mapping[str, pd.DataFrame],
    compactness_by_model: Mapping[str, pd.DataFrame],
    localisation_by_model: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per model and label-table row: label, prediction, epsilons and compactness.

    Columns: ``model``; every label column; the prediction fields (``top1`` .. ``top5``,
    ``logit_margin``, ``correct``, ``in_top5``); for each search (:func:`robustmap.schema.
    wide_searches`; for FGSM ``epsilon_<kind>``, ``search_status_<kind>``,
    ``adversarial_label_<kind>``, ``forward_passes_<kind>``, ``non_monotone_<kind>``, ...; for
    PGD ``epsilon_pgd_<kind>``, ``epsilon_low_pgd_<kind>``, ``gradient_passes_pgd_<kind>``, ...)
    its attack's fields (null where the image was not searched); for each heatmap kind and
    compactness score ``<heatmap>_<score>`` (e.g. ``gradcam_gini``), plus the saliency-vs-Grad-CAM
    agreement ``heatmap_spearman`` and ``heatmap_iou_top20``; with ``localisation_by_model``, each
    localisation score against the human box as ``loc_<heatmap>_<score>`` (e.g.
    ``loc_gradcam_energy_in_box``) and ``loc_box_fraction``.

    Models are sorted by name, rows within a model keep the label-table order.
    """
    parts = []
    for model in sorted(predictions_by_model):
        rows = labels.copy()
        rows.insert(0, "model", model)
        rows = _join(rows, _prediction_columns(predictions_by_model[model]), model)
        rows = _join(rows, wide_searches(epsilons_by_model.get(model), SEARCH_KINDS), model)
        rows = _join(rows, wide_compactness(compactness_by_model.get(model), HEATMAP_KINDS), model)
        if localisation_by_model is not None:
            found = localisation_by_model.get(model)
            rows = _join(rows, wide_localisation(found, HEATMAP_KINDS), model)
        parts.append(rows)
    if not parts:
        return labels.iloc[:0].assign(model=pd.Series(dtype=object))
    return pd.concat(parts, ignore_index=True)


def _join(rows: pd.DataFrame, extra: pd.DataFrame, model: str) -> pd.DataFrame:
    unknown = pd.Index(extra["image_id"]).difference(rows["image_id"])
    if len(unknown):
        raise ValueError(
            f"model {model}: rows for images not in the label table: {id_examples(unknown)}"
        )
    return rows.merge(extra, on="image_id", how="left", validate="one_to_one")


def _prediction_columns(predictions: pd.DataFrame) -> pd.DataFrame:
    fields = [field for field in PREDICTION_FIELDS if field in predictions.columns]
    return predictions[["image_id", *fields]]


def long_epsilons(per_image_table: pd.DataFrame) -> pd.DataFrame:
    """The per-image table's epsilons as one row per model, image and search searched (every
    attack's: ``search`` is :attr:`robustmap.schema.Search.name`).

    Returns:
        model, image_id, imagenet_index, class_name, search, epsilon (float64, inf = censored).
        Images without an epsilon for a kind (not searched, or undefined) are left out here; the
        count of such images is kept in the summary tables as ``n_undefined``.
    """
    parts = []
    for search in searched(per_image_table, SEARCH_KINDS):
        rows = per_image_table[per_image_table[search_column("status", search)].notna()]
        parts.append(
            pd.DataFrame(
                {
                    "model": rows["model"].to_numpy(),
                    "image_id": rows["image_id"].to_numpy(),
                    "imagenet_index": rows["imagenet_index"].to_numpy(),
                    "class_name": rows["class_name"].to_numpy(),
                    "search": search.name,
                    "epsilon": rows[search_column("epsilon", search)].to_numpy(dtype="float64"),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(LONG_EPSILON_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def per_class(
    per_image_table: pd.DataFrame,
    *,
    min_class_images: int = MIN_CLASS_IMAGES,
    bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per class, model and search (attack and kind): censoring-aware epsilon summary, accuracy
    and rank.

    Args:
        per_image_table: from :func:`per_image`.
        min_class_images: classes with fewer searched images (``n``) are not ranked: a class
            mean of one image is noise, not a finding.
        bootstrap, seed: resamples and seed of the median's CI (:mod:`robustmap.bootstrap`; each
            row draws from its own generator keyed by model, search and class).

    Returns:
        model, attack, search, imagenet_index, class_name, images (label rows of the class the model
        could be scored on), accuracy (clean top-1 over those), the columns of
        :func:`epsilon_summary`, ``median_ci_low`` and ``median_ci_high`` (percentile bootstrap
        95% CI of the censoring-aware median over the class's images; ``inf`` where the bound
        is censored; null for n < 2), ``ranked`` (n >= ``min_class_images``) and
        ``sensitivity_rank`` (1 = most sensitive ranked class of that model and search). Ranks
        order ranked classes by median, then q25, q75 and mean_flipped (censored values last),
        then class index; other classes get no rank.
    """
    accuracy = _class_accuracy(per_image_table)
    epsilons = long_epsilons(per_image_table)
    rows = []
    for (model, search, index), group in epsilons.groupby(
        ["model", "search", "imagenet_index"], sort=True
    ):
        values = group["epsilon"].to_numpy()
        low, high = median_ci(
            values, bootstrap=bootstrap, rng=seeded_generator(seed, (model, search, index))
        )
        rows.append(
            {"model": model, "search": search, "imagenet_index": index}
            | epsilon_summary(values)
            | {"median_ci_low": low, "median_ci_high": high}
        )
    columns = ["model", "search", "imagenet_index", *SUMMARY_COLUMNS, *CI_COLUMNS]
    summary = pd.DataFrame(rows, columns=columns)
    keys = accuracy[["model", "imagenet_index"]].merge(
        pd.DataFrame({"search": _summarised(per_image_table)}), how="cross"
    )
    table = keys.merge(summary, on=["model", "search", "imagenet_index"], how="left")
    table = table.merge(accuracy, on=["model", "imagenet_index"], how="left")
    table = _fill_empty_groups(table)
    table[ATTACK_COLUMN] = table["search"].map(_attacks())
    table["ranked"] = table["n"] >= min_class_images
    table["sensitivity_rank"] = _ranks(table, by=["model", "search"])
    table = table.sort_values(
        ["model", "search", "imagenet_index"],
        key=lambda column: column.map(_search_ranks()) if column.name == "search" else column,
        kind="stable",
    )
    return table[list(PER_CLASS_COLUMNS)].reset_index(drop=True)


def _summarised(per_image_table: pd.DataFrame) -> list[str]:
    """The searches of the summary tables: those in the table; every FGSM search when no model
    got any image right, so that the tables still show every model's (zero) accuracy instead of
    no row."""
    found = searched(per_image_table, SEARCH_KINDS) or searches(SEARCH_KINDS, (FGSM,))
    return [search.name for search in found]


def _search_ranks() -> dict[str, int]:
    """The study order of the searches by name: FGSM's first (:func:`robustmap.schema.searches`)."""
    return {search.name: rank for rank, search in enumerate(searches(SEARCH_KINDS))}


def _attacks() -> dict[str, str]:
    """The attack of each search name."""
    return {search.name: search.attack for search in searches(SEARCH_KINDS)}


def _class_accuracy(per_image_table: pd.DataFrame) -> pd.DataFrame:
    """Clean top-1 accuracy per model and class over the scoreable rows (correct not null)."""
    scored = per_image_table[
        per_image_table["correct"].notna() & per_image_table["imagenet_index"].notna()
    ]
    grouped = scored.groupby(["model", "imagenet_index"], sort=True)
    return pd.DataFrame(
        {
            "class_name": grouped["class_name"].first(),
            "images": grouped.size(),
            "accuracy": grouped["correct"].apply(lambda c: float(c.astype(bool).mean())),
        }
    ).reset_index()


def _fill_empty_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Classes the model never got right have no epsilons: zero counts, null statistics."""
    counts = ["n", "n_flipped", "n_censored", "n_undefined"]
    table[counts] = table[counts].fillna(0).astype("int64")
    table["median_censored"] = table["median_censored"].astype("boolean")
    return table


def _ranks(table: pd.DataFrame, *, by: list[str]) -> pd.Series:
    """1-based sensitivity rank within each group; null where a class is not ranked."""
    ranked = table[table["ranked"] & (table["n"] > 0)].sort_values(
        [*by, "median", "q25", "q75", "mean_flipped", "imagenet_index"],
        kind="stable",
        na_position="last",
    )
    rank = ranked.groupby(by, sort=False).cumcount() + 1
    return rank.reindex(table.index).astype("Int64")


def per_model(
    per_image_table: pd.DataFrame, accuracy_by_model: Mapping[str, Mapping]
) -> pd.DataFrame:
    """Per model and search (attack and kind): the censoring-aware epsilon summary plus clean
    accuracy.

    Args:
        per_image_table: from :func:`per_image`.
        accuracy_by_model: each model's ``accuracy.json`` (images, scored, correct, top1, top5).

    Returns:
        model, attack, search, images, scored, top1, top5, then the columns of
        :func:`epsilon_summary`, sorted by model and search (FGSM's first).
    """
    epsilons = long_epsilons(per_image_table)
    rows = []
    for model in sorted(accuracy_by_model):
        accuracy = accuracy_by_model[model]
        clean = {key: accuracy[key] for key in ("images", "scored", "top1", "top5")}
        model_rows = epsilons[epsilons["model"] == model]
        for search in _summarised(per_image_table):
            values = model_rows.loc[model_rows["search"] == search, "epsilon"].to_numpy()
            attack = {ATTACK_COLUMN: _attacks()[search], "search": search}
            rows.append({"model": model} | attack | clean | epsilon_summary(values))
    return pd.DataFrame(rows, columns=list(PER_MODEL_COLUMNS))
