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

from robustmap.bootstrap import TAILS, mean_ci, resampled, seeded_generator
from robustmap.kinds import HEATMAP_KINDS, SEARCH_KINDS, search_order
from robustmap.localisation import NO_BOX
from robustmap.localisation import SCORES as LOCALISATION_SCORES
from robustmap.measure import SEARCH_COLUMNS

AGREEMENT_COLUMNS = ("spearman", "iou_top20")
SEARCH_FIELDS = (
    "epsilon",
    "status",
    "adversarial_label",
    "adversarial_name",
    "forward_passes",
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
MIN_CLASS_IMAGES = 5  # default of report.min_class_images: fewer searched images, no rank
CUSTOMARY_STEPS = {"1/255": 1 / 255, "2/255": 2 / 255, "4/255": 4 / 255, "8/255": 8 / 255}
ROBUSTNESS_GRID = (1e-4, 41)  # the curve's log grid: from 1e-4 to eps_max, this many points


def merge_searches(shard_tables: Sequence[pd.DataFrame], shards: pd.DataFrame) -> pd.DataFrame:
    """One model's per-shard search tables as one table, checked to be complete.

    Args:
        shard_tables: frames with ``image_id``, ``search`` and the search result columns, one per
            shard and search kind, in any order.
        shards: the model's shard table (``image_id``, ``shard``, ...), whose row order is the
            image order of the result.

    Returns:
        The rows sorted by search kind (:data:`robustmap.kinds.SEARCH_KINDS`), then by
        shard-table image order, index reset. Censored rows are kept as they are.

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
        return _empty_epsilons()[SEARCH_COLUMNS]
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
    localisation_by_model: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per model and label-table row: label, prediction, epsilons and compactness.

    Columns: ``model``; every label column; the prediction fields (``top1`` .. ``top5``,
    ``logit_margin``, ``correct``, ``in_top5``); for each search kind ``epsilon_<kind>``,
    ``search_status_<kind>``, ``adversarial_label_<kind>``, ``forward_passes_<kind>`` and
    ``non_monotone_<kind>`` (null where the image was not searched); for each heatmap kind and
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
        rows = _join(rows, _search_columns(epsilons_by_model.get(model)), model)
        rows = _join(rows, _compactness_columns(compactness_by_model.get(model)), model)
        if localisation_by_model is not None:
            found = localisation_by_model.get(model)
            rows = _join(rows, _localisation_columns(found), model)
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


def _localisation_columns(localisation: pd.DataFrame | None) -> pd.DataFrame:
    """Localisation rows (one per image and heatmap) pivoted to ``loc_<heatmap>_<score>``."""
    wide = pd.DataFrame({"image_id": pd.Series(dtype=object)})
    if localisation is None or localisation.empty:
        return wide
    scores = [s for s in LOCALISATION_SCORES if s != "box_fraction"]
    for heatmap in HEATMAP_KINDS:
        rows = localisation[localisation["heatmap"] == heatmap]
        renamed = rows[["image_id", *scores]].rename(
            columns={score: f"loc_{heatmap}_{score}" for score in scores}
        )
        wide = wide.merge(renamed, on="image_id", how="outer", validate="one_to_one")
    fraction = localisation[["image_id", "box_fraction"]].drop_duplicates("image_id")
    return wide.merge(
        fraction.rename(columns={"box_fraction": "loc_box_fraction"}),
        on="image_id",
        how="left",
        validate="one_to_one",
    )


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


def per_class(
    per_image_table: pd.DataFrame,
    *,
    min_class_images: int = MIN_CLASS_IMAGES,
    bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per class, model and search kind: censoring-aware epsilon summary, accuracy and rank.

    Args:
        per_image_table: from :func:`per_image`.
        min_class_images: classes with fewer searched images (``n``) are not ranked: a class
            mean of one image is noise, not a finding.
        bootstrap, seed: resamples and seed of the median's CI (:mod:`robustmap.bootstrap`; each
            row draws from its own generator keyed by model, search and class).

    Returns:
        model, search, imagenet_index, class_name, images (label rows of the class the model
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
    columns = ["model", "search", "imagenet_index", *_SUMMARY_COLUMNS, *_CI_COLUMNS]
    summary = pd.DataFrame(rows, columns=columns)
    keys = accuracy[["model", "imagenet_index"]].merge(
        pd.DataFrame({"search": _searched_kinds(epsilons)}), how="cross"
    )
    table = keys.merge(summary, on=["model", "search", "imagenet_index"], how="left")
    table = table.merge(accuracy, on=["model", "imagenet_index"], how="left")
    table = _fill_empty_groups(table)
    table["ranked"] = table["n"] >= min_class_images
    table["sensitivity_rank"] = _ranks(table, by=["model", "search"])
    table = table.sort_values(
        ["model", "search", "imagenet_index"],
        key=lambda column: column.map(_SEARCH_RANK) if column.name == "search" else column,
        kind="stable",
    )
    columns = ["model", "search", "imagenet_index", "class_name", "images", "accuracy"]
    ranking = [*_CI_COLUMNS, "ranked", "sensitivity_rank"]
    return table[columns + list(_SUMMARY_COLUMNS) + ranking].reset_index(drop=True)


def median_ci(
    epsilons: np.ndarray, *, bootstrap: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the censoring-aware median (``inf`` = censored).

    Each resample's median follows :func:`censored_quantile`, and so do the 2.5% and 97.5%
    points of the resampled medians: a bound that touches a censored median is ``inf``.
    Undefined (nan) epsilons are left out; fewer than two defined values give (nan, nan).
    """
    defined = np.asarray(epsilons, dtype=np.float64)
    defined = defined[~np.isnan(defined)]
    if defined.size < 2:
        return np.nan, np.nan
    medians = resampled(defined, _censored_medians, bootstrap=bootstrap, rng=rng)
    return censored_quantile(medians, TAILS[0]), censored_quantile(medians, TAILS[1])


def _censored_medians(samples: np.ndarray, axis: int) -> np.ndarray:
    """:func:`censored_quantile` at 0.5 of every resample: samples [B, n] -> [B]."""
    ordered = np.sort(samples, axis=axis)
    position = 0.5 * (ordered.shape[axis] - 1)
    below = np.take(ordered, int(np.floor(position)), axis=axis)
    above = np.take(ordered, int(np.ceil(position)), axis=axis)
    with np.errstate(invalid="ignore"):
        middle = below + (position - np.floor(position)) * (above - below)
    return np.where(np.isinf(above), np.inf, middle)


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
_CI_COLUMNS = ("median_ci_low", "median_ci_high")
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


def robustness(
    per_image_table: pd.DataFrame, *, eps_max: float, bootstrap: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Robustness curves: per model and search, the share of images that survive each step.

    An image *survives* a step s when the model classifies it correctly and its minimal epsilon
    exceeds s: no FGSM step up to size s along the image's own (weighted) direction flips it.
    This is not robustness to every perturbation of that size. Censored images (``inf``)
    survive every step up to ``eps_max``; misclassified images, and correct ones whose search
    found them misclassified at start, survive none. The denominator is every scoreable image,
    so at s -> 0 the curve starts at clean top-1 accuracy. Images whose box search could not
    run (status ``no_box``: no valid human box) are left out of that search's denominator.

    Steps: the customary 1/255, 2/255, 4/255 and 8/255 (``step`` names them; those above
    ``eps_max`` are left out: a censored image's fate there is unknown) and a log grid of
    :data:`ROBUSTNESS_GRID` points from 1e-4 to ``eps_max`` (``step`` null).

    Returns:
        model, search, step, epsilon, customary, n (scoreable images), survivors, share,
        ci_low, ci_high (percentile bootstrap 95% over images, seeded per model and search),
        sorted by model, search and epsilon.
    """
    steps = _robustness_steps(eps_max)
    rows = []
    for model, images in per_image_table.groupby("model", sort=True):
        scored = images[images["correct"].notna()]
        correct = scored["correct"].astype(bool).to_numpy()
        for search in _kinds_searched_per_image(per_image_table):
            # an image without a human box has no box-search epsilon: unknown, not a failure
            column = f"search_status_{search}"
            known = (
                (scored[column] != NO_BOX).to_numpy()
                if column in scored
                else np.ones(len(scored), bool)
            )
            epsilon = scored[f"epsilon_{search}"].to_numpy(dtype=np.float64)[known]
            with np.errstate(invalid="ignore"):
                survive = correct[known, None] & (epsilon[:, None] > steps["epsilon"].to_numpy())
            rng = seeded_generator(seed, (model, "robustness", search))
            low, high = _share_ci(survive, bootstrap=bootstrap, rng=rng)
            rows.append(
                steps.assign(
                    model=model,
                    search=search,
                    n=len(survive),
                    survivors=survive.sum(axis=0),
                    share=survive.mean(axis=0) if len(survive) else np.nan,
                    ci_low=low,
                    ci_high=high,
                )
            )
    columns = ["model", "search", "step", "epsilon", "customary", "n", "survivors", "share"]
    if not rows:
        return pd.DataFrame(columns=[*columns, "ci_low", "ci_high"])
    table = pd.concat(rows, ignore_index=True)[[*columns, "ci_low", "ci_high"]]
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


def _kinds_searched_per_image(per_image_table: pd.DataFrame) -> list[str]:
    """Search kinds that some image of the per-image table was searched with, in study order:
    a search status (or, in a table without statuses, an epsilon) is present."""
    searched = []
    for kind in SEARCH_KINDS:
        column = next(
            (c for c in (f"search_status_{kind}", f"epsilon_{kind}") if c in per_image_table),
            None,
        )
        if column is not None and per_image_table[column].notna().any():
            searched.append(kind)
    return searched


def _share_ci(
    survive: np.ndarray, *, bootstrap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap 95% CI of the surviving share at every step: survive [n, S]."""
    if len(survive) == 0:
        return np.full(survive.shape[1], np.nan), np.full(survive.shape[1], np.nan)
    return mean_ci(survive, bootstrap=bootstrap, rng=rng)


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
    if "loc_box_fraction" in per_image_table:
        boxed = per_image_table[per_image_table["loc_box_fraction"].notna()]
        for (model, heatmap), images, index, name in _localisation_groups(boxed):
            rng = seeded_generator(seed, (model, "localisation", heatmap, index))
            rows.append(
                {"model": model, "heatmap": heatmap, "imagenet_index": index, "class_name": name}
                | _localisation_row(images, heatmap, bootstrap=bootstrap, rng=rng)
            )
    return pd.DataFrame(rows, columns=_LOCALISATION_SUMMARY).astype({"imagenet_index": "Int64"})


_LOCALISATION_SUMMARY = (
    "model",
    "heatmap",
    "imagenet_index",
    "class_name",
    "n",
    "pointing_accuracy",
    "pointing_ci_low",
    "pointing_ci_high",
    "energy_in_box",
    "energy_ci_low",
    "energy_ci_high",
    "chance",
    "rank_accuracy",
    "auc",
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
    hits = images[f"loc_{heatmap}_pointing_hit"].to_numpy(dtype=np.float64)
    energy = images[f"loc_{heatmap}_energy_in_box"].to_numpy(dtype=np.float64)
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
        "chance": float(images.loc[both, "loc_box_fraction"].mean()) if both.any() else np.nan,
        "rank_accuracy": _defined_mean(images[f"loc_{heatmap}_rank_accuracy"]),
        "auc": _defined_mean(images[f"loc_{heatmap}_auc"]),
    }


def _defined_mean(values: pd.Series) -> float:
    """Mean of the defined values; nan, without numpy's empty-slice warning, if there is none
    (e.g. the AUC of a class whose boxes all cover the whole image)."""
    defined = values.to_numpy(dtype=np.float64)
    defined = defined[~np.isnan(defined)]
    return float(defined.mean()) if defined.size else np.nan


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
