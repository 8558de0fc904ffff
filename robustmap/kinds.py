"""The vocabulary of search kinds and heatmaps: the one place that names them.

The rules, the config check, the tables, the statistics and the figures read the kinds from
here. Adding a search kind is one :class:`SearchKind` entry below plus its weights in
:func:`robustmap.measure.search_weights_by_kind`. This module imports nothing else of robustmap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Source = Literal["none", "gradcam", "box"]


@dataclass(frozen=True)
class SearchKind:
    """One weighting of the FGSM direction.

    ``source`` is what its weights are built from: nothing (uniform), the model's own Grad-CAM,
    or the human bounding box of the label table.
    """

    name: str
    source: Source
    colour: str  # Okabe-Ito, distinguishable under the common colour-vision deficiencies
    description: str


SEARCHES: tuple[SearchKind, ...] = (
    SearchKind("uniform", "none", "#0072B2", "every pixel weight 1"),
    SearchKind("object", "gradcam", "#D55E00", "the model's own Grad-CAM object"),
    SearchKind("background", "gradcam", "#009E73", "one minus the Grad-CAM object"),
    SearchKind("box_object", "box", "#E69F00", "the human bounding box"),
    SearchKind("box_background", "box", "#56B4E9", "everything outside the human bounding box"),
)
SEARCH_KINDS: tuple[str, ...] = tuple(kind.name for kind in SEARCHES)
SEARCH_COLOURS: dict[str, str] = {kind.name: kind.colour for kind in SEARCHES}

SEARCH_PAIRS: tuple[tuple[str, str], ...] = (
    ("object", "uniform"),
    ("background", "uniform"),
    ("object", "background"),
    ("box_object", "object"),  # the human's object vs the model's own
    ("box_background", "background"),
)
"""Paired comparisons (a, b) of the statistics table: the estimate is the median of a / b."""

HEATMAP_KINDS: tuple[str, ...] = ("gradcam", "saliency")


def source_of(name: str) -> Source:
    """What the weights of search kind ``name`` are built from."""
    return _BY_NAME[check_kinds([name])[0]].source


def kinds_from(names: Iterable[str], source: Source) -> list[str]:
    """The kinds among ``names`` whose weights are built from ``source``, in the given order."""
    return [name for name in names if source_of(name) == source]


def check_kinds(names: Iterable[str]) -> list[str]:
    """``names`` as a list, or ValueError naming every unknown kind and the known ones."""
    names = list(names)
    unknown = [name for name in names if name not in _BY_NAME]
    if unknown:
        raise ValueError(
            f"search.kinds: unknown search kind {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(SEARCH_KINDS)}"
        )
    return names


def search_order(kinds: Iterable[str]) -> list[str]:
    """Search kinds in the study's order (:data:`SEARCH_KINDS`), unknown kinds last, sorted."""
    present = set(kinds)
    return [kind for kind in SEARCH_KINDS if kind in present] + sorted(present - set(SEARCH_KINDS))


_BY_NAME = {kind.name: kind for kind in SEARCHES}
