"""The findings that open the report: one generated sentence per study question.

Every number comes from the study's tables (leaderboard, per-class, statistics) as they are; a
sentence only words them. The wording follows the tests: a q_bh below
:data:`robustmap.statistics.SIGNIFICANCE` is stated as a difference (or an association), any other
q reads "no evidence of a difference"; classes with fewer than ``report.min_class_images``
searched images are never named as the most sensitive or most robust (the per-class table does
not rank them); a censored median is called censored, never given a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustmap.leaderboard import (
    ATTACKS,
    Attack,
    ci_text,
    format_number,
    format_percent,
    q_text,
)
from robustmap.statistics import SIGNIFICANCE

LEADERBOARD_FILE = "leaderboard.html"


@dataclass(frozen=True)
class Finding:
    """One study question's answer: a plain-text sentence and the report file it rests on."""

    question: str
    sentence: str
    links: tuple[str, ...]


def findings(
    leaderboard: pd.DataFrame,
    per_class: pd.DataFrame,
    statistics: pd.DataFrame,
    *,
    min_class_images: int,
    attacks: Sequence[Attack] = ATTACKS,
) -> list[Finding]:
    """The findings in study order; a question the tables cannot answer has no finding.

    Args:
        leaderboard: from :func:`robustmap.leaderboard.leaderboard` (its row order is the
            ranking).
        per_class, statistics: the study's per-class and statistics tables.
        min_class_images: ``report.min_class_images``, named in the classes sentence.
        attacks: the attack registry; the strongest attack present sets the headline search.
    """
    present = [a for a in attacks if f"{a.name}_median" in leaderboard]
    headline = present[-1] if present else None  # no run of the headline search: no ranking
    candidates = (
        # Classes under FGSM, the study's measure, whose class figures exist; how far PGD
        # reorders them is the attacks finding's class_rank_agreement.
        present and classes_finding(per_class, present[0], min_class_images=min_class_images),
        headline and models_finding(leaderboard, statistics, headline),
        object_background_finding(statistics),
        compactness_finding(statistics),
        localisation_finding(leaderboard),
        attacks_finding(statistics, present),
    )
    return [finding for finding in candidates if finding]


def classes_finding(
    per_class: pd.DataFrame, attack: Attack, *, min_class_images: int
) -> Finding | None:
    """The most sensitive and most robust ranked class of each model, with median CIs."""
    rows = per_class[per_class["search"] == attack.search]
    if rows.empty:
        return None
    scope = (
        f"Among classes with at least {min_class_images} searched images "
        f"({attack.label}, {attack.search} search)"
    )
    parts = []
    for model, classes in rows.groupby("model", sort=True):
        ranked = classes[classes["sensitivity_rank"].notna()].sort_values("sensitivity_rank")
        if ranked.empty:
            parts.append(f"{model} has no such class")
        elif len(ranked) == 1:
            parts.append(f"{model} has one, {_class(ranked.iloc[0])}")
        else:
            sensitive, robust = _class(ranked.iloc[0]), _class(ranked.iloc[-1])
            parts.append(f"{model}'s most sensitive is {sensitive} and most robust {robust}")
    sentence = f"{scope}, {join(parts)}."
    if all("no such class" in part for part in parts):
        sentence = (
            f"No model has a class with at least {min_class_images} searched images "
            f"({attack.label}, {attack.search} search), so no class is named as most sensitive "
            "or most robust."
        )
    else:
        sentence += " No test compares classes: overlapping CIs are no evidence of a difference."
    return Finding("Classes", sentence, (f"class_extremes_{attack.search}.png",))


def _class(row: pd.Series) -> str:
    return (
        f"{row['class_name']} (median ε "
        f"{median_text(row['median'], row['median_ci_low'], row['median_ci_high'])}, "
        f"n = {int(row['n'])})"
    )


def models_finding(
    leaderboard: pd.DataFrame, statistics: pd.DataFrame, attack: Attack
) -> Finding | None:
    """Which model needs the largest step, and which pairs of models differ."""
    what = f"median {attack.label} ε ({attack.search} search)"
    searched = leaderboard[leaderboard[f"{attack.name}_n"] > 0]
    unsearched = [m for m in leaderboard["model"] if m not in set(searched["model"])]
    parts = []
    if len(searched) == 1:
        only = searched.iloc[0]
        parts.append(
            f"Only {only['model']} has searched images: its {what} is "
            f"{_model_median(only, attack)}; there is no other model to compare it with."
        )
    elif len(searched) > 1:
        parts.append(_ranking(searched, attack, what))
        parts.append(_model_pairs(statistics, attack))
    if unsearched:
        have = "it has" if len(unsearched) == 1 else "they have"
        parts.append(f"{join(unsearched)} got no image right, so {have} no epsilon and no rank.")
    if not parts:
        return None
    return Finding("Models", " ".join(parts), (LEADERBOARD_FILE,))


def _ranking(searched: pd.DataFrame, attack: Attack, what: str) -> str:
    """Which model has the largest and which the smallest median; censored medians (above
    eps_max) are not ordered among themselves, and equal medians are called equal."""
    medians = searched[f"{attack.name}_median"].to_numpy(dtype=np.float64)
    censored = searched[np.isinf(medians)]
    finite = searched[np.isfinite(medians)]
    if finite.empty:
        return f"{join(censored['model'].tolist())} each have a censored {what} (above eps_max)."
    if len(censored) > 1:
        top = f"{join(censored['model'].tolist())} have censored medians (above eps_max)"
    elif len(censored) == 1:
        top = f"{censored['model'].iloc[0]} has the largest {what}, "
        top += _model_median(censored.iloc[0], attack)
    elif finite[f"{attack.name}_median"].nunique() == 1:
        return (
            f"{join(finite['model'].tolist())} have the same {what}, {format_number(medians[0])}."
        )
    else:
        top = f"{finite['model'].iloc[0]} has the largest {what}, "
        top += _model_median(finite.iloc[0], attack)
    bottom = finite.iloc[-1]  # the table's order: largest median first
    return f"{top}, and {bottom['model']} the smallest, {_model_median(bottom, attack)}."


def _model_median(row: pd.Series, attack: Attack) -> str:
    stem = attack.name
    return median_text(
        row[f"{stem}_median"], row[f"{stem}_median_ci_low"], row[f"{stem}_median_ci_high"]
    )


def _model_pairs(statistics: pd.DataFrame, attack: Attack) -> str:
    pairs = statistics[
        (statistics["test"] == "model_pair") & (statistics["search"] == attack.search)
    ]
    tested = pairs[pairs["q_bh"].notna()]
    if tested.empty:
        return "No model pair could be tested on the images every model got right."
    significant = tested[tested["q_bh"] < SIGNIFICANCE]
    scope = "On the images every model got right"
    if significant.empty:
        return (
            f"{scope}, no pair of models differs (smallest {q_text(tested['q_bh'].min())}): "
            "no evidence of a difference."
        )
    claims = [
        f"{larger} needs a larger step than {smaller} ({_ratio(row)})"
        for row, larger, smaller in _ordered_pairs(significant)
    ]
    rest = len(tested) - len(significant)
    tail = f"; the other {rest} pair{'s' if rest != 1 else ''} show no evidence of a difference"
    return f"{scope}, {join(claims)}{tail if rest else ''}."


def _ordered_pairs(rows: pd.DataFrame):
    """Each row with its two sides ordered: the side needing the larger step first."""
    for _, row in rows.iterrows():
        larger_first = row["estimate"] >= 1
        yield row, *((row["a"], row["b"]) if larger_first else (row["b"], row["a"]))


def _ratio(row: pd.Series) -> str:
    """``median ratio 1.28, 95% CI 0.866–1.79, n = 21, q = 0.046`` of a statistics row."""
    return (
        f"median ratio {row['a']}/{row['b']} {format_number(row['estimate'])}, "
        f"95% CI {ci_text(row['ci_low'], row['ci_high'])}, n = {int(row['n'])}, "
        f"{q_text(row['q_bh'])}"
    )


def object_background_finding(statistics: pd.DataFrame) -> Finding | None:
    """Object- against background-weighted searches, per model (``search_pair`` rows)."""
    rows = statistics[
        (statistics["test"] == "search_pair")
        & (statistics["a"] == "object")
        & (statistics["b"] == "background")
    ]
    if rows.empty:
        return None
    larger, smaller, neither, untested = [], [], [], []
    for _, row in rows.iterrows():
        claim = f"{row['model']} ({_ratio(row)})"
        if pd.isna(row["q_bh"]):
            untested.append(f"{row['model']} (n = {int(row['n'])})")
        elif not row["q_bh"] < SIGNIFICANCE:
            neither.append(claim)
        elif row["estimate"] >= 1:
            larger.append(claim)
        else:
            smaller.append(claim)
    parts = []
    if larger:
        parts.append(f"a larger step than the background-weighted one for {join(larger)}")
    if smaller:
        parts.append(f"a smaller step than the background-weighted one for {join(smaller)}")
    sentence = f"The object-weighted search needs {'; '.join(parts)}." if parts else ""
    if neither:
        sentence += f" For {join(neither)}: no evidence of a difference."
    if untested:
        sentence += f" Not tested for {join(untested)}: too few images."
    return Finding("Object vs background", sentence.strip(), ("paired_searches.png",))


def compactness_finding(statistics: pd.DataFrame) -> Finding | None:
    """How many compactness-epsilon correlations hold, raw and given the clean margin."""
    raw = statistics[(statistics["test"] == "compactness_spearman") & statistics["q_bh"].notna()]
    if raw.empty:
        return None
    partial = statistics[
        (statistics["test"] == "compactness_partial_spearman") & statistics["q_bh"].notna()
    ]
    significant = raw[raw["q_bh"] < SIGNIFICANCE]
    count = f"{len(significant)} of {len(raw)} Spearman correlations"
    subject = "between a heatmap compactness score and the uniform ε"
    if significant.empty:
        sentence = (
            f"None of {len(raw)} Spearman correlations {subject} has q < {SIGNIFICANCE:g} "
            f"(smallest {q_text(raw['q_bh'].min())}): no evidence of an association."
        )
    else:
        strongest = significant.sort_values(["q_bh", "model", "a"], kind="stable").iloc[0]
        sentence = (
            f"{count} {subject} have q < {SIGNIFICANCE:g} (strongest: {strongest['model']} "
            f"{strongest['a']}, rho {format_number(strongest['estimate'])}, 95% CI "
            f"{ci_text(strongest['ci_low'], strongest['ci_high'])}, {q_text(strongest['q_bh'])})"
        )
        if not partial.empty:
            kept = int((partial["q_bh"] < SIGNIFICANCE).sum())
            sentence += (
                f"; given the clean logit margin, {kept} of {len(partial)} partial correlations do"
            )
        sentence += ". An association is not a cause."
    return Finding("Compactness", sentence, ("compactness_gradcam.png", "compactness_saliency.png"))


def localisation_finding(leaderboard: pd.DataFrame) -> Finding | None:
    """Grad-CAM's pointing accuracy against chance, per model, from the leaderboard."""
    rows = leaderboard[leaderboard["pointing_accuracy"].notna()]
    if rows.empty:
        return None
    above, below, neither = [], [], []
    for _, row in rows.sort_values("model").iterrows():
        claim = (
            f"{row['model']} ({format_percent(row['pointing_accuracy'])}, 95% CI "
            f"{ci_text(row['pointing_ci_low'], row['pointing_ci_high'], percent=True)}, "
            f"chance {format_percent(row['pointing_chance'])}, {q_text(row['pointing_q'])})"
        )
        if not row["pointing_q"] < SIGNIFICANCE:
            neither.append(claim)
        elif row["pointing_accuracy"] > row["pointing_chance"]:
            above.append(claim)
        else:
            below.append(claim)
    parts = [
        f"{direction} than chance for {join(claims)}"
        for direction, claims in (("more often", above), ("less often", below))
        if claims
    ]
    sentence = ""
    if parts:
        sentence = f"Grad-CAM's hottest pixel lies in the human box {'; '.join(parts)}."
    if neither:
        sentence += (
            f"{' ' if parts else ''}Grad-CAM's pointing game against chance: no evidence of a "
            f"difference for {join(neither)}."
        )
    return Finding("Localisation", sentence, ("localisation.png",))


def attacks_finding(statistics: pd.DataFrame, present: Sequence[Attack]) -> Finding | None:
    """How much each weaker attack overstates the strongest one's epsilon, per model (its
    ``attack_pair`` row), and how well the two attacks agree on the order of the classes (the
    ``class_rank_agreement`` row, where one was computed). Needs two attacks in the tables."""
    if len(present) < 2:
        return None
    strongest = present[-1]
    claims = []
    for weaker in present[:-1]:
        rows = statistics[
            (statistics["a"] == weaker.search) & (statistics["b"] == strongest.search)
        ]
        ranks = rows[rows["test"] == "class_rank_agreement"].set_index("model")
        for _, row in rows[(rows["test"] == "attack_pair") & rows["estimate"].notna()].iterrows():
            verdict = "" if row["q_bh"] < SIGNIFICANCE else ", no evidence of a difference"
            claim = f"{weaker.label} over {strongest.label} for {row['model']}: {_ratio(row)}"
            claims.append(claim + verdict + _rank_agreement(ranks, row["model"]))
    if not claims:
        return None
    labels = f"{'/'.join(a.label for a in present[:-1])} vs {strongest.label}"
    return Finding(labels, "; ".join(claims) + ".", (LEADERBOARD_FILE,))


def _rank_agreement(ranks: pd.DataFrame, model: str) -> str:
    """``, class medians ranked alike at rho 0.9 (95% CI 0.7–0.98, 12 classes)``, or nothing
    where the model has no rank agreement (fewer than 3 ranked classes)."""
    if model not in ranks.index or np.isnan(ranks.at[model, "estimate"]):
        return ""
    row = ranks.loc[model]
    return (
        f", class medians ranked alike at Spearman rho {format_number(row['estimate'])} "
        f"(95% CI {ci_text(row['ci_low'], row['ci_high'])}, {int(row['n'])} classes)"
    )


def median_text(median: float, low: float, high: float) -> str:
    """``0.00183, 95% CI 0.00103–0.00295``; a censored value or bound reads ``above eps_max``."""
    if np.isnan(median):
        return "n/a"
    value = "censored (above eps_max)" if np.isinf(median) else format_number(median)
    if np.isnan(low):
        return value
    bounds = [("above eps_max" if np.isinf(b) else format_number(b)) for b in (low, high)]
    return (
        f"{value}, 95% CI {bounds[0]} to {bounds[1]}"
        if np.isinf(high)
        else (f"{value}, 95% CI {bounds[0]}–{bounds[1]}")
    )


def join(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    parts = list(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


def findings_rst(found: Sequence[Finding]) -> str:
    """The findings as a reStructuredText bullet list, each linking its report files."""
    items = []
    for finding in found:
        links = ", ".join(f"`{name}`_" for name in finding.links)
        items.append(f"- **{finding.question}.** {rst_escape(finding.sentence)} See {links}.")
    return "\n".join(items) + "\n"


def rst_escape(text: str) -> str:
    """Text with reStructuredText's inline markup characters escaped."""
    for char in ("\\", "*", "`", "_", "|"):
        text = text.replace(char, "\\" + char)
    return text
