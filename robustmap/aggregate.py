"""The study's tables: per image, per class and per model, censoring kept explicit.

Epsilon conventions (from :mod:`robustmap.search`):

* finite epsilon: the image flipped at that epsilon (an *observed* value);
* ``inf``: the image did not flip up to ``eps_max`` (``not_flipped``, ``zero_gradient``): it is
  *censored*, its minimal epsilon is larger than every epsilon searched;
* ``nan``: no epsilon exists (the image was not searched because the model got it wrong, or the
  search found it ``misclassified_at_start``).

Order statistics treat a censored epsilon as larger than every observed one, which is exactly what
``inf`` does inside a sort: a median, quartile or rank that lands on a censored image is ``inf``
and flagged, never replaced by a number. Means cannot be formed that way, so the tables report
the mean over flipped images only and name it so (``mean_flipped``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

SEARCH_KINDS = ("uniform", "object", "background")
HEATMAP_KINDS = ("gradcam", "saliency")
AGREEMENT_COLUMNS = ("spearman", "iou_top20")
SEARCH_FIELDS = (
    "epsilon",
    "status",
    "adversarial_label",
    "adversarial_name",
    "forward_passes",
    "non_monotone",
)
# The same fields in the column order of a search table (robustmap.measure.SEARCH_COLUMNS).
SEARCH_TABLE_FIELDS = (
    "epsilon",
    "adversarial_label",
    "adversarial_name",
    "forward_passes",
    "status",
    "non_monotone",
)
PREDICTION_FIELDS = (
    "top1",
    "top1_name",
    "top2",
    "top3",
    "top4",
    "top5",
    "logit_margin",
    "correct",
    "in_top5",
)


def search_order(kinds: Sequence[str]) -> list[str]:
    """Search kinds in the study's order (uniform, object, background), unknown kinds last."""
    known = [kind for kind in SEARCH_KINDS if kind in set(kinds)]
    return known + sorted(set(kinds) - set(SEARCH_KINDS))


def merge_searches(shard_tables: Sequence[pd.DataFrame], shards: pd.DataFrame) -> pd.DataFrame:
    """One model's per-shard search tables as one table, checked to be complete.

    Args:
        shard_tables: frames with ``image_id``, ``search`` and the search result columns, one per
            shard and search kind, in any order.
        shards: the model's shard table (``image_id``, ``shard``, ...), whose row order is the
            image order of the result.

    Returns:
        The rows sorted by search kind (uniform, object, background) and then by shard-table
        image order, index reset. Censored rows are kept as they are.

    Raises:
        ValueError: some shard image lacks a row for a search kind present in the tables, has
            more than one, or a row names an image that is not in any shard. The message names the
            image ids, so nothing is lost (or invented) silently.
    """
    frames = [frame for frame in shard_tables if len(frame)]
    if not frames:
        if len(shards):
            raise ValueError(
                f"no search rows for {len(shards)} shard images, e.g. "
                f"{_examples(shards['image_id'])}"
            )
        # no correct image, no shard: every column of a search table, no rows
        return _empty_epsilons()[["image_id", "search", *SEARCH_TABLE_FIELDS]]
    merged = pd.concat(frames, ignore_index=True)
    position = pd.Series(np.arange(len(shards)), index=shards["image_id"].to_numpy())
    if not position.index.is_unique:
        twice = position.index[position.index.duplicated()].unique()
        raise ValueError(f"shard table lists images twice: {_examples(twice)}")
    _check_complete(merged, position.index)
    kinds = search_order(merged["search"].unique())
    order = pd.DataFrame(
        {
            "kind": merged["search"].map({kind: rank for rank, kind in enumerate(kinds)}),
            "image": merged["image_id"].map(position),
        }
    )
    return merged.loc[order.sort_values(["kind", "image"], kind="stable").index].reset_index(
        drop=True
    )


def _check_complete(merged: pd.DataFrame, expected: pd.Index) -> None:
    problems = []
    strangers = pd.Index(merged["image_id"].unique()).difference(expected)
    if len(strangers):
        problems.append(f"{len(strangers)} rows for images in no shard: {_examples(strangers)}")
    for kind, rows in merged.groupby("search", sort=True):
        counts = rows["image_id"].value_counts()
        missing = expected.difference(counts.index)
        if len(missing):
            problems.append(f"search {kind!r} misses {len(missing)} images: {_examples(missing)}")
        repeated = counts.index[counts > 1]
        if len(repeated):
            problems.append(
                f"search {kind!r} has several rows for {len(repeated)} images: "
                f"{_examples(repeated)}"
            )
    if problems:
        raise ValueError("incomplete search results; " + "; ".join(problems))


def _examples(ids, limit: int = 10) -> str:
    ids = sorted(map(str, ids))
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def per_image(
    labels: pd.DataFrame,
    predictions_by_model: Mapping[str, pd.DataFrame],
    epsilons_by_model: Mapping[str, pd.DataFrame],
    compactness_by_model: Mapping[str, pd.DataFrame],
) -> pd.DataFrame:
    """One row per model and label-table row: label, prediction, epsilons and compactness.

    Columns: ``model``; every label column; the prediction fields (``top1`` .. ``top5``,
    ``logit_margin``, ``correct``, ``in_top5``); for each search kind ``epsilon_<kind>``,
    ``search_status_<kind>``, ``adversarial_label_<kind>``, ``forward_passes_<kind>`` and
    ``non_monotone_<kind>`` (null where the image was not searched); for each heatmap kind and
    compactness score ``<heatmap>_<score>`` (e.g. ``gradcam_gini``), plus the saliency-vs-Grad-CAM
    agreement ``heatmap_spearman`` and ``heatmap_iou_top20``.

    Models are sorted by name, rows within a model keep the label-table order.
    """
    parts = []
    for model in sorted(predictions_by_model):
        rows = labels.copy()
        rows.insert(0, "model", model)
        rows = _join(rows, _prediction_columns(predictions_by_model[model]), model)
        rows = _join(rows, _search_columns(epsilons_by_model.get(model)), model)
        rows = _join(rows, _compactness_columns(compactness_by_model.get(model)), model)
        parts.append(rows)
    if not parts:
        return labels.iloc[:0].assign(model=pd.Series(dtype=object))
    return pd.concat(parts, ignore_index=True)


def _join(rows: pd.DataFrame, extra: pd.DataFrame, model: str) -> pd.DataFrame:
    unknown = pd.Index(extra["image_id"]).difference(rows["image_id"])
    if len(unknown):
        raise ValueError(
            f"model {model}: rows for images not in the label table: {_examples(unknown)}"
        )
    return rows.merge(extra, on="image_id", how="left", validate="one_to_one")


def _prediction_columns(predictions: pd.DataFrame) -> pd.DataFrame:
    fields = [field for field in PREDICTION_FIELDS if field in predictions.columns]
    return predictions[["image_id", *fields]]


def _search_columns(epsilons: pd.DataFrame | None) -> pd.DataFrame:
    """Epsilon table pivoted to one row per image, every search kind present as columns."""
    wide = pd.DataFrame({"image_id": pd.Series(dtype=object)})
    epsilons = _empty_epsilons() if epsilons is None else epsilons
    fields = [field for field in SEARCH_FIELDS if field in epsilons.columns]  # names: optional
    for kind in SEARCH_KINDS:
        rows = epsilons[epsilons["search"] == kind]
        renamed = rows[["image_id", *fields]].rename(
            columns={
                field: (f"search_status_{kind}" if field == "status" else f"{field}_{kind}")
                for field in fields
            }
        )
        wide = wide.merge(renamed, on="image_id", how="outer", validate="one_to_one")
    wide = wide.astype({f"epsilon_{kind}": "float64" for kind in SEARCH_KINDS})
    return wide.astype(
        {f"adversarial_label_{kind}": "Int64" for kind in SEARCH_KINDS}
        | {f"forward_passes_{kind}": "Int64" for kind in SEARCH_KINDS}
        | {f"non_monotone_{kind}": "boolean" for kind in SEARCH_KINDS}
    )


def _empty_epsilons() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": pd.Series(dtype=object),
            "search": pd.Series(dtype=object),
            "epsilon": pd.Series(dtype="float64"),
            "status": pd.Series(dtype=object),
            "adversarial_label": pd.Series(dtype="Int64"),
            "adversarial_name": pd.Series(dtype=object),
            "forward_passes": pd.Series(dtype="Int64"),
            "non_monotone": pd.Series(dtype="boolean"),
        }
    )


def _compactness_columns(compactness: pd.DataFrame | None) -> pd.DataFrame:
    """Compactness rows (one per image and heatmap kind) pivoted to ``<heatmap>_<score>``."""
    if compactness is None:
        return pd.DataFrame({"image_id": pd.Series(dtype=object)})
    scores = [
        column
        for column in compactness.columns
        if column not in ("image_id", "heatmap", *AGREEMENT_COLUMNS)
    ]
    wide = pd.DataFrame({"image_id": pd.Series(dtype=object)})
    for heatmap in HEATMAP_KINDS:
        rows = compactness[compactness["heatmap"] == heatmap]
        renamed = rows[["image_id", *scores]].rename(
            columns={score: f"{heatmap}_{score}" for score in scores}
        )
        wide = wide.merge(renamed, on="image_id", how="outer", validate="one_to_one")
    agreement = [column for column in AGREEMENT_COLUMNS if column in compactness.columns]
    if agreement:
        per_image_agreement = compactness[["image_id", *agreement]].drop_duplicates("image_id")
        wide = wide.merge(
            per_image_agreement.rename(columns={c: f"heatmap_{c}" for c in agreement}),
            on="image_id",
            how="left",
            validate="one_to_one",
        )
    return wide


def long_epsilons(per_image_table: pd.DataFrame) -> pd.DataFrame:
    """The per-image table's epsilons as one row per model, image and search kind searched.

    Returns:
        model, image_id, imagenet_index, class_name, search, epsilon (float64, inf = censored).
        Images without an epsilon for a kind (not searched, or undefined) are left out here; the
        count of such images is kept in the summary tables as ``n_undefined``.
    """
    parts = []
    for kind in SEARCH_KINDS:
        column = f"epsilon_{kind}"
        if column not in per_image_table:
            continue
        searched = per_image_table[per_image_table[f"search_status_{kind}"].notna()]
        parts.append(
            pd.DataFrame(
                {
                    "model": searched["model"].to_numpy(),
                    "image_id": searched["image_id"].to_numpy(),
                    "imagenet_index": searched["imagenet_index"].to_numpy(),
                    "class_name": searched["class_name"].to_numpy(),
                    "search": kind,
                    "epsilon": searched[column].to_numpy(dtype="float64"),
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            columns=["model", "image_id", "imagenet_index", "class_name", "search", "epsilon"]
        )
    return pd.concat(parts, ignore_index=True)


def epsilon_summary(epsilons: np.ndarray) -> dict[str, float | int | bool]:
    """Censoring-aware summary of one group's epsilons (float64, inf = censored, nan = undefined).

    Returns:
        n (epsilons defined: flipped + censored), n_flipped, n_censored, n_undefined,
        mean_flipped (mean over flipped images only), median, q25, q75, iqr (``inf`` where a
        quantile falls on a censored image; ``iqr`` is then ``inf`` too), median_censored
        (the median is censored: more than half the images never flipped). Quantiles use the
        linear rule between order statistics, with ``inf`` ordered above every finite value;
        a quantile interpolated between a finite value and ``inf`` is ``inf``.
    """
    epsilons = np.asarray(epsilons, dtype=np.float64)
    defined = epsilons[~np.isnan(epsilons)]
    flipped = defined[np.isfinite(defined)]
    summary: dict[str, float | int | bool] = {
        "n": int(defined.size),
        "n_flipped": int(flipped.size),
        "n_censored": int(defined.size - flipped.size),
        "n_undefined": int(epsilons.size - defined.size),
        "mean_flipped": float(flipped.mean()) if flipped.size else np.nan,
    }
    q25, median, q75 = (censored_quantile(defined, q) for q in (0.25, 0.5, 0.75))
    summary.update(
        median=median,
        q25=q25,
        q75=q75,
        iqr=np.inf if np.isinf(q75) else q75 - q25,
        median_censored=bool(np.isinf(median)),
    )
    return summary


def censored_quantile(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile (linear interpolation) of values in which ``inf`` marks censoring.

    numpy's interpolation would give ``nan`` between a finite value and ``inf``; a quantile that
    touches a censored order statistic is censored itself, so it is ``inf`` here.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size == 0:
        return np.nan
    position = q * (ordered.size - 1)
    below, above = int(np.floor(position)), int(np.ceil(position))
    if np.isinf(ordered[above]):
        return np.inf
    fraction = position - below
    return float(ordered[below] + fraction * (ordered[above] - ordered[below]))


def per_class(per_image_table: pd.DataFrame) -> pd.DataFrame:
    """Per class, model and search kind: censoring-aware epsilon summary, accuracy and rank.

    Returns:
        model, search, imagenet_index, class_name, images (label rows of the class the model
        could be scored on), accuracy (clean top-1 over those), the columns of
        :func:`epsilon_summary`, and ``sensitivity_rank`` (1 = most sensitive class of that model
        and search). Ranks order classes by median, then q25, q75 and mean_flipped (censored
        values last), then class index; classes without any epsilon get no rank.
    """
    accuracy = _class_accuracy(per_image_table)
    epsilons = long_epsilons(per_image_table)
    rows = []
    for (model, search, index), group in epsilons.groupby(
        ["model", "search", "imagenet_index"], sort=True
    ):
        rows.append(
            {"model": model, "search": search, "imagenet_index": index}
            | epsilon_summary(group["epsilon"].to_numpy())
        )
    summary = pd.DataFrame(rows, columns=["model", "search", "imagenet_index", *_SUMMARY_COLUMNS])
    keys = accuracy[["model", "imagenet_index"]].merge(
        pd.DataFrame({"search": _searched_kinds(epsilons)}), how="cross"
    )
    table = keys.merge(summary, on=["model", "search", "imagenet_index"], how="left")
    table = table.merge(accuracy, on=["model", "imagenet_index"], how="left")
    table = _fill_empty_groups(table)
    table["sensitivity_rank"] = _ranks(table, by=["model", "search"])
    table = table.sort_values(
        ["model", "search", "imagenet_index"],
        key=lambda column: column.map(_SEARCH_RANK) if column.name == "search" else column,
        kind="stable",
    )
    columns = ["model", "search", "imagenet_index", "class_name", "images", "accuracy"]
    return table[columns + list(_SUMMARY_COLUMNS) + ["sensitivity_rank"]].reset_index(drop=True)


_SUMMARY_COLUMNS = (
    "n",
    "n_flipped",
    "n_censored",
    "n_undefined",
    "mean_flipped",
    "median",
    "q25",
    "q75",
    "iqr",
    "median_censored",
)
_SEARCH_RANK = {kind: rank for rank, kind in enumerate(SEARCH_KINDS)}


def _searched_kinds(epsilons: pd.DataFrame) -> list[str]:
    """The search kinds in the data; all of them when no model got any image right, so that the
    summary tables still show every model's (zero) accuracy instead of no row at all."""
    return search_order(epsilons["search"].unique()) or list(SEARCH_KINDS)


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
    """1-based sensitivity rank within each group; null where a class has no epsilon."""
    ranked = table[table["n"] > 0].sort_values(
        [*by, "median", "q25", "q75", "mean_flipped", "imagenet_index"],
        kind="stable",
        na_position="last",
    )
    rank = ranked.groupby(by, sort=False).cumcount() + 1
    return rank.reindex(table.index).astype("Int64")


def per_model(
    per_image_table: pd.DataFrame, accuracy_by_model: Mapping[str, Mapping]
) -> pd.DataFrame:
    """Per model and search kind: the censoring-aware epsilon summary plus clean accuracy.

    Args:
        per_image_table: from :func:`per_image`.
        accuracy_by_model: each model's ``accuracy.json`` (images, scored, correct, top1, top5).

    Returns:
        model, search, images, scored, top1, top5, then the columns of :func:`epsilon_summary`,
        sorted by model and search kind.
    """
    epsilons = long_epsilons(per_image_table)
    rows = []
    for model in sorted(accuracy_by_model):
        accuracy = accuracy_by_model[model]
        clean = {key: accuracy[key] for key in ("images", "scored", "top1", "top5")}
        model_rows = epsilons[epsilons["model"] == model]
        for search in _searched_kinds(epsilons):
            values = model_rows.loc[model_rows["search"] == search, "epsilon"].to_numpy()
            rows.append({"model": model, "search": search} | clean | epsilon_summary(values))
    columns = ["model", "search", "images", "scored", "top1", "top5", *_SUMMARY_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def extreme_images(epsilons: pd.DataFrame, *, count: int, search: str = "uniform") -> pd.DataFrame:
    """The ``count`` most sensitive and ``count`` most robust images of one model's search.

    Args:
        epsilons: the model's merged epsilon table (image_id, search, epsilon, status, ...).

    Returns:
        image_id, epsilon, role ("most sensitive" / "most robust"): the smallest epsilons first,
        then the largest (censored ones count as largest) from the most robust down. Ties keep
        the table's image order. An image is never listed twice; images with an undefined
        epsilon are never listed.
    """
    rows = epsilons[(epsilons["search"] == search) & epsilons["epsilon"].notna()]
    ordered = rows.sort_values("epsilon", kind="stable")
    sensitive = ordered.head(count)
    robust = ordered.iloc[::-1]
    robust = robust[~robust["image_id"].isin(sensitive["image_id"])].head(count)
    return pd.concat(
        [
            sensitive[["image_id", "epsilon"]].assign(role="most sensitive"),
            robust[["image_id", "epsilon"]].assign(role="most robust"),
        ],
        ignore_index=True,
    )
