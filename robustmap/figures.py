"""The study's figures: matplotlib Figure objects (no pyplot state), saved as stable PNG and SVG.

Every figure is built from the tables of :mod:`robustmap.aggregate` and
:mod:`robustmap.statistics`. Epsilons follow their conventions: ``inf`` = censored (no flip up
to ``eps_max``), drawn at the top of an axis with a distinct marker and never averaged; ``nan`` =
no epsilon. Saving fixes the SVG hash salt and drops dates, so the same tables give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustmap import tables
from robustmap.aggregate import HEATMAP_KINDS, search_order

SEARCH_COLOURS = {"uniform": "#0072B2", "object": "#D55E00", "background": "#009E73"}
CENSORED_COLOUR = "#CC79A7"
FORMATS = ("png", "svg")
DPI = 120
BULK_SHARE = 0.8  # the zoom keeps the central 80% of classes, sorted by mean epsilon
TOP_CLASSES = 10
_STABLE_RC = {
    "svg.hashsalt": "robustmap",
    "svg.fonttype": "path",
    "path.simplify": True,
    "font.family": "DejaVu Sans",
    "font.size": 9,
}
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
}


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` (format from its suffix: .png or .svg) with stable bytes."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"unsupported figure format {fmt!r}: expected one of {FORMATS}")
    with matplotlib.rc_context(_STABLE_RC), tables.atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return path


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_STABLE_RC):
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()


def message_figure(title: str, message: str) -> Figure:
    """A figure that only says why there is nothing to draw (e.g. a model with no correct image)."""
    figure = _figure(6, 2)
    figure.suptitle(title)
    _empty(figure.subplots(), message)
    return figure


NO_CORRECT = "no correct images"


def _no_epsilon(table: pd.DataFrame, model: str, otherwise: str) -> str:
    """Why ``model`` has nothing to draw: no correct image at all (per-class ``n`` or per-image
    ``correct`` all zero), else ``otherwise``."""
    rows = table[table["model"] == model]
    column = "n" if "n" in rows else "correct"
    nothing = not rows[column].fillna(0).astype(bool).any()
    return f"{model}: {NO_CORRECT}" if nothing else f"{model}: {otherwise}"


def _models(table: pd.DataFrame) -> list[str]:
    return sorted(table["model"].unique())


def figure_set(
    per_image_table: pd.DataFrame,
    per_class_table: pd.DataFrame,
    per_model_table: pd.DataFrame,
    statistics_table: pd.DataFrame,
    *,
    searches: Sequence[str],
    eps_max: float,
) -> dict[str, Figure]:
    """Every summary figure of the report, keyed by file stem (see :func:`figure_names`)."""
    figures: dict[str, Figure] = {}
    for search in searches:
        figures[f"class_epsilon_{search}"] = class_epsilon_figure(per_class_table, search=search)
        figures[f"class_bulk_{search}"] = class_epsilon_figure(
            per_class_table, search=search, central=BULK_SHARE
        )
        figures[f"class_extremes_{search}"] = class_extremes_figure(
            per_class_table, search=search, eps_max=eps_max
        )
    figures["epsilon_ecdf"] = epsilon_ecdf_figure(per_image_table, eps_max=eps_max)
    figures["paired_searches"] = paired_searches_figure(per_image_table)
    for heatmap in HEATMAP_KINDS:
        figures[f"compactness_{heatmap}"] = compactness_figure(
            per_image_table, statistics_table, heatmap=heatmap, eps_max=eps_max
        )
    figures["accuracy"] = accuracy_figure(per_model_table)
    return figures


def figure_names(searches: Sequence[str]) -> list[str]:
    """File stems :func:`figure_set` produces for these search kinds, in its order."""
    per_search = [
        f"{prefix}_{search}"
        for search in searches
        for prefix in ("class_epsilon", "class_bulk", "class_extremes")
    ]
    heatmaps = [f"compactness_{heatmap}" for heatmap in HEATMAP_KINDS]
    return per_search + ["epsilon_ecdf", "paired_searches", *heatmaps, "accuracy"]


def class_epsilon_figure(
    per_class_table: pd.DataFrame, *, search: str, central: float | None = None
) -> Figure:
    """Mean epsilon (flipped images) of every class, sorted, one panel per model.

    Bars: mean over flipped images; dots: the censoring-aware median; a triangle at the top
    marks a class whose median is censored. ``central`` (e.g. 0.8) keeps only the central share
    of the sorted classes, on a linear axis, to show the bulk; otherwise all classes, log axis.
    """
    rows = per_class_table[(per_class_table["search"] == search) & (per_class_table["n"] > 0)]
    models = _models(per_class_table)
    figure = _figure(10, 2.6 * max(len(models), 1) + 0.4)
    axes = figure.subplots(max(len(models), 1), 1, squeeze=False)[:, 0]
    scope = f"central {central:.0%} of classes" if central else "all classes"
    figure.suptitle(f"Mean minimal epsilon by class, {search} search ({scope}, sorted)")
    for ax, model in zip(axes, models, strict=False):
        classes = rows[rows["model"] == model].sort_values(
            ["mean_flipped", "median", "imagenet_index"], kind="stable", na_position="last"
        )
        if central:
            drop = int(np.floor(len(classes) * (1 - central) / 2))
            classes = classes.iloc[drop : len(classes) - drop]
        if classes.empty:
            _empty(ax, _no_epsilon(per_class_table, model, "no class with an epsilon"))
            continue
        _class_bars(ax, classes, log=not central)
        ax.set_title(f"{model} ({len(classes)} classes)", loc="left")
    if not models:
        _empty(axes[0], "no model")
    return figure


def _class_bars(ax, classes: pd.DataFrame, *, log: bool) -> None:
    x = np.arange(len(classes))
    mean = classes["mean_flipped"].to_numpy(dtype=float)
    median = classes["median"].to_numpy(dtype=float)
    colour = SEARCH_COLOURS.get(classes["search"].iloc[0], "0.5")
    ax.bar(x, np.nan_to_num(mean), color=colour, alpha=0.75, label="mean over flipped images")
    finite = np.isfinite(median)
    ax.plot(x[finite], median[finite], "o", color="black", ms=3, label="median (censoring-aware)")
    if log:
        ax.set_yscale("log")
    if (~finite).any():
        top = ax.get_ylim()[1]
        ax.plot(
            x[~finite],
            np.full((~finite).sum(), top),
            "^",
            color=CENSORED_COLOUR,
            ms=6,
            clip_on=False,
            label="median censored (most images never flipped)",
        )
    ax.set_ylabel("epsilon")
    ax.set_xlim(-0.6, len(x) - 0.4)
    _class_ticks(ax, x, classes["class_name"].astype(str).tolist())
    ax.legend(loc="upper left", fontsize=7, framealpha=0.85)


def _class_ticks(ax, x: np.ndarray, names: list[str]) -> None:
    if len(names) <= 80:
        ax.set_xticks(x, names, rotation=90, fontsize=max(4, min(8, 400 // max(len(names), 1))))
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(names)} classes, sorted (names in the per-class table)")


def class_extremes_figure(
    per_class_table: pd.DataFrame, *, search: str, eps_max: float, count: int = TOP_CLASSES
) -> Figure:
    """Top-``count`` most sensitive and most robust classes per model (by sensitivity rank).

    Bars: censoring-aware median; whiskers: q25 to q75. Censored quantiles are drawn to
    ``eps_max`` and the bar is marked as censored.
    """
    rows = per_class_table[
        (per_class_table["search"] == search) & per_class_table["sensitivity_rank"].notna()
    ]
    models = _models(per_class_table)
    height = 0.26 * count + 0.9
    figure = _figure(11, height * max(len(models), 1) + 0.4)
    axes = figure.subplots(max(len(models), 1), 2, squeeze=False)
    figure.suptitle(f"Most sensitive and most robust classes, {search} search (median, IQR)")
    for (left, right), model in zip(axes, models, strict=False):
        ranked = rows[rows["model"] == model].sort_values("sensitivity_rank")
        if ranked.empty:
            _empty(left, _no_epsilon(per_class_table, model, "no class with an epsilon"))
            right.set_axis_off()
            continue
        sensitive = ranked.head(count)
        robust = ranked.iloc[::-1].head(count)
        _extreme_bars(left, sensitive, eps_max=eps_max, title=f"{model}: most sensitive")
        _extreme_bars(right, robust, eps_max=eps_max, title=f"{model}: most robust")
    if not models:
        _empty(axes[0, 0], "no model")
        axes[0, 1].set_axis_off()
    return figure


def _extreme_bars(ax, classes: pd.DataFrame, *, eps_max: float, title: str) -> None:
    if classes.empty:
        _empty(ax, "no class with an epsilon")
        return
    y = np.arange(len(classes))[::-1]
    capped = {
        q: np.minimum(classes[q].to_numpy(dtype=float), eps_max) for q in ("q25", "median", "q75")
    }
    censored = classes["median_censored"].fillna(False).to_numpy(dtype=bool)
    colours = [
        CENSORED_COLOUR if c else SEARCH_COLOURS.get(s, "0.5")
        for c, s in zip(censored, classes["search"], strict=True)
    ]
    ax.barh(y, capped["median"], color=colours, alpha=0.8)
    ax.errorbar(
        capped["median"],
        y,
        xerr=[capped["median"] - capped["q25"], capped["q75"] - capped["median"]],
        fmt="none",
        ecolor="black",
        elinewidth=0.8,
        capsize=2,
    )
    labels = [
        f"{name} (n={n}{', censored' if c else ''})"
        for name, n, c in zip(classes["class_name"], classes["n"], censored, strict=True)
    ]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("minimal epsilon (median, q25-q75)")
    ax.set_title(title, loc="left", fontsize=9)


def epsilon_ecdf_figure(per_image_table: pd.DataFrame, *, eps_max: float) -> Figure:
    """Empirical CDF of the minimal epsilon per model and search kind, log x axis.

    The denominator counts censored images, so a curve ends below 1 by the censored share.
    """
    models = _models(per_image_table)
    columns = max(min(len(models), 3), 1)
    rows_n = int(np.ceil(max(len(models), 1) / columns))
    figure = _figure(4.2 * columns, 3.2 * rows_n + 0.4)
    axes = figure.subplots(rows_n, columns, squeeze=False).ravel()
    figure.suptitle("Distribution of the minimal epsilon (ECDF; censored images never reach it)")
    kinds = _kinds(per_image_table)
    for ax, model in zip(axes, models, strict=False):
        images = per_image_table[per_image_table["model"] == model]
        if not images["correct"].fillna(False).astype(bool).any():
            _empty(ax, f"{model}: {NO_CORRECT}")
            continue
        for kind in kinds:
            epsilon = images[f"epsilon_{kind}"].dropna().to_numpy(dtype=float)
            if epsilon.size == 0:
                continue
            flipped = np.sort(epsilon[np.isfinite(epsilon)])
            share = np.arange(1, flipped.size + 1) / epsilon.size
            censored = 1 - flipped.size / epsilon.size
            ax.step(
                np.concatenate([flipped, [eps_max]]),
                np.concatenate([share, [share[-1] if share.size else 0.0]]),
                where="post",
                color=SEARCH_COLOURS.get(kind, "0.5"),
                label=f"{kind} (n={epsilon.size}, censored {censored:.0%})",
            )
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.axvline(eps_max, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("minimal epsilon")
        ax.set_ylabel("share of searched images flipped")
        ax.set_title(model, loc="left")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", frameon=False)
    for ax in axes[len(models) :]:
        ax.set_axis_off()
    if not models:
        _empty(axes[0], "no model")
    return figure


def _kinds(per_image_table: pd.DataFrame) -> list[str]:
    present = [
        column.removeprefix("epsilon_")
        for column in per_image_table.columns
        if column.startswith("epsilon_") and per_image_table[column].notna().any()
    ]
    return search_order(present)


def paired_searches_figure(per_image_table: pd.DataFrame, *, max_lines: int = 300) -> Figure:
    """Uniform vs object vs background epsilons of the same images, one panel per model.

    Grey lines join the epsilons of one image across searches (images flipped in every search;
    at most ``max_lines`` evenly spaced ones drawn); black markers are the medians over all such
    images.
    """
    models = _models(per_image_table)
    kinds = _kinds(per_image_table)
    figure = _figure(3.4 * max(len(models), 1), 3.6)
    axes = figure.subplots(1, max(len(models), 1), squeeze=False)[0]
    figure.suptitle("Paired minimal epsilons across searches (images flipped in every search)")
    for ax, model in zip(axes, models, strict=False):
        values = per_image_table.loc[
            per_image_table["model"] == model, [f"epsilon_{k}" for k in kinds]
        ].to_numpy(dtype=float)
        paired = values[np.isfinite(values).all(axis=1)] if len(kinds) > 1 else values[:0]
        if paired.size == 0:
            _empty(ax, _no_epsilon(per_image_table, model, "no image flipped in every search"))
            continue
        shown = paired[np.unique(np.linspace(0, len(paired) - 1, max_lines).astype(int))]
        x = np.arange(len(kinds))
        ax.plot(x, shown.T, color="0.55", alpha=0.35, lw=0.7, rasterized=True)
        ax.plot(x, np.median(paired, axis=0), "o-", color="black", lw=2, label="median")
        for position, kind in enumerate(kinds):
            ax.plot(position, np.median(paired[:, position]), "o", ms=8, color=SEARCH_COLOURS[kind])
        ax.set_xticks(x, kinds)
        ax.set_yscale("log")
        ax.set_ylabel("minimal epsilon")
        ax.set_title(f"{model} (n={len(paired)})", loc="left")
        ax.legend(fontsize=7, frameon=False)
    if not models:
        _empty(axes[0], "no model")
    return figure


def compactness_figure(
    per_image_table: pd.DataFrame,
    statistics_table: pd.DataFrame,
    *,
    heatmap: str,
    eps_max: float,
) -> Figure:
    """Each compactness score of ``heatmap`` against the uniform epsilon, rows = models.

    Dots: flipped images, with the least-squares line of log10 epsilon on the score. Triangles
    above ``eps_max``: censored images (not in the line; in Spearman's rho, ranked highest).
    Panel titles give rho and its bootstrap 95% CI from the statistics table.
    """
    models = _models(per_image_table)
    scores = [c for c in per_image_table.columns if c.startswith(f"{heatmap}_")]
    figure = _figure(2.3 * max(len(scores), 1), 2.3 * max(len(models), 1) + 0.5)
    axes = figure.subplots(max(len(models), 1), max(len(scores), 1), squeeze=False)
    figure.suptitle(f"{heatmap} compactness vs uniform minimal epsilon (log scale)")
    for row, model in zip(axes, models, strict=False):
        images = per_image_table[per_image_table["model"] == model]
        for ax, score in zip(row, scores, strict=True):
            rho = _rho_label(statistics_table, model=model, score=score)
            _compactness_panel(ax, images, score=score, eps_max=eps_max)
            ax.set_title(f"{model}\n{rho}", fontsize=7, loc="left")
            ax.set_xlabel(score.removeprefix(f"{heatmap}_"), fontsize=8)
    if not models or not scores:
        _empty(axes[0, 0], "no compactness scores")
    return figure


def _compactness_panel(ax, images: pd.DataFrame, *, score: str, eps_max: float) -> None:
    x = images[score].to_numpy(dtype=float)
    epsilon = images["epsilon_uniform"].to_numpy(dtype=float)
    flipped = np.isfinite(x) & np.isfinite(epsilon)
    censored = np.isfinite(x) & np.isinf(epsilon)
    ax.set_yscale("log")
    # rasterized: with thousands of images the SVG stays small (axes and text stay vector)
    ax.scatter(
        x[flipped],
        epsilon[flipped],
        s=6,
        color=SEARCH_COLOURS["uniform"],
        alpha=0.6,
        rasterized=True,
    )
    ax.scatter(
        x[censored],
        np.full(censored.sum(), eps_max * 1.5),
        s=10,
        marker="^",
        color=CENSORED_COLOUR,
        label="censored",
    )
    if flipped.sum() >= 2 and np.ptp(x[flipped]) > 0:
        slope, intercept = np.polyfit(x[flipped], np.log10(epsilon[flipped]), 1)
        line = np.linspace(x[flipped].min(), x[flipped].max(), 50)
        ax.plot(line, 10 ** (intercept + slope * line), color="black", lw=1.2)
    ax.axhline(eps_max, color="0.6", lw=0.6, ls=":")
    ax.tick_params(labelsize=7)


def _rho_label(statistics_table: pd.DataFrame, *, model: str, score: str) -> str:
    rows = statistics_table[
        (statistics_table["test"] == "compactness_spearman")
        & (statistics_table["model"] == model)
        & (statistics_table["a"] == score)
    ]
    if rows.empty or not np.isfinite(rows["estimate"].iloc[0]):
        return "rho: n/a"
    row = rows.iloc[0]
    return f"rho {row['estimate']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def accuracy_figure(per_model_table: pd.DataFrame) -> Figure:
    """Clean accuracy and epsilon summary of every model, rendered as a table."""
    header = ["model", "images", "scored", "top-1", "top-5"]
    kinds = search_order(per_model_table["search"].unique())
    header += [f"{kind} search\nmedian eps\n(flipped/censored)" for kind in kinds]
    cells = []
    for model, rows in per_model_table.groupby("model", sort=True):
        first = rows.iloc[0]
        cells.append(
            [
                model,
                f"{first['images']}",
                f"{first['scored']}",
                f"{first['top1']:.1%}",
                f"{first['top5']:.1%}",
                *(_search_cell(rows[rows["search"] == kind]) for kind in kinds),
            ]
        )
    figure = _figure(1.0 + 1.25 * len(header), 0.35 * len(cells) + 1.6)
    ax = figure.subplots()
    ax.set_axis_off()
    ax.set_title("Clean accuracy and minimal epsilon per model", loc="left")
    if not cells:
        _empty(ax, "no model")
        return figure
    table = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.5)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 2.6)  # three-line headers
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
    return figure


def _search_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "-"
    row = rows.iloc[0]
    median = "censored" if row["median_censored"] else f"{row['median']:.4g}"
    return f"{median} ({row['n_flipped']}/{row['n_censored']})"


def select_heatmaps(
    shard_arrays: Sequence[Mapping[str, np.ndarray]], image_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The heatmaps of ``image_ids`` (in that order) from a model's heatmap shards.

    Returns:
        gradcam and saliency, float32 [N, H, W] each.

    Raises:
        KeyError: an image id is in no shard.
    """
    found: dict[str, dict[str, np.ndarray]] = {}
    wanted = set(image_ids)
    for arrays in shard_arrays:
        for position, image_id in enumerate(arrays["image_id"].astype(str)):
            if image_id in wanted:
                found[image_id] = {kind: arrays[kind][position] for kind in HEATMAP_KINDS}
    missing = [image_id for image_id in image_ids if image_id not in found]
    if missing:
        raise KeyError(f"no heatmaps for images {missing}")
    return {
        kind: np.stack([found[i][kind] for i in image_ids]).astype(np.float32)
        for kind in HEATMAP_KINDS
    }


def adversarial_examples(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    weights: Mapping[str, np.ndarray | None],
    epsilons: Mapping[str, np.ndarray],
    eps_max: float,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each search's adversarial image at its minimal epsilon, and the label the model gives it.

    Args:
        model: the Keras classifier (logits out).
        images: float32 [N, H, W, 3] in [0, 1]; labels: int64 [N] true ImageNet indices.
        weights: per search kind, the search's pixel weights [N, H, W] (None: uniform).
        epsilons: per search kind, float64 [N] minimal epsilons (inf: censored, drawn at
            ``eps_max``; nan: no epsilon, the clean image is shown).

    Returns:
        kind -> (adversarial images float32 [N, H, W, 3], predicted labels int64 [N]).
    """
    from robustmap import search

    examples = {}
    for kind, kind_weights in weights.items():
        direction = search.fgsm_direction(model, images, labels, weights=kind_weights)
        eps = np.asarray(epsilons[kind], dtype=np.float64)
        eps = np.where(np.isnan(eps), 0.0, np.minimum(eps, eps_max))
        adversarial = search.perturb(images, direction, eps)
        logits = np.asarray(model(adversarial, training=False))
        examples[kind] = (adversarial, logits.argmax(axis=1).astype(np.int64))
    return examples


def model_panel(
    model,
    *,
    name: str,
    chosen: pd.DataFrame,
    images: np.ndarray,
    labels: np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    epsilons: pd.DataFrame,
    object_mask: str,
    threshold: str,
    eps_max: float,
) -> Figure:
    """The heatmap panel of one model's chosen images (see :func:`heatmap_panel`).

    Args:
        chosen: image_id, role of the images to show (from
            :func:`robustmap.aggregate.extreme_images`), in row order.
        images, labels: those images (float32 [N, H, W, 3]) and true labels (int64 [N]).
        heatmaps: gradcam and saliency [N, H, W] of those images (:func:`select_heatmaps`).
        epsilons: the model's merged epsilon table.
        object_mask, threshold: the searches' object-weight settings, so the mask and the
            adversarial images are the ones the searches used.
    """
    from robustmap import classes, measure

    ids = chosen["image_id"].astype(str).tolist()
    kinds = search_order(epsilons["search"].unique())
    by_kind = {
        kind: epsilons[epsilons["search"] == kind]
        .set_index("image_id")["epsilon"]
        .reindex(ids)
        .to_numpy(dtype=np.float64)
        for kind in kinds
    }
    cam = heatmaps["gradcam"]
    weights = measure.search_weights_by_kind(
        kinds, cam, object_mask=object_mask, threshold=threshold
    )
    adversarial = adversarial_examples(
        model, images, labels, weights=weights, epsilons=by_kind, eps_max=eps_max
    )
    titles = [
        f"{role}\n{classes.class_name(int(label))}"
        for role, label in zip(chosen["role"], labels, strict=True)
    ]
    return heatmap_panel(
        images,
        saliency=heatmaps["saliency"],
        gradcam=cam,
        object_mask=measure.search_weights(
            "object", cam, object_mask=object_mask, threshold=threshold
        ),
        adversarial=adversarial,
        epsilons=by_kind,
        row_titles=titles,
        class_name=classes.class_name,
        eps_max=eps_max,
        title=f"{name}: most sensitive and most robust images (uniform search)",
    )


def heatmap_panel(
    images: np.ndarray,
    *,
    saliency: np.ndarray,
    gradcam: np.ndarray,
    object_mask: np.ndarray,
    adversarial: Mapping[str, tuple[np.ndarray, np.ndarray]],
    epsilons: Mapping[str, np.ndarray],
    row_titles: Sequence[str],
    class_name: Callable[[int], str],
    eps_max: float,
    title: str = "",
) -> Figure:
    """Rows = images; columns = image | saliency | Grad-CAM | object mask | adversarial per search.

    Args:
        images: float32 [N, H, W, 3]; saliency, gradcam: raw maps [N, H, W] (normalised here
            for display, per map, to its 99th percentile); object_mask: weights [N, H, W] in [0, 1].
        adversarial: kind -> (images [N, H, W, 3], predicted labels [N]), from
            :func:`adversarial_examples`.
        epsilons: kind -> float64 [N] minimal epsilons (inf censored, nan none).
        row_titles: one label per image (e.g. "most sensitive: tabby").
        class_name: ImageNet index -> readable name, for the adversarial predictions.
    """
    from robustmap.heatmaps import normalise_for_display

    kinds = search_order(list(adversarial))
    columns = ["image", "saliency", "Grad-CAM", "object mask", *(f"{k} search" for k in kinds)]
    count = len(images)
    figure = _figure(1.7 * len(columns), 1.9 * max(count, 1) + 0.5)
    axes = figure.subplots(max(count, 1), len(columns), squeeze=False)
    if title:
        figure.suptitle(title)
    shown = {
        "saliency": normalise_for_display(saliency),
        "Grad-CAM": normalise_for_display(gradcam),
    }
    for row in range(count):
        cells = [
            (images[row], None, None),
            (shown["saliency"][row], "inferno", (0, 1)),
            (shown["Grad-CAM"][row], "jet", (0, 1)),
            (object_mask[row], "gray", (0, 1)),
        ]
        for ax, (picture, cmap, limits) in zip(axes[row], cells, strict=False):
            vmin, vmax = limits or (None, None)
            ax.imshow(picture, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        axes[row, 0].set_ylabel(row_titles[row], fontsize=7)
        for ax, kind in zip(axes[row, 4:], kinds, strict=True):
            pictures, predicted = adversarial[kind]
            ax.imshow(pictures[row], interpolation="nearest")
            ax.set_xlabel(
                _adversarial_caption(epsilons[kind][row], predicted[row], class_name, eps_max),
                fontsize=6,
            )
    for ax, name in zip(axes[0], columns, strict=True):
        ax.set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def _adversarial_caption(
    epsilon: float, predicted: int, class_name: Callable[[int], str], eps_max: float
) -> str:
    if np.isnan(epsilon):
        return "no epsilon"
    if np.isinf(epsilon):
        return f"not flipped up to eps={eps_max:g}"
    return f"eps={epsilon:.4g}\n-> {class_name(int(predicted))}"


def html_table(frame: pd.DataFrame, *, title: str, digits: int = 4) -> str:
    """A standalone HTML page showing ``frame`` (for the report; floats to ``digits`` figures)."""
    body = frame.to_html(
        index=False,
        na_rep="",
        float_format=lambda value: f"{value:.{digits}g}",
        border=0,
        classes="robustmap",
    )
    style = (
        "body{font-family:sans-serif;font-size:13px;margin:12px}"
        "table.robustmap{border-collapse:collapse}"
        "table.robustmap th,table.robustmap td{padding:3px 8px;border-bottom:1px solid #ddd;"
        "text-align:right;white-space:nowrap}"
        "table.robustmap th{background:#f0f0f0;position:sticky;top:0}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body><h3>{title}</h3>\n{body}\n</body></html>\n"
    )
