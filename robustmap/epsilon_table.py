"""One model's epsilon table: merged from its shards, checked, and its panel images chosen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from robustmap.kinds import search_order
from robustmap.schema import ATTACK_COLUMN, ATTACKS, FGSM, empty_search_table


def merge_searches(shard_tables: Sequence[pd.DataFrame], shards: pd.DataFrame) -> pd.DataFrame:
    """One model's per-shard search tables as one table, checked to be complete.

    Args:
        shard_tables: frames with ``image_id``, ``attack``, ``search`` and the search result
            columns, one per shard and search kind (each kind's FGSM and PGD rows), in any order.
            A frame without ``attack`` holds FGSM rows.
        shards: the model's shard table (``image_id``, ``shard``, ...), whose row order is the
            image order of the result.

    Returns:
        The rows sorted by attack (:data:`robustmap.schema.ATTACKS`), search kind
        (:data:`robustmap.kinds.SEARCH_KINDS`), then shard-table image order, index reset.
        Censored rows are kept as they are.

    Raises:
        ValueError: some shard image lacks a row for an (attack, kind) present in the tables,
            has more than one, or a row names an image that is not in any shard. The message
            names the image ids, so nothing is lost (or invented) silently.
    """
    frames = [frame for frame in shard_tables if len(frame)]
    if not frames:
        if len(shards):
            raise ValueError(
                f"no search rows for {len(shards)} shard images, e.g. "
                f"{id_examples(shards['image_id'])}"
            )
        # no correct image, no shard: every column of a search table, no rows
        return empty_search_table()
    merged = pd.concat(frames, ignore_index=True)
    if ATTACK_COLUMN not in merged:
        merged.insert(1, ATTACK_COLUMN, FGSM)
    merged[ATTACK_COLUMN] = merged[ATTACK_COLUMN].fillna(FGSM)  # frames without the column
    position = pd.Series(np.arange(len(shards)), index=shards["image_id"].to_numpy())
    if not position.index.is_unique:
        twice = position.index[position.index.duplicated()].unique()
        raise ValueError(f"shard table lists images twice: {id_examples(twice)}")
    _check_complete(merged, position.index)
    kinds = search_order(merged["search"].unique())
    attacks = [*ATTACKS, *sorted(set(merged[ATTACK_COLUMN]) - set(ATTACKS))]
    order = pd.DataFrame(
        {
            "attack": merged[ATTACK_COLUMN].map({name: rank for rank, name in enumerate(attacks)}),
            "kind": merged["search"].map({kind: rank for rank, kind in enumerate(kinds)}),
            "image": merged["image_id"].map(position),
        }
    )
    rows = order.sort_values(["attack", "kind", "image"], kind="stable").index
    return merged.loc[rows].reset_index(drop=True)


def _check_complete(merged: pd.DataFrame, expected: pd.Index) -> None:
    problems = []
    strangers = pd.Index(merged["image_id"].unique()).difference(expected)
    if len(strangers):
        problems.append(f"{len(strangers)} rows for images in no shard: {id_examples(strangers)}")
    for (attack, kind), rows in merged.groupby([ATTACK_COLUMN, "search"], sort=True):
        name = f"search {kind!r}" if attack == FGSM else f"{attack} search {kind!r}"
        counts = rows["image_id"].value_counts()
        missing = expected.difference(counts.index)
        if len(missing):
            problems.append(f"{name} misses {len(missing)} images: {id_examples(missing)}")
        repeated = counts.index[counts > 1]
        if len(repeated):
            problems.append(
                f"{name} has several rows for {len(repeated)} images: {id_examples(repeated)}"
            )
    if problems:
        raise ValueError("incomplete search results; " + "; ".join(problems))


def id_examples(ids: Iterable, limit: int = 10) -> str:
    """Up to ``limit`` of ``ids``, sorted, for an error message that names what went wrong."""
    ids = sorted(map(str, ids))
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def extreme_images(
    epsilons: pd.DataFrame, *, count: int, search: str = "uniform", attack: str = FGSM
) -> pd.DataFrame:
    """The ``count`` most sensitive and ``count`` most robust images of one model's search.

    Args:
        epsilons: the model's merged epsilon table (image_id, attack, search, epsilon, ...);
            a table without ``attack`` holds FGSM rows (:func:`attack_rows`).
        search, attack: the search kind and attack whose epsilons rank the images.

    Returns:
        image_id, epsilon, role ("most sensitive" / "most robust"): the smallest epsilons first,
        then the largest (censored ones count as largest) from the most robust down. Ties keep
        the table's image order. An image is never listed twice; images with an undefined
        epsilon are never listed.
    """
    mine = attack_rows(epsilons, attack)
    rows = mine[(mine["search"] == search) & mine["epsilon"].notna()]
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


def attack_rows(epsilons: pd.DataFrame, attack: str) -> pd.DataFrame:
    """The rows of one attack of an epsilon table (a table without ``attack``: FGSM rows only)."""
    if ATTACK_COLUMN in epsilons:
        return epsilons[epsilons[ATTACK_COLUMN] == attack]
    return epsilons if attack == FGSM else epsilons.iloc[:0]
