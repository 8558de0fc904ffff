"""The model leaderboard: one row per model, every value read from the study's tables.

Each value comes from the table that already holds it: images scored and clean top-1 from the
per-model table, the robust shares and their CIs from the robustness table, Grad-CAM pointing
accuracy and chance from the localisation summary, q-values from the statistics table. Two CIs
exist in no table, that of clean top-1 and that of a model's median epsilon; they are drawn here
from the per-image table with the functions the other tables use
(:func:`robustmap.bootstrap.mean_ci` as for the robust shares,
:func:`robustmap.censored.median_ci` as for the per-class medians).

Attacks: every attack has a headline search (the rows of the per-model, robustness and statistics
tables that hold it) and a column prefix. They follow :data:`robustmap.schema.ATTACKS` (FGSM, then
PGD), each with the uniform search as its headline; an attack without rows in the per-model table
(PGD turned off) gets no columns. The rows are sorted by the median epsilon of the strongest attack
present (the last of :data:`ATTACKS`), and each row says whether its model differs from the next
one there (the ``model_pair`` q_bh of the statistics table). Once two attacks exist, FGSM's
overstatement of the strongest attack's epsilon is the ``attack_pair`` row of the statistics table
(median ratio eps_fgsm / eps_pgd, its CI and q_bh).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustmap import schema
from robustmap.aggregate import long_epsilons
from robustmap.bootstrap import mean_ci, seeded_generator
from robustmap.censored import median_ci
from robustmap.robustness import CUSTOMARY_STEPS
from robustmap.schema import Search
from robustmap.statistics import SIGNIFICANCE


@dataclass(frozen=True)
class Attack:
    """An attack as the tables hold it: ``search`` names its headline rows, ``name`` its columns."""

    name: str
    label: str
    search: str


HEADLINE_KIND = "uniform"
"""Each attack's headline search kind: the perturbation spread over the whole image."""
ATTACKS: tuple[Attack, ...] = tuple(
    Attack(name, name.upper(), Search(name, HEADLINE_KIND).name) for name in schema.ATTACKS
)
"""The attacks of :data:`robustmap.schema.ATTACKS`, weakest first: the last attack present in
the tables is the strongest."""

POINTING_HEATMAP = "gradcam"
INPUT_TABLES = ("per_model", "robustness", "statistics", "localisation", "per_image")
"""The study tables :func:`leaderboard` reads, in its argument order."""


def step_column(step: str) -> str:
    """``1/255`` -> ``robust_1_255``: the column stem of a customary step."""
    return "robust_" + step.replace("/", "_")


def attacks_present(per_model: pd.DataFrame, attacks: Sequence[Attack] = ATTACKS) -> list[Attack]:
    """The attacks whose headline search has rows in the per-model table, weakest first."""
    searches = set(per_model["search"])
    return [attack for attack in attacks if attack.search in searches]


def leaderboard(
    per_model: pd.DataFrame,
    robustness: pd.DataFrame,
    statistics: pd.DataFrame,
    localisation: pd.DataFrame,
    per_image: pd.DataFrame,
    *,
    bootstrap: int,
    seed: int,
    attacks: Sequence[Attack] = ATTACKS,
) -> pd.DataFrame:
    """One row per model, sorted by the strongest attack's median epsilon, most robust first.

    Columns: ``rank``, ``model``, ``scored`` (images with a clean prediction), ``top1`` with
    ``top1_ci_low``/``top1_ci_high``; per attack ``<attack>_n`` (images searched),
    ``<attack>_median`` (inf: censored) with its CI and ``<attack>_median_censored``, and
    ``<attack>_robust_<k>_255`` with its CI for each customary step (null above eps_max);
    ``<weaker>_over_<strongest>`` (median ratio, CI, q) once two attacks exist;
    ``pointing_accuracy`` of Grad-CAM with its CI, ``pointing_chance`` and ``pointing_q``
    (``pointing_vs_chance``); ``q_vs_next`` (the ``model_pair`` q_bh against the next row's
    model on the strongest attack; null on the last row or where no test exists) and
    ``differs_from_next`` (q_vs_next < 0.05).

    A model without correct images keeps its row: n 0, null medians, robust shares 0.
    """
    present = attacks_present(per_model, attacks)
    rows = []
    for model, images in per_image.groupby("model", sort=True):
        row = {"model": model} | _clean(per_model, images, model, bootstrap=bootstrap, seed=seed)
        for attack in present:
            row |= _attack_columns(attack, per_model, robustness, images, bootstrap, seed)
        row |= _overstatement(present, statistics, model)
        row |= _pointing(localisation, statistics, model)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = _sorted(table, present[-1].name if present else None)
    strongest = present[-1].search if present else None
    table["q_vs_next"] = _q_vs_next(table["model"].tolist(), statistics, strongest)
    table["differs_from_next"] = table["q_vs_next"].lt(SIGNIFICANCE).astype("boolean")
    table.loc[table["q_vs_next"].isna(), "differs_from_next"] = pd.NA
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def _clean(
    per_model: pd.DataFrame, images: pd.DataFrame, model: str, *, bootstrap: int, seed: int
) -> dict:
    """Scored images and clean top-1 (per-model table), its CI over the scored images."""
    first = per_model[per_model["model"] == model].iloc[0]
    correct = images.loc[images["correct"].notna(), "correct"].astype(bool).to_numpy()
    low = high = np.nan
    if len(correct) >= 2:
        rng = seeded_generator(seed, (model, "leaderboard", "top1"))
        (low,), (high,) = mean_ci(correct[:, None].astype(np.float64), bootstrap=bootstrap, rng=rng)
    return {
        "scored": int(first["scored"]),
        "top1": float(first["top1"]),
        "top1_ci_low": float(low),
        "top1_ci_high": float(high),
    }


def _attack_columns(
    attack: Attack,
    per_model: pd.DataFrame,
    robustness: pd.DataFrame,
    images: pd.DataFrame,
    bootstrap: int,
    seed: int,
) -> dict:
    model = images["model"].iloc[0]
    summary = per_model[(per_model["model"] == model) & (per_model["search"] == attack.search)]
    epsilons = long_epsilons(images)
    values = epsilons.loc[epsilons["search"] == attack.search, "epsilon"].to_numpy()
    rng = seeded_generator(seed, (model, "leaderboard", "median", attack.search))
    low, high = median_ci(values, bootstrap=bootstrap, rng=rng)
    first = summary.iloc[0]
    row = {
        f"{attack.name}_n": int(first["n"]),
        f"{attack.name}_median": float(first["median"]),
        f"{attack.name}_median_ci_low": low,
        f"{attack.name}_median_ci_high": high,
        f"{attack.name}_median_censored": bool(first["median_censored"]),
    }
    curve = robustness[
        (robustness["model"] == model)
        & (robustness["search"] == attack.search)
        & robustness["customary"]
    ].set_index("step")
    for step in CUSTOMARY_STEPS:
        stem = f"{attack.name}_{step_column(step)}"
        found = step in curve.index
        for suffix, column in (("", "share"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
            row[stem + suffix] = float(curve.at[step, column]) if found else np.nan
    return row


def _overstatement(present: Sequence[Attack], statistics: pd.DataFrame, model: str) -> dict:
    """Each weaker attack's median ratio against the strongest: its ``attack_pair`` row."""
    row = {}
    strongest = present[-1] if present else None
    pairs = statistics[(statistics["model"] == model) & (statistics["test"] == "attack_pair")]
    for weaker in present[:-1]:
        test = pairs[(pairs["a"] == weaker.search) & (pairs["b"] == strongest.search)]
        found = test.iloc[0] if len(test) else pd.Series(dtype=float)
        columns = {"": "estimate", "_ci_low": "ci_low", "_ci_high": "ci_high", "_q": "q_bh"}
        stem = f"{weaker.name}_over_{strongest.name}"
        row |= {stem + suffix: float(found.get(name, np.nan)) for suffix, name in columns.items()}
    return row


def _pointing(localisation: pd.DataFrame, statistics: pd.DataFrame, model: str) -> dict:
    """Grad-CAM's pointing accuracy over all classes, its chance level and q against chance."""
    summary = localisation[
        (localisation["model"] == model)
        & (localisation["heatmap"] == POINTING_HEATMAP)
        & (localisation["class_name"] == "all")
    ]
    test = statistics[
        (statistics["model"] == model)
        & (statistics["test"] == "pointing_vs_chance")
        & (statistics["a"] == f"{POINTING_HEATMAP}_pointing_hit")
    ]

    def value(frame: pd.DataFrame, column: str) -> float:
        return float(frame[column].iloc[0]) if len(frame) else np.nan

    return {
        "pointing_accuracy": value(summary, "pointing_accuracy"),
        "pointing_ci_low": value(summary, "pointing_ci_low"),
        "pointing_ci_high": value(summary, "pointing_ci_high"),
        "pointing_chance": value(summary, "chance"),
        "pointing_q": value(test, "q_bh"),
    }


def _sorted(table: pd.DataFrame, attack: str | None) -> pd.DataFrame:
    """Largest median first (inf = censored is largest), undefined medians last, then by name."""
    if attack is None:
        return table.sort_values("model", kind="stable").reset_index(drop=True)
    key = -table[f"{attack}_median"].to_numpy(dtype=np.float64)
    order = np.lexsort((table["model"].to_numpy(), np.nan_to_num(key, nan=np.inf)))
    return table.iloc[order].reset_index(drop=True)


def _q_vs_next(models: list[str], statistics: pd.DataFrame, search: str | None) -> list[float]:
    pairs = statistics[(statistics["test"] == "model_pair") & (statistics["search"] == search)]
    q_by_pair = {frozenset((a, b)): q for a, b, q in pairs[["a", "b", "q_bh"]].itertuples(False)}
    following = [*models[1:], None]
    return [
        float(q_by_pair.get(frozenset((model, after)), np.nan)) if after else np.nan
        for model, after in zip(models, following, strict=True)
    ]


def display(table: pd.DataFrame, attacks: Sequence[Attack] = ATTACKS) -> pd.DataFrame:
    """The leaderboard as text cells for people: each value beside its 95% CI."""
    present = [a for a in attacks if f"{a.name}_median" in table]
    shown = {"rank": table["rank"].astype(str), "model": table["model"]}
    shown["scored"] = table["scored"].astype(str)
    shown["clean top-1"] = _with_ci(table, "top1", "top1_ci_low", "top1_ci_high", percent=True)
    for attack in present:
        stem = attack.name
        shown[f"{attack.label} median ε ({attack.search})"] = _median_cells(table, stem)
        for step in CUSTOMARY_STEPS:
            column = f"{stem}_{step_column(step)}"
            cells = _with_ci(table, column, f"{column}_ci_low", f"{column}_ci_high", percent=True)
            shown[f"{attack.label} robust at {step}"] = cells
    for weaker in present[:-1]:
        stem = f"{weaker.name}_over_{present[-1].name}"
        shown[f"{weaker.label} overstates {present[-1].label} by"] = _with_ci(
            table, stem, f"{stem}_ci_low", f"{stem}_ci_high"
        ) + table[f"{stem}_q"].map(lambda q: f", {q_text(q)}")
    pointing = _with_ci(
        table, "pointing_accuracy", "pointing_ci_low", "pointing_ci_high", percent=True
    )
    chance = table["pointing_chance"].map(lambda c: format_percent(c))
    shown["Grad-CAM pointing vs chance"] = (
        pointing + " vs " + chance + table["pointing_q"].map(lambda q: f", {q_text(q)}")
    )
    shown["differs from next"] = [
        _differs(differs, q)
        for differs, q in zip(table["differs_from_next"], table["q_vs_next"], strict=True)
    ]
    return pd.DataFrame(shown)


def _differs(differs, q: float) -> str:
    if pd.isna(differs):
        return "—"
    return f"{'yes' if differs else 'no evidence'} ({q_text(q)})"


def _median_cells(table: pd.DataFrame, stem: str) -> pd.Series:
    return pd.Series(
        [
            format_epsilon_ci(median, low, high)
            for median, low, high in zip(
                table[f"{stem}_median"],
                table[f"{stem}_median_ci_low"],
                table[f"{stem}_median_ci_high"],
                strict=True,
            )
        ],
        index=table.index,
    )


def _with_ci(
    table: pd.DataFrame, value: str, low: str, high: str, *, percent: bool = False
) -> pd.Series:
    form = format_percent if percent else format_number
    return pd.Series(
        [
            f"{form(v)} ({ci_text(lo, hi, percent=percent)})" if not np.isnan(lo) else form(v)
            for v, lo, hi in zip(table[value], table[low], table[high], strict=True)
        ],
        index=table.index,
    )


def ci_text(low: float, high: float, *, percent: bool = False) -> str:
    """``29.8–59.6%``, ``0.866–1.79`` or ``-0.821 to -0.145``: the bounds of a 95% CI."""
    if percent:
        return f"{100 * low:.1f}–{format_percent(high)}"
    dash = " to " if min(low, high) < 0 else "–"
    return f"{format_number(low)}{dash}{format_number(high)}"


def format_number(value: float) -> str:
    """Three significant figures; ``n/a`` for a missing value, ``censored`` for inf."""
    if value is None or np.isnan(value):
        return "n/a"
    if np.isinf(value):
        return "censored"
    return f"{value:.3g}"


def format_percent(value: float) -> str:
    """A share as a percentage with one decimal (``44.7%``); ``n/a`` when missing."""
    if value is None or np.isnan(value):
        return "n/a"
    return f"{100 * value:.1f}%"


def q_text(value: float) -> str:
    """``q = 0.045`` (two significant figures), ``q < 0.001`` below that, ``q n/a`` if missing."""
    if value is None or np.isnan(value):
        return "q n/a"
    return "q < 0.001" if value < 0.001 else f"q = {value:.2g}"


def format_epsilon_ci(median: float, low: float, high: float) -> str:
    """A median epsilon with its CI, e.g. ``0.00183 (0.00129–0.00287)``; a censored bound reads
    ``> eps_max`` since it only says the value lies above every epsilon searched."""
    if np.isnan(median):
        return "n/a"
    if np.isnan(low):
        return _epsilon(median)
    return f"{_epsilon(median)} ({_epsilon(low)}–{_epsilon(high)})"


def _epsilon(value: float) -> str:
    return "> eps_max" if np.isinf(value) else f"{value:.3g}"
