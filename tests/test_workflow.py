"""The real workflow end to end: complete tables, rerun only what changed, survive a SIGKILL.

One run of the workflow (``workflow_run`` in conftest.py: the embedded photos, two copies of
EfficientNet-Lite0 under different names, shards of 16) is inspected by every test here.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    REPO,
    SHARD_SIZE,
    SNAKEMAKE,
    result_hashes,
    small_config,
    snakemake,
    write_config,
)

from robustmap import kinds

MODELS = ("lite0", "lite0_fine")
KINDS = kinds.SEARCH_KINDS  # the default config runs every kind of the vocabulary


def test_every_image_has_a_prediction_and_every_correct_one_every_search(workflow_run):
    labels = pd.read_parquet(workflow_run / "results/labels.parquet")
    for model in MODELS:
        predictions = pd.read_parquet(workflow_run / f"results/{model}/predictions.parquet")
        assert predictions["image_id"].tolist() == labels["image_id"].tolist()
        correct = set(predictions.loc[predictions["correct"].fillna(False), "image_id"])
        assert len(correct) >= 16
        epsilons = pd.read_parquet(workflow_run / f"results/{model}/epsilons.parquet")
        assert len(epsilons) == len(KINDS) * len(correct)
        for kind in KINDS:
            searched = epsilons[epsilons["search"] == kind]
            assert set(searched["image_id"]) == correct
        flipped = epsilons[epsilons["status"] == "flipped"]
        assert np.isfinite(flipped["epsilon"]).all() and (flipped["epsilon"] > 0).all()
        compactness = pd.read_parquet(workflow_run / f"results/{model}/compactness.parquet")
        assert len(compactness) == 2 * len(correct)
        located = pd.read_parquet(workflow_run / f"results/{model}/localisation.parquet")
        assert len(located) == 2 * len(correct) and (located["status"] == "ok").all()
    shards = pd.read_parquet(workflow_run / "results/lite0/shards.parquet")
    assert shards["shard"].nunique() == -(-len(shards) // SHARD_SIZE)
    assert (workflow_run / "results/report.html").stat().st_size > 100_000


def test_renamed_copies_of_one_model_give_identical_measurements(workflow_run):
    """Same weights, same images: the two result folders must agree byte for byte."""
    first = result_hashes(workflow_run / "results/lite0", "**/*.parquet")
    second = result_hashes(workflow_run / "results/lite0_fine", "**/*.parquet")
    assert first and first == second


def dry_run_outputs(workdir: Path, *extra: str) -> list[str]:
    run = snakemake(workdir, "--dry-run", *extra, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    text = run.stdout + run.stderr
    if "Nothing to be done" in text:
        return []
    lines = re.findall(r"^\s+output: (.+)$", text, flags=re.MULTILINE)
    return [path for line in lines for path in line.split(", ")]


def test_unchanged_rerun_does_nothing(workflow_run):
    assert dry_run_outputs(workflow_run) == []


def touched_models(outputs: list[str]) -> set[str]:
    folders = {Path(output).parts[1] for output in outputs if output.startswith("results/")}
    return folders - {"tables", "figures"}


def test_editing_one_model_reruns_only_that_model(workflow_run, tmp_path):
    config = small_config()
    config["models"]["lite0_fine"]["gradcam_layer"] = "_blocks.15._project_conv"
    override = tmp_path / "edited.yaml"
    override.write_text(yaml.safe_dump(config))
    outputs = dry_run_outputs(workflow_run, "--configfile", str(override))
    assert outputs, "an edited model must rerun"
    assert touched_models(outputs) == {"lite0_fine"}


def test_adding_a_model_runs_only_the_new_model(workflow_run, tmp_path):
    config = small_config()
    config["models"]["lite1"] = {"zoo": "efficientnet_lite1"}
    override = tmp_path / "added.yaml"
    override.write_text(yaml.safe_dump(config))
    outputs = dry_run_outputs(workflow_run, "--configfile", str(override))
    assert touched_models(outputs) == {"lite1"}
    assert "results/tables/per_model.parquet" in outputs


def search_started(workdir: Path) -> bool:
    logs = workdir.glob("logs/lite0/search/*.log")
    return any("search: 0/" in log.read_text(errors="replace") for log in logs)


# Every output of one model's folder; the cross-model tables and figures are not compared, so the
# killed run and its rerun need not build them.
MODEL_TARGETS = [
    f"results/lite0/{name}"
    for name in (
        "accuracy.json",
        "epsilons.parquet",
        "compactness.parquet",
        "localisation.parquet",
        "panels.png",
    )
]


@pytest.mark.slow
def test_sigkill_mid_search_then_rerun_is_byte_identical(workflow_run, tmp_path):
    workdir = tmp_path / "killed"
    write_config(workdir, small_config({"lite0": {"zoo": "efficientnet_lite0"}}))
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    job = subprocess.Popen(
        [*command, "--cores", "2", *MODEL_TARGETS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not search_started(workdir):
            assert job.poll() is None, "the run ended before any search started"
            assert time.monotonic() < deadline, "no search started within 10 minutes"
            time.sleep(0.2)
        time.sleep(1.0)  # inside the search: the gradient and the grid scan are running
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    killed_searches = len(list(workdir.glob("results/lite0/search/*/*.parquet")))
    assert not (workdir / "results/lite0/epsilons.parquet").exists()

    assert snakemake(workdir, "--unlock").returncode == 0
    rerun = snakemake(workdir, "--cores", "2", "--rerun-incomplete", *MODEL_TARGETS)
    assert rerun.returncode == 0, rerun.stderr[-6000:]

    shards = pd.read_parquet(workdir / "results/lite0/shards.parquet")["shard"].nunique()
    assert killed_searches < len(KINDS) * shards, "the kill came too late to interrupt a search"
    expected = result_hashes(workflow_run, "results/lite0/**/*")
    assert result_hashes(workdir, "results/lite0/**/*") == expected
    for table in workdir.glob("results/**/*.parquet"):
        pd.read_parquet(table)  # whatever the kill left behind, no visible table is partial
