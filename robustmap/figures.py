"""The study's figures: matplotlib Figure objects (no pyplot state), saved as stable PNG and SVG.

Every figure is built from the tables of :mod:`robustmap.aggregate` and
:mod:`robustmap.statistics`. Epsilons follow their conventions: ``inf`` = censored (no flip up
to ``eps_max``), drawn at the top of an axis with a distinct marker and never averaged; ``nan`` =
no epsilon. Saving fixes the SVG hash salt and drops dates, so the same tables give the same bytes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustmap import tables
from robustmap.aggregate import MIN_CLASS_IMAGES
from robustmap.figure_registry import figure_files
from robustmap.kinds import HEATMAP_KINDS, SEARCH_COLOURS, SEARCH_KINDS, search_order
from robustmap.robustness import CUSTOMARY_STEPS
from robustmap.schema import (
    COMPACTNESS_SCORES,
    FGSM,
    HEATMAP_LOCALISATION_SCORES,
    PGD,
    Search,
    heatmap_column,
    localisation_column,
    search_column,
    searched,
    searches,
)
from robustmap.statistics import SIGNIFICANCE, UNIFORM_EPSILON

CENSORED_COLOUR = "#CC79A7"
ATTACK_STYLES = {FGSM: "-", PGD: "--"}
"""Line style of each attack's curves: a kind keeps its colour, the attack changes the dash."""
CENSORED_AT = 1.5
"""Censored epsilons are drawn at this multiple of ``eps_max``, beyond the dotted eps_max line."""
HEATMAP_COLOURS = {"gradcam": "#D55E00", "saliency": "#0072B2"}
FORMATS = ("png", "svg")
DPI = 120
LAYOUT_ONCE = True
"""Whether :func:`write_figures` lays each figure out once for all formats (:func:`freeze_layout`)
instead of once per format; a switch for bench/figures.py's side-by-side timing."""
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


def freeze_layout(figure: Figure) -> None:
    """Lay ``figure`` out now, with the PNG renderer, and keep that layout for every format.

    Constrained layout took about half of a figure's drawing time, and each ``savefig`` would
    run it again; frozen, both formats also share the same positions.
    """
    with matplotlib.rc_context(_STABLE_RC):
        figure.draw_without_rendering()
    figure.set_layout_engine("none")


def new_figure(width: float, height: float) -> Figure:
    """A blank figure of ``width`` x ``height`` inches in the report's stable style."""
    with matplotlib.rc_context(_STABLE_RC):
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()


def message_figure(title: str, message: str) -> Figure:
    """A figure that only says why there is nothing to draw (e.g. a model with no correct image)."""
    figure = new_figure(6, 2)
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


FigureBuilder = Callable[[], Figure]
"""A figure not yet drawn: a picklable partial of one of this module's ``*_figure`` functions."""


def figure_builders(
    per_image_table: pd.DataFrame,
    per_class_table: pd.DataFrame,
    per_model_table: pd.DataFrame,
    statistics_table: pd.DataFrame,
    robustness_table: pd.DataFrame,
    localisation_table: pd.DataFrame,
    *,
    searches: Sequence[str],
    eps_max: float,
    min_class_images: int = MIN_CLASS_IMAGES,
    pgd_searches: Sequence[str] = (),
) -> dict[str, FigureBuilder]:
    """Every summary figure of the report, keyed by file stem, in the order of
    :func:`robustmap.figure_registry.figure_files`, as builders: :func:`write_figures` draws them,
    side by side in worker processes if asked. ``pgd_searches``: the kinds PGD searched too."""
    per_search = {
        "class_epsilon": partial(class_epsilon_figure, per_class_table),
        "class_bulk": partial(class_epsilon_figure, per_class_table, central=BULK_SHARE),
        "class_extremes": partial(
            class_extremes_figure,
            per_class_table,
            eps_max=eps_max,
            min_class_images=min_class_images,
        ),
    }
    summaries = {
        "epsilon_ecdf": partial(epsilon_ecdf_figure, per_image_table, eps_max=eps_max),
        "paired_searches": partial(paired_searches_figure, per_image_table),
        **{
            f"compactness_{heatmap}": partial(
                compactness_figure,
                per_image_table,
                statistics_table,
                heatmap=heatmap,
                eps_max=eps_max,
            )
            for heatmap in HEATMAP_KINDS
        },
        "accuracy": partial(accuracy_figure, per_model_table),
        "robustness": partial(robustness_figure, robustness_table),
        "localisation": partial(localisation_figure, localisation_table),
        "localisation_epsilon": partial(
            localisation_epsilon_figure, per_image_table, statistics_table, eps_max=eps_max
        ),
        "attack_scatter": partial(
            attack_scatter_figure, per_image_table, kinds=pgd_searches, eps_max=eps_max
        ),
    }
    return {
        figure.name: (
            partial(per_search[figure.kind.stem], search=figure.search)
            if figure.kind.per_search
            else summaries[figure.kind.stem]
        )
        for figure in figure_files(searches, pgd_searches)
    }


def write_figures(
    builders: Mapping[str, FigureBuilder],
    paths: Mapping[str, Sequence[str | Path]],
    *,
    workers: int = 1,
) -> dict[str, dict[str, dict[str, str]]]:
    """Draw each figure of ``builders`` and save it to each of its ``paths`` (one per format);
    return ``{name: {format: {"path", "sha256"}}}`` in the builders' order.

    The figures are independent, so ``workers`` > 1 draws them in that many processes (the
    figures job was the longest on a default run's critical path); a figure's bytes do not
    depend on the process that drew it.
    """
    builds = list(builders.values())
    targets = [tuple(paths[name]) for name in builders]
    if workers <= 1 or len(builds) <= 1:
        written = list(map(_draw_and_save, builds, targets))
    else:
        # fork: workers start from this process (tables loaded, matplotlib imported) and only
        # draw. spawn and forkserver would re-run the caller's __main__ in every worker, and a
        # Snakemake script is module-level code without a __main__ guard.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(builds)), mp_context=context) as pool:
            written = list(pool.map(_draw_and_save, builds, targets))
    return dict(zip(builders, written, strict=True))


def _draw_and_save(
    build: FigureBuilder, targets: Sequence[str | Path]
) -> dict[str, dict[str, str]]:
    """Draw one figure and save it to every target; path and SHA-256 per format."""
    figure = build()
    if LAYOUT_ONCE:
        freeze_layout(figure)
    saved = {}
    for target in targets:
        path = save_figure(figure, target)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        saved[path.suffix.lstrip(".")] = {"path": str(path), "sha256": digest}
    return saved


def class_epsilon_figure(
    per_class_table: pd.DataFrame, *, search: str, central: float | None = None
) -> Figure:
    """Mean epsilon (flipped images) of every class, sorted, one panel per model.

    Bars: mean over flipped images (hatched and pale: too few images to be ranked); dots: the
    censoring-aware median; a triangle at the top marks a class whose median is censored.
    ``central`` (e.g. 0.8) keeps only the central share of the sorted classes, on a linear axis,
    to show the bulk; otherwise all classes, log axis.
    """
    rows = per_class_table[(per_class_table["search"] == search) & (per_class_table["n"] > 0)]
    models = _models(per_class_table)
    figure = new_figure(10, 2.6 * max(len(models), 1) + 0.4)
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
    ranked = classes["ranked"].to_numpy(dtype=bool)
    ax.bar(x[ranked], np.nan_to_num(mean[ranked]), color=colour, alpha=0.75, label="mean (ranked)")
    if (~ranked).any():
        ax.bar(
            x[~ranked],
            np.nan_to_num(mean[~ranked]),
            color=colour,
            alpha=0.3,
            hatch="///",
            label="mean (small n, not ranked)",
        )
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
    per_class_table: pd.DataFrame,
    *,
    search: str,
    eps_max: float,
    count: int = TOP_CLASSES,
    min_class_images: int = MIN_CLASS_IMAGES,
) -> Figure:
    """Top-``count`` most sensitive and most robust *ranked* classes per model.

    Only classes with at least ``min_class_images`` searched images are ranked (the per-class
    table's ``ranked``); each panel says how many qualified and how many were left out. Bars:
    censoring-aware median; whiskers: its bootstrap 95% CI; thin grey line: q25 to q75. Values
    beyond ``eps_max`` (censored) are drawn at ``eps_max`` and the bar is marked as censored.
    """
    rows = per_class_table[per_class_table["search"] == search]
    models = _models(per_class_table)
    height = 0.26 * count + 1.1
    figure = new_figure(11, height * max(len(models), 1) + 0.5)
    axes = figure.subplots(max(len(models), 1), 2, squeeze=False)
    figure.suptitle(
        f"Most sensitive and most robust classes, {search} search "
        f"(median with bootstrap 95% CI; ranked: n >= {min_class_images})"
    )
    for (left, right), model in zip(axes, models, strict=False):
        classes = rows[(rows["model"] == model) & (rows["n"] > 0)]
        if classes.empty:
            _empty(left, _no_epsilon(per_class_table, model, "no class with an epsilon"))
            right.set_axis_off()
            continue
        ranked = classes[classes["sensitivity_rank"].notna()].sort_values("sensitivity_rank")
        counts = f"{len(ranked)} of {len(classes)} classes ranked, {len(classes) - len(ranked)} "
        counts += f"left out (n < {min_class_images})"
        _extreme_bars(left, ranked.head(count), eps_max=eps_max, title=f"{model}: most sensitive")
        _extreme_bars(
            right, ranked.iloc[::-1].head(count), eps_max=eps_max, title=f"{model}: most robust"
        )
        left.text(0.0, -0.08, counts, transform=left.transAxes, fontsize=7, va="top")
    if not models:
        _empty(axes[0, 0], "no model")
        axes[0, 1].set_axis_off()
    return figure


def _extreme_bars(ax, classes: pd.DataFrame, *, eps_max: float, title: str) -> None:
    if classes.empty:
        _empty(ax, "no ranked class")
        ax.set_title(title, loc="left", fontsize=9)
        return
    y = np.arange(len(classes))[::-1]
    capped = {
        q: np.minimum(classes[q].to_numpy(dtype=float), eps_max)
        for q in ("q25", "median", "q75", "median_ci_low", "median_ci_high")
    }
    censored = classes["median_censored"].fillna(False).to_numpy(dtype=bool)
    colours = [
        CENSORED_COLOUR if c else SEARCH_COLOURS.get(s, "0.5")
        for c, s in zip(censored, classes["search"], strict=True)
    ]
    ax.barh(y, capped["median"], color=colours, alpha=0.8)
    ax.hlines(y + 0.3, capped["q25"], capped["q75"], color="0.55", lw=1.0)
    ax.errorbar(
        capped["median"],
        y,
        xerr=[
            capped["median"] - capped["median_ci_low"],
            capped["median_ci_high"] - capped["median"],
        ],
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
    ax.set_xlabel("minimal epsilon (median, 95% CI; grey: q25-q75)")
    ax.set_title(title, loc="left", fontsize=9)


def epsilon_ecdf_figure(per_image_table: pd.DataFrame, *, eps_max: float) -> Figure:
    """Empirical CDF of the minimal epsilon per model and search, log x axis.

    The denominator counts censored images, so a curve ends below 1 by the censored share. A
    kind's PGD curve has its FGSM curve's colour, dashed (:data:`ATTACK_STYLES`).
    """
    models = _models(per_image_table)
    columns = max(min(len(models), 3), 1)
    rows_n = int(np.ceil(max(len(models), 1) / columns))
    figure = new_figure(4.2 * columns, 3.2 * rows_n + 0.4)
    axes = figure.subplots(rows_n, columns, squeeze=False).ravel()
    figure.suptitle("Distribution of the minimal epsilon (ECDF; censored images never reach it)")
    found = searched(per_image_table, SEARCH_KINDS)
    for ax, model in zip(axes, models, strict=False):
        images = per_image_table[per_image_table["model"] == model]
        if not images["correct"].fillna(False).astype(bool).any():
            _empty(ax, f"{model}: {NO_CORRECT}")
            continue
        for search in found:
            epsilon = images[search_column("epsilon", search)].dropna().to_numpy(dtype=float)
            if epsilon.size == 0:
                continue
            flipped = np.sort(epsilon[np.isfinite(epsilon)])
            share = np.arange(1, flipped.size + 1) / epsilon.size
            censored = 1 - flipped.size / epsilon.size
            ax.step(
                np.concatenate([flipped, [eps_max]]),
                np.concatenate([share, [share[-1] if share.size else 0.0]]),
                where="post",
                color=SEARCH_COLOURS.get(search.kind, "0.5"),
                ls=ATTACK_STYLES[search.attack],
                label=f"{search.name} (n={epsilon.size}, censored {censored:.0%})",
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


def paired_searches_figure(per_image_table: pd.DataFrame, *, max_lines: int = 300) -> Figure:
    """The minimal FGSM epsilons of the same images in every search kind, one panel per model.

    Grey lines join the epsilons of one image across searches (images flipped in every search;
    at most ``max_lines`` evenly spaced ones drawn); black markers are the medians over all such
    images. FGSM only: the kinds are compared under one attack, the attacks in
    :func:`attack_scatter_figure`.
    """
    models = _models(per_image_table)
    # a search whose every image is undefined (no human box anywhere) has nothing to pair
    found = [
        search
        for search in searched(per_image_table, SEARCH_KINDS, attacks=(FGSM,))
        if per_image_table[search_column("epsilon", search)].notna().any()
    ]
    figure = new_figure(3.4 * max(len(models), 1), 3.6)
    axes = figure.subplots(1, max(len(models), 1), squeeze=False)[0]
    figure.suptitle("Paired minimal epsilons across searches (images flipped in every search)")
    for ax, model in zip(axes, models, strict=False):
        values = per_image_table.loc[
            per_image_table["model"] == model, [search_column("epsilon", s) for s in found]
        ].to_numpy(dtype=float)
        paired = values[np.isfinite(values).all(axis=1)] if len(found) > 1 else values[:0]
        if paired.size == 0:
            _empty(ax, _no_epsilon(per_image_table, model, "no image flipped in every search"))
            continue
        shown = paired[np.unique(np.linspace(0, len(paired) - 1, max_lines).astype(int))]
        x = np.arange(len(found))
        ax.plot(x, shown.T, color="0.55", alpha=0.35, lw=0.7, rasterized=True)
        ax.plot(x, np.median(paired, axis=0), "o-", color="black", lw=2, label="median")
        for position, search in enumerate(found):
            colour = SEARCH_COLOURS[search.kind]
            ax.plot(position, np.median(paired[:, position]), "o", ms=8, color=colour)
        ax.set_xticks(x, [search.name for search in found])
        ax.set_yscale("log")
        ax.set_ylabel("minimal epsilon")
        ax.set_title(f"{model} (n={len(paired)})", loc="left")
        ax.legend(fontsize=7, frameon=False)
    if not models:
        _empty(axes[0], "no model")
    return figure


def attack_scatter_figure(
    per_image_table: pd.DataFrame, *, kinds: Sequence[str], eps_max: float
) -> Figure:
    """Each image's minimal FGSM epsilon (x) against its minimal PGD epsilon (y), log-log, one
    panel per model, coloured by search kind.

    Both are flipping epsilons found, so both are upper bounds on the image's true minimal
    weighted L-inf distance; PGD's is the tighter. Black line: y = x; below it FGSM overstates
    the image's robustness. Censored epsilons (no flip up to ``eps_max``) are drawn at
    :data:`CENSORED_AT` x ``eps_max``, beyond the dotted ``eps_max`` lines, as triangles and
    counted in the panel's title. Images with no epsilon under either attack are left out.
    """
    models = _models(per_image_table)
    columns = max(min(len(models), 3), 1)
    rows_n = int(np.ceil(max(len(models), 1) / columns))
    figure = new_figure(3.8 * columns, 3.8 * rows_n + 0.4)
    axes = figure.subplots(rows_n, columns, squeeze=False).ravel()
    figure.suptitle("Minimal epsilon per image, FGSM against PGD (below y = x: FGSM overstates)")
    for ax, model in zip(axes, models, strict=False):
        pairs = _attack_pairs(per_image_table[per_image_table["model"] == model], kinds)
        if not pairs:
            _empty(ax, _no_epsilon(per_image_table, model, "no PGD epsilon"))
            continue
        _attack_panel(ax, pairs, eps_max=eps_max)
        x, y = (np.concatenate(values) for values in zip(*pairs.values(), strict=True))
        ax.set_title(
            f"{model} (n={x.size}, below y = x: {int((y < x).sum())})\n"
            f"censored: FGSM {int(np.isinf(x).sum())}, PGD {int(np.isinf(y).sum())}",
            loc="left",
            fontsize=8,
        )
    for ax in axes[len(models) :]:
        ax.set_axis_off()
    if not models:
        _empty(axes[0], "no model")
    return figure


def _attack_pairs(
    images: pd.DataFrame, kinds: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per kind, the FGSM and PGD epsilons of the images with both (kinds without any: left out)."""
    pairs = {}
    for kind in search_order(kinds):
        names = [search_column("epsilon", Search(attack, kind)) for attack in (FGSM, PGD)]
        if not set(names) <= set(images.columns):
            continue
        values = images[names].to_numpy(dtype=float)
        both = values[~np.isnan(values).any(axis=1)]
        if len(both):
            pairs[kind] = (both[:, 0], both[:, 1])
    return pairs


def _attack_panel(
    ax, pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], *, eps_max: float
) -> None:
    """The points of :func:`attack_scatter_figure`, its diagonal and its eps_max lines."""
    top = eps_max * CENSORED_AT
    for kind, (x, y) in pairs.items():
        flipped = np.isfinite(x) & np.isfinite(y)
        ax.scatter(
            x[flipped],
            y[flipped],
            s=8,
            color=SEARCH_COLOURS.get(kind, "0.5"),
            alpha=0.6,
            label=f"{kind} (n={x.size})",
            rasterized=True,
        )
        ax.scatter(
            np.where(flipped, np.nan, np.minimum(x, top)),
            np.where(flipped, np.nan, np.minimum(y, top)),
            s=18,
            marker="^",
            facecolor=SEARCH_COLOURS.get(kind, "0.5"),
            edgecolor=CENSORED_COLOUR,
            linewidths=1.2,
        )
    values = np.concatenate([np.concatenate(pair) for pair in pairs.values()])
    positive = values[np.isfinite(values) & (values > 0)]
    low = (positive.min() if positive.size else eps_max * 1e-3) / CENSORED_AT
    high = top * CENSORED_AT
    ax.plot([low, high], [low, high], color="black", lw=0.9, label="y = x")
    ax.axvline(eps_max, color="0.6", lw=0.6, ls=":")
    ax.axhline(eps_max, color="0.6", lw=0.6, ls=":")
    ax.plot([], [], "^", color=CENSORED_COLOUR, label=f"censored (at {CENSORED_AT:g} eps_max)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("FGSM minimal epsilon")
    ax.set_ylabel("PGD minimal epsilon")
    ax.legend(fontsize=7, loc="upper left", frameon=False)


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
    Panel titles give Spearman's rho and the partial rho given the clean margin, each with its
    bootstrap 95% CI; ``*`` marks q_bh < 0.05 within the model's family of that test.
    """
    return _scores_vs_epsilon(
        per_image_table,
        statistics_table,
        scores={heatmap_column(heatmap, score): score for score in COMPACTNESS_SCORES},
        test="compactness",
        title=f"{heatmap} compactness vs uniform minimal epsilon (log scale)",
        eps_max=eps_max,
    )


def localisation_epsilon_figure(
    per_image_table: pd.DataFrame, statistics_table: pd.DataFrame, *, eps_max: float
) -> Figure:
    """Each localisation score (both heatmaps) against the uniform epsilon, rows = models.

    Drawn and annotated like :func:`compactness_figure`, from the ``localisation_spearman``
    and ``localisation_partial_spearman`` rows.
    """
    scores = {
        localisation_column(heatmap, score): f"{heatmap} {score}"
        for heatmap in HEATMAP_KINDS
        for score in HEATMAP_LOCALISATION_SCORES
    }
    return _scores_vs_epsilon(
        per_image_table,
        statistics_table,
        scores=scores,
        test="localisation",
        title="Localisation against the human box vs uniform minimal epsilon (log scale)",
        eps_max=eps_max,
    )


def _scores_vs_epsilon(
    per_image_table: pd.DataFrame,
    statistics_table: pd.DataFrame,
    *,
    scores: Mapping[str, str],
    test: str,
    title: str,
    eps_max: float,
) -> Figure:
    """``scores``: per-image column -> axis label; the columns the table lacks are left out."""
    scores = {column: label for column, label in scores.items() if column in per_image_table}
    models = _models(per_image_table)
    figure = new_figure(2.5 * max(len(scores), 1), 2.5 * max(len(models), 1) + 0.5)
    # One epsilon axis for the grid: panels compare at a glance and only the first column
    # labels its ticks (each tick label is laid out and drawn, per panel and per format).
    rows, columns = max(len(models), 1), max(len(scores), 1)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    figure.suptitle(f"{title}; * q_BH < {SIGNIFICANCE:g}; partial: given the clean logit margin")
    if not models or not scores:
        _empty(axes[0, 0], "no scores")
        return figure
    for row, model in zip(axes, models, strict=True):
        images = per_image_table[per_image_table["model"] == model]
        for ax, score in zip(row, scores, strict=True):
            rho = _rho_label(statistics_table, model=model, score=score, test=test)
            _compactness_panel(ax, images, score=score, eps_max=eps_max)
            ax.set_title(f"{model}\n{rho}", fontsize=7, loc="left")
            ax.set_xlabel(scores[score], fontsize=8)
    return figure


def _compactness_panel(ax, images: pd.DataFrame, *, score: str, eps_max: float) -> None:
    x = images[score].to_numpy(dtype=float)
    epsilon = images[UNIFORM_EPSILON].to_numpy(dtype=float)
    flipped = np.isfinite(x) & np.isfinite(epsilon)
    censored = np.isfinite(x) & np.isinf(epsilon)
    ax.set_yscale("log")
    # Decades suffice at this panel size; log minor ticks doubled the figure's drawing time.
    ax.minorticks_off()
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


def _rho_label(statistics_table: pd.DataFrame, *, model: str, score: str, test: str) -> str:
    """Raw and margin-controlled rho with CIs; ``*`` marks q_bh < :data:`SIGNIFICANCE`."""
    parts = []
    for suffix, name in (("spearman", "rho"), ("partial_spearman", "partial")):
        rows = statistics_table[
            (statistics_table["test"] == f"{test}_{suffix}")
            & (statistics_table["model"] == model)
            & (statistics_table["a"] == score)
        ]
        if rows.empty or not np.isfinite(rows["estimate"].iloc[0]):
            parts.append(f"{name}: n/a")
            continue
        row = rows.iloc[0]
        mark = "*" if row["q_bh"] < SIGNIFICANCE else ""
        parts.append(
            f"{name} {row['estimate']:+.2f}{mark} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        )
    return "\n".join(parts)


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
    figure = new_figure(1.0 + 1.25 * len(header), 0.35 * len(cells) + 1.6)
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


def robustness_figure(robustness_table: pd.DataFrame) -> Figure:
    """Robustness curves: share of scoreable images surviving each step, one panel per search kind.

    Lines: models, with their bootstrap 95% bands; a model's PGD curve has its FGSM curve's
    colour, dashed (:data:`ATTACK_STYLES`). Dotted verticals: the customary steps 1/255 ..
    8/255. A curve starts at clean top-1 accuracy and falls as steps grow.
    """
    by_name = {search.name: search for search in searches(SEARCH_KINDS)}
    # a name outside the vocabulary (a hand-made table) is an FGSM search of that kind
    found = [by_name.get(name, Search(FGSM, name)) for name in robustness_table["search"].unique()]
    kinds = search_order({search.kind for search in found})
    attacks = [attack for attack in ATTACK_STYLES if any(s.attack == attack for s in found)]
    xlabel = "FGSM step (epsilon)" if attacks == [FGSM] else "epsilon (solid: FGSM, dashed: PGD)"
    figure = new_figure(3.8 * max(len(kinds), 1), 3.4)
    axes = figure.subplots(1, max(len(kinds), 1), squeeze=False)[0]
    figure.suptitle("Robustness curves: share of images correct and not flipped by any step <= x")
    for ax, kind in zip(axes, kinds, strict=False):
        for number, model in enumerate(_models(robustness_table)):
            for attack in attacks:
                _robustness_curve(ax, robustness_table, Search(attack, kind), model, number)
        for step in CUSTOMARY_STEPS.values():
            ax.axvline(step, color="0.6", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share surviving")
        ax.set_title(f"{kind} search", loc="left")
        ax.legend(fontsize=7, frameon=False)
    if not kinds:
        _empty(axes[0], "no search")
    return figure


def _robustness_curve(
    ax, robustness_table: pd.DataFrame, search: Search, model: str, number: int
) -> None:
    """One model's curve of one search, coloured by the model's ``number``, dashed for PGD."""
    rows = robustness_table[
        (robustness_table["search"] == search.name) & (robustness_table["model"] == model)
    ]
    if search.attack != FGSM and rows.empty:
        return  # a kind PGD did not search
    colour = matplotlib.colormaps["tab10"](number % 10)
    label = model if search.attack == FGSM else f"{model}, {search.attack.upper()} (dashed)"
    style = ATTACK_STYLES[search.attack]
    ax.plot(rows["epsilon"], rows["share"], color=colour, lw=1.4, ls=style, label=label)
    alpha = 0.2 if search.attack == FGSM else 0.1
    ax.fill_between(rows["epsilon"], rows["ci_low"], rows["ci_high"], color=colour, alpha=alpha)


def localisation_figure(localisation_table: pd.DataFrame) -> Figure:
    """Pointing-game accuracy and energy in the human box per model and heatmap, vs chance.

    Bars: the ``all`` rows of the localisation table with their bootstrap 95% CIs; black
    ticks: chance (mean box fraction of the same images). A bar above its tick: the heatmap
    points into the human's box more often than a random pixel would.
    """
    rows = localisation_table[localisation_table["class_name"] == "all"]
    models = _models(rows) if len(rows) else []
    figure = new_figure(4.5 + 1.2 * len(models), 3.4)
    axes = figure.subplots(1, 2, squeeze=False)[0]
    figure.suptitle("Does the model look where a human would? (correct images with a box)")
    panels = (
        ("pointing_accuracy", "pointing_ci", "pointing-game accuracy"),
        ("energy_in_box", "energy_ci", "mean share of heat in the box"),
    )
    for ax, (column, ci, ylabel) in zip(axes, panels, strict=True):
        if rows.empty:
            _empty(ax, "no correct image with a human box")
            continue
        for offset, heatmap in zip((-0.2, 0.2), HEATMAP_KINDS, strict=True):
            part = rows[rows["heatmap"] == heatmap].set_index("model").reindex(models)
            x = np.arange(len(models)) + offset
            value = part[column].to_numpy(dtype=float)
            error = [value - part[f"{ci}_low"], part[f"{ci}_high"] - value]
            colour = HEATMAP_COLOURS[heatmap]
            ax.bar(x, value, width=0.38, color=colour, alpha=0.8, label=heatmap)
            ax.errorbar(x, value, yerr=error, fmt="none", ecolor="black", elinewidth=0.8)
            ax.hlines(part["chance"], x - 0.19, x + 0.19, color="black", lw=2)
        ax.set_xticks(np.arange(len(models)), models, rotation=20, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, frameon=False, title="black tick: chance", title_fontsize=7)
    return figure


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
