"""The study's tables: their columns, dtypes, statuses and wide column names, in one place.

Inside the library a search result is one row per (model, image, attack, kind): the epsilon
tables are long, one row per image and :class:`Search`. The per-image table is the one wide view
users get; :func:`wide_searches` builds its search columns and :func:`search_column` names each
one, so no other module builds or parses ``<field>_<search>`` names. The same holds for the
heatmap columns (:func:`heatmap_column`, :func:`agreement_column`, :func:`localisation_column`).

Wide names: ``<field>_<kind>`` for the FGSM attack (``epsilon_uniform``, ``search_status_object``:
the names of the tables from before attacks were a dimension), ``<field>_<attack>_<kind>`` for any
other attack (``epsilon_pgd_uniform``). Adding an attack is an entry in :data:`ATTACKS`.

Like :mod:`robustmap.kinds`, this module imports nothing else of robustmap. Functions that need
the search or heatmap kinds take them as arguments (callers pass
:data:`robustmap.kinds.SEARCH_KINDS` and :data:`robustmap.kinds.HEATMAP_KINDS`): the kinds are the
study's vocabulary, this module the shape of its tables, and neither needs the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import pandas as pd

# ---- statuses ----------------------------------------------------------------------------------

FLIPPED = "flipped"
NOT_FLIPPED = "not_flipped"
ZERO_GRADIENT = "zero_gradient"
MISCLASSIFIED_AT_START = "misclassified_at_start"
ENGINE_DISAGREES = "engine_disagrees"
STATUSES = (FLIPPED, NOT_FLIPPED, ZERO_GRADIENT, MISCLASSIFIED_AT_START, ENGINE_DISAGREES)
"""The statuses a search gives (:mod:`robustmap.search` defines them)."""
NO_BOX = "no_box"
"""Status of an image without a valid human box: localisation scores and box-search epsilons
undefined (nan), the row kept."""
BOX_OK = "ok"
"""Localisation status of an image with a valid human box."""

# ---- attacks -----------------------------------------------------------------------------------

FGSM = "fgsm"
PGD = "pgd"
ATTACKS: tuple[str, ...] = (FGSM, PGD)
"""The attacks whose searches the tables hold, in table order; FGSM's wide names carry no
attack. FGSM is :mod:`robustmap.search`, PGD :mod:`robustmap.pgd` (started from FGSM's epsilon)."""
ATTACK_COLUMN = "attack"
"""Column of a long search table naming the attack; a table without it holds FGSM rows."""


class Search(NamedTuple):
    """One search: an attack along the direction weighted by one search kind."""

    attack: str
    kind: str

    @property
    def name(self) -> str:
        """The search's name in the summary tables' ``search`` column and in wide names."""
        return self.kind if self.attack == FGSM else f"{self.attack}_{self.kind}"


# ---- long tables -------------------------------------------------------------------------------

SEARCH_TABLE: dict[str, object] = {
    "image_id": object,
    ATTACK_COLUMN: object,
    "search": object,
    "epsilon": "float64",
    "epsilon_low": "float64",
    "adversarial_label": "Int64",
    "adversarial_name": object,
    "forward_passes": "Int64",
    "gradient_passes": "Int64",
    "status": object,
    "non_monotone": "boolean",
}
"""Columns and dtypes of a search table (``search/{kind}/{shard}`` and ``epsilons.parquet``): one
row per image and (attack, kind), ``search`` the kind. Fields an attack does not have
(:data:`ATTACK_FIELDS`) are null in its rows."""
SEARCH_COLUMNS = list(SEARCH_TABLE)
ATTACK_FIELDS: dict[str, tuple[str, ...]] = {
    FGSM: (
        "epsilon",
        "status",
        "adversarial_label",
        "adversarial_name",
        "forward_passes",
        "non_monotone",
    ),
    PGD: (
        "epsilon",
        "status",
        "epsilon_low",
        "adversarial_label",
        "adversarial_name",
        "gradient_passes",
    ),
}
"""Each attack's fields of the search table, in their wide order (status beside epsilon): the
per-image table gives a search only its attack's fields."""
SEARCH_FIELDS = tuple(dict.fromkeys(field for fields in ATTACK_FIELDS.values() for field in fields))
"""Every field of the search table that the per-image table spreads, in wide order."""
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
COMPACTNESS_SCORES = (
    "gini",
    "entropy",
    "share_50",
    "share_90",
    "concentration_auc",
    "spread",
    "components",
)
AGREEMENT_COLUMNS = ("spearman", "iou_top20")
"""Saliency-vs-Grad-CAM agreement, repeated on both heatmap rows of an image."""
COMPACTNESS_COLUMNS = ("image_id", "heatmap", *COMPACTNESS_SCORES, *AGREEMENT_COLUMNS)
BOX_FRACTION = "box_fraction"
LOCALISATION_SCORES = ("pointing_hit", "energy_in_box", "rank_accuracy", "auc", BOX_FRACTION)
HEATMAP_LOCALISATION_SCORES = LOCALISATION_SCORES[:-1]  # box_fraction describes the box
LOCALISATION_COLUMNS = ("image_id", "heatmap", "status", *LOCALISATION_SCORES)
LONG_EPSILON_COLUMNS = ("model", "image_id", "imagenet_index", "class_name", "search", "epsilon")

# ---- summary tables ----------------------------------------------------------------------------

SUMMARY_COLUMNS = (
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
"""The censoring-aware epsilon summary (:func:`robustmap.censored.epsilon_summary`)."""
CI_COLUMNS = ("median_ci_low", "median_ci_high")
PER_CLASS_COLUMNS = (
    "model",
    ATTACK_COLUMN,
    "search",
    "imagenet_index",
    "class_name",
    "images",
    "accuracy",
    *SUMMARY_COLUMNS,
    *CI_COLUMNS,
    "ranked",
    "sensitivity_rank",
)
PER_MODEL_COLUMNS = (
    "model",
    ATTACK_COLUMN,
    "search",
    "images",
    "scored",
    "top1",
    "top5",
    *SUMMARY_COLUMNS,
)
ROBUSTNESS_COLUMNS = (
    "model",
    ATTACK_COLUMN,
    "search",
    "step",
    "epsilon",
    "customary",
    "n",
    "survivors",
    "share",
    "ci_low",
    "ci_high",
)
LOCALISATION_SUMMARY_COLUMNS = (
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
STATISTICS_COLUMNS = (
    "model",
    "test",
    "a",
    "b",
    "search",
    "control",
    "n",
    "statistic",
    "p_value",
    "estimate",
    "ci_low",
    "ci_high",
    "family",
    "p_holm",
    "q_bh",
    "note",
)
STATISTICS_FLOATS = ("statistic", "p_value", "estimate", "ci_low", "ci_high", "p_holm", "q_bh")


def pgd_delta_key(kind: str) -> str:
    """The array of the search job's signs npz (``search/signs/{shard}.npz``, beside
    ``image_id`` and ``fgsm_sign``) holding the PGD witness perturbation of search kind ``kind``:
    float16 [N, H, W, C], the adversarial image is clip(x + delta, 0, 1); zeros where no flip."""
    return f"{PGD}_delta_{kind}"


def empty_search_table() -> pd.DataFrame:
    """A search table without rows: every column of :data:`SEARCH_TABLE`, with its dtype."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in SEARCH_TABLE.items()})


# ---- wide names --------------------------------------------------------------------------------

_WIDE_FIELD = {"status": "search_status"}  # "status" alone would collide with the label status
_WIDE_DTYPES = {
    "epsilon": "float64",
    "epsilon_low": "float64",
    "adversarial_label": "Int64",
    "forward_passes": "Int64",
    "gradient_passes": "Int64",
    "non_monotone": "boolean",
}
_AGREEMENT_PREFIX = "heatmap"
_LOCALISATION_PREFIX = "loc"


def search_column(field: str, search: Search) -> str:
    """The per-image table's column of ``field`` (a :data:`SEARCH_FIELDS` entry) of ``search``."""
    return f"{_WIDE_FIELD.get(field, field)}_{search.name}"


def heatmap_column(heatmap: str, score: str) -> str:
    """The per-image column of one heatmap's compactness ``score`` (``gradcam_gini``); also the
    name the statistics table gives a heatmap's localisation score."""
    return f"{heatmap}_{score}"


def agreement_column(name: str) -> str:
    """The per-image column of an :data:`AGREEMENT_COLUMNS` entry (``heatmap_spearman``)."""
    return f"{_AGREEMENT_PREFIX}_{name}"


def localisation_column(heatmap: str | None, score: str) -> str:
    """The per-image column of a localisation score: ``loc_<heatmap>_<score>``, or for the box's
    own :data:`BOX_FRACTION` (``heatmap`` None) ``loc_box_fraction``."""
    parts = [_LOCALISATION_PREFIX] + ([] if heatmap is None else [heatmap])
    return "_".join([*parts, score])


BOX_FRACTION_COLUMN = localisation_column(None, BOX_FRACTION)


def searches(kinds: Iterable[str], attacks: Iterable[str] = ATTACKS) -> list[Search]:
    """Every (attack, kind) pair, attack by attack, kinds in the given order."""
    kinds = list(kinds)
    return [Search(attack, kind) for attack in attacks for kind in kinds]


def searched(
    table: pd.DataFrame, kinds: Sequence[str], attacks: Iterable[str] = ATTACKS
) -> list[Search]:
    """The searches ``table`` holds results of, in :func:`searches` order.

    A long table (a ``search`` column, one row per result) holds the (attack, kind) of its rows.
    A per-image table holds a search when some image has its search status; a table without
    status columns (a hand-made one), when some image has its epsilon.
    """
    if "search" in table:
        attack = table[ATTACK_COLUMN] if ATTACK_COLUMN in table else [FGSM] * len(table)
        present = set(zip(attack, table["search"], strict=True))
        return [search for search in searches(kinds, attacks) if tuple(search) in present]
    found = []
    for search in searches(kinds, attacks):
        column = next(
            (
                name
                for name in (search_column("status", search), search_column("epsilon", search))
                if name in table
            ),
            None,
        )
        if column is not None and table[column].notna().any():
            found.append(search)
    return found


def compactness_columns(columns: Iterable[str], heatmaps: Sequence[str]) -> list[str]:
    """The compactness columns among ``columns``: each heatmap's scores, then the agreement."""
    names = [heatmap_column(heatmap, score) for heatmap in heatmaps for score in COMPACTNESS_SCORES]
    names += [agreement_column(name) for name in AGREEMENT_COLUMNS]
    present = set(columns)
    return [name for name in names if name in present]


def localisation_columns(columns: Iterable[str], heatmaps: Sequence[str]) -> list[str]:
    """The heatmaps' localisation scores among ``columns`` (not the box's own fraction)."""
    present = set(columns)
    return [
        name
        for heatmap in heatmaps
        for score in HEATMAP_LOCALISATION_SCORES
        if (name := localisation_column(heatmap, score)) in present
    ]


# ---- wide views --------------------------------------------------------------------------------


def wide_searches(
    epsilons: pd.DataFrame | None, kinds: Sequence[str], attacks: Iterable[str] = ATTACKS
) -> pd.DataFrame:
    """A long search table as one row per image, with the fields of every (attack, kind) search
    (its attack's :data:`ATTACK_FIELDS`) as :func:`search_column` columns (null where an image has
    no result; every search gets its columns, with or without results). Fields missing from the
    table are left out."""
    epsilons = empty_search_table() if epsilons is None else epsilons
    attack = epsilons[ATTACK_COLUMN] if ATTACK_COLUMN in epsilons else FGSM
    every = searches(kinds, attacks)
    fields = {
        search: [field for field in ATTACK_FIELDS[search.attack] if field in epsilons.columns]
        for search in every
    }
    wide = _spread(
        epsilons,
        (
            (
                (attack == search.attack) & (epsilons["search"] == search.kind),
                {field: search_column(field, search) for field in fields[search]},
            )
            for search in every
        ),
    )
    dtypes = {
        search_column(field, search): _WIDE_DTYPES[field]
        for search in every
        for field in fields[search]
        if field in _WIDE_DTYPES
    }
    return wide.astype({name: dtype for name, dtype in dtypes.items() if name in wide})


def wide_compactness(compactness: pd.DataFrame | None, heatmaps: Sequence[str]) -> pd.DataFrame:
    """Compactness rows (one per image and heatmap) as one row per image: each heatmap's scores
    as :func:`heatmap_column` columns, then the agreement as :func:`agreement_column` columns."""
    if compactness is None:
        return _image_ids()
    scores = [score for score in COMPACTNESS_SCORES if score in compactness.columns]
    wide = _spread(
        compactness,
        (
            (
                compactness["heatmap"] == heatmap,
                {score: heatmap_column(heatmap, score) for score in scores},
            )
            for heatmap in heatmaps
        ),
    )
    agreement = [name for name in AGREEMENT_COLUMNS if name in compactness.columns]
    if not agreement:
        return wide
    per_image = compactness[["image_id", *agreement]].drop_duplicates("image_id")
    return _join_per_image(wide, per_image, {name: agreement_column(name) for name in agreement})


def wide_localisation(localisation: pd.DataFrame | None, heatmaps: Sequence[str]) -> pd.DataFrame:
    """Localisation rows (one per image and heatmap) as one row per image: each heatmap's scores
    as :func:`localisation_column` columns, then :data:`BOX_FRACTION_COLUMN`. No rows: no
    columns (a run without human boxes)."""
    if localisation is None or localisation.empty:
        return _image_ids()
    scores = HEATMAP_LOCALISATION_SCORES
    wide = _spread(
        localisation,
        (
            (
                localisation["heatmap"] == heatmap,
                {score: localisation_column(heatmap, score) for score in scores},
            )
            for heatmap in heatmaps
        ),
    )
    fraction = localisation[["image_id", BOX_FRACTION]].drop_duplicates("image_id")
    return _join_per_image(wide, fraction, {BOX_FRACTION: BOX_FRACTION_COLUMN})


def _image_ids() -> pd.DataFrame:
    return pd.DataFrame({"image_id": pd.Series(dtype=object)})


def _spread(
    table: pd.DataFrame, groups: Iterable[tuple[pd.Series, Mapping[str, str]]]
) -> pd.DataFrame:
    """One row per image: for each group, the rows its mask selects, their fields renamed as its
    mapping says (field -> wide column), joined on ``image_id``."""
    wide = _image_ids()
    for rows, names in groups:
        renamed = table[rows][["image_id", *names]].rename(columns=dict(names))
        wide = wide.merge(renamed, on="image_id", how="outer", validate="one_to_one")
    return wide


def _join_per_image(
    wide: pd.DataFrame, per_image: pd.DataFrame, names: Mapping[str, str]
) -> pd.DataFrame:
    """``wide`` with the columns of ``per_image`` (one row per image), renamed."""
    return wide.merge(
        per_image.rename(columns=dict(names)), on="image_id", how="left", validate="one_to_one"
    )
