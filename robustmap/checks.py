"""The workflow's start-up checks: every problem of the config named by its key, in one line.

Snakemake runs :func:`check_config` while it reads the Snakefile, so a typo in a model entry or a
dataset source that cannot be verified stops the run at once, also under ``snakemake -n``, and
never after the dataset was downloaded. Nothing here imports Keras or TensorFlow: the check takes
milliseconds.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from robustmap import catalog, kinds
from robustmap.fetch import read_lock

WEIGHTS_ONLY_SUFFIXES = (".h5", ".hdf5", ".weights.h5")


class ConfigError(ValueError):
    """The configuration cannot run; the message names each offending key and what to add."""


def check_config(config: Mapping[str, Any], *, lock: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem of the model entries and the dataset.

    Args:
        config: the workflow config (after schema validation).
        lock: the workflow's lock file: a download recorded there needs no checksum in the config.
    """
    locked = read_lock(lock) if lock is not None else {}
    problems = [
        problem
        for key, entry in sorted(config.get("models", {}).items())
        for problem in model_problems(key, entry, locked)
    ]
    problems += dataset_problems(config.get("dataset", {}), locked)
    problems += kind_problems(config.get("search", {}).get("kinds", []))
    problems += pgd_problems(config.get("search", {}))
    if problems:
        raise ConfigError("config: " + "\n  ".join(problems))


def kind_problems(names: list[str]) -> list[str]:
    """Search kinds that :mod:`robustmap.kinds` does not know, named with the known ones."""
    try:
        kinds.check_kinds(names)
    except ValueError as error:
        return [str(error)]
    return []


def pgd_problems(search: Mapping[str, Any]) -> list[str]:
    """PGD kinds that are not searched: PGD starts from a kind's FGSM epsilons, so it can only
    search the kinds in ``search.kinds``."""
    searched = list(search.get("kinds", []))
    stray = [kind for kind in search.get("pgd", {}).get("kinds", []) if kind not in searched]
    if not stray:
        return []
    return [
        f"search.pgd.kinds: {', '.join(map(repr, stray))} not in search.kinds "
        f"({', '.join(searched)}); PGD searches only kinds that FGSM searches"
    ]


def schema_problem(config: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """The most relevant schema violation as one line: the key's path and what is wrong."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(config)
    )
    if error is None:
        return ""
    key = ".".join(map(str, error.absolute_path)) or "(top level)"
    return f"config: {key}: {error.message}"


def model_problems(key: str, entry: Any, locked: Mapping[str, str]) -> list[str]:
    """What is wrong with ``models.<key>``, one message per problem."""
    where = f"models.{key}"
    if not isinstance(entry, Mapping) or ("zoo" in entry) == ("path" in entry):
        return [f"{where}: give exactly one of `zoo: <name>` ({_zoo_names()}) or `path: <file>`"]
    if "path" in entry:
        return _path_problems(where, entry)
    return _zoo_problems(where, entry, locked)


def _zoo_problems(where: str, entry: Mapping[str, Any], locked: Mapping[str, str]) -> list[str]:
    name = entry["zoo"]
    if name not in catalog.ZOO_WEIGHTS:
        close = difflib.get_close_matches(str(name), catalog.ZOO_WEIGHTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"{where}.zoo: {name!r} is not a zoo model{hint}; zoo names: {_zoo_names()}"]
    weights = entry.get("weights")
    if weights:
        return [] if Path(weights).is_file() else [f"{where}.weights: no such file: {weights}"]
    source = catalog.ZOO_WEIGHTS[name]
    verifiable = entry.get("sha256") or entry.get("md5") or source.md5
    if entry.get("mirror") and not (verifiable or source.filename in locked):
        return [
            f"{where}: a mirror is never trusted on first use; add `sha256:` (of the mirror's "
            f"{source.filename}) or a checksums.lock line for it"
        ]
    return []


def _path_problems(where: str, entry: Mapping[str, Any]) -> list[str]:
    path = Path(entry["path"])
    if path.name.endswith(WEIGHTS_ONLY_SUFFIXES):
        return [
            f"{where}.path: {path.name} holds weights only, not which network they belong to; "
            f"use `zoo: <name>` with `weights: {path}`"
        ]
    if path.suffix not in catalog.MODEL_FILE_SUFFIXES:
        accepted = ", ".join(catalog.MODEL_FILE_SUFFIXES)
        return [f"{where}.path: {path.name} is not a model file ({accepted})"]
    if not path.is_file():
        return [f"{where}.path: no such file: {path}"]
    return []


def dataset_problems(dataset: Mapping[str, Any], locked: Mapping[str, str]) -> list[str]:
    """What is wrong with the ``dataset`` section, one message per problem."""
    source = dataset.get("source")
    if source in ("folder", "zip"):
        path = dataset.get("path")
        if not path:
            return [f"dataset.path: source {source} needs `path:` (the {_what(source)})"]
        if not Path(path).exists():
            return [f"dataset.path: no such {_what(source)}: {path}"]
    if source == "url":
        url = dataset.get("url") or catalog.TINY_IMAGENET_URL
        name = url.rsplit("/", 1)[-1]
        official = url == catalog.TINY_IMAGENET_URL
        if not (official or dataset.get("sha256") or dataset.get("md5") or name in locked):
            return [
                f"dataset.url: {url} is not the official Tiny-ImageNet address, so nothing "
                f"vouches for it; add `sha256:` (of {name}) or a checksums.lock line for it"
            ]
    return []


def _what(source: str) -> str:
    return "folder holding wnids.txt" if source == "folder" else "tiny-imagenet-200.zip file"


def _zoo_names() -> str:
    return ", ".join(sorted(catalog.ZOO_WEIGHTS))
