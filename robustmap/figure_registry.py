"""The report's summary figures: the one list of their file stems and report entries.

:func:`robustmap.figures.figure_builders` draws one figure per :func:`figure_files` entry and
``rules/report.smk`` declares one output (with its report category and caption) per entry.
The Snakefile reads this module while it parses, so it imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FigureKind:
    """One figure of the report, or one per search kind (``per_search``).

    ``stem`` names its caption (``report/<stem>.rst``) and its file: ``<stem>`` or, per search,
    ``<stem>_<search kind>``. ``category`` and ``subcategory`` place it in the report; ``shows``
    is its ``figure`` label there. A ``needs_pgd`` figure compares the two attacks, so a run
    without PGD (``search.pgd.kinds`` empty) has nothing to draw in it and does not list it.
    """

    stem: str
    category: str
    subcategory: str
    shows: str
    per_search: bool = False
    needs_pgd: bool = False


FIGURE_KINDS: tuple[FigureKind, ...] = (
    FigureKind(
        "class_epsilon",
        "Classes",
        "Mean epsilon by class",
        "mean epsilon by class, all",
        per_search=True,
    ),
    FigureKind(
        "class_bulk",
        "Classes",
        "Bulk of the classes",
        "mean epsilon by class, central 80%",
        per_search=True,
    ),
    FigureKind(
        "class_extremes",
        "Classes",
        "Top-10 classes",
        "most sensitive and most robust classes",
        per_search=True,
    ),
    FigureKind("epsilon_ecdf", "Distributions", "ECDF", "epsilon ECDF per model and search"),
    FigureKind("paired_searches", "Searches", "Paired", "every search's epsilons, same images"),
    FigureKind("compactness_gradcam", "Compactness", "Grad-CAM", "Grad-CAM compactness vs epsilon"),
    FigureKind(
        "compactness_saliency", "Compactness", "Saliency", "saliency compactness vs epsilon"
    ),
    FigureKind("accuracy", "Accuracy", "Table", "clean accuracy per model"),
    FigureKind("robustness", "Distributions", "Robustness curves", "share surviving each step"),
    FigureKind("localisation", "Localisation", "Against chance", "pointing game and energy in box"),
    FigureKind(
        "localisation_epsilon", "Localisation", "Versus epsilon", "localisation scores vs epsilon"
    ),
    FigureKind(
        "attack_scatter",
        "Iterative attack",
        "FGSM vs PGD",
        "FGSM against PGD minimal epsilon per image",
        needs_pgd=True,
    ),
)


@dataclass(frozen=True)
class FigureFile:
    """One figure file of a run: its file stem, its kind, and its search kind ("all": every one)."""

    name: str
    kind: FigureKind
    search: str


def figure_files(searches: Sequence[str], pgd_searches: Sequence[str] = ()) -> list[FigureFile]:
    """Every summary figure of a run with these search kinds (and these PGD kinds): the
    per-search figures of each search in turn, then the others, in :data:`FIGURE_KINDS` order;
    the ``needs_pgd`` ones only when some kind runs PGD."""
    kinds = [kind for kind in FIGURE_KINDS if pgd_searches or not kind.needs_pgd]
    per_search = [
        FigureFile(f"{kind.stem}_{search}", kind, search)
        for search in searches
        for kind in kinds
        if kind.per_search
    ]
    summaries = [FigureFile(kind.stem, kind, "all") for kind in kinds if not kind.per_search]
    return per_search + summaries


def figure_names(searches: Sequence[str], pgd_searches: Sequence[str] = ()) -> list[str]:
    """The file stems of :func:`figure_files`, in its order."""
    return [figure.name for figure in figure_files(searches, pgd_searches)]
