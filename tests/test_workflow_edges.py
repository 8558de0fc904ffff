"""The edges of a real run: a model that gets no image right, and a job that fails.

Each test runs the real workflow on the embedded photos with one small user ``.keras`` model, so
the run takes a minute or two rather than the Lite models' several.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import small_config, snakemake, write_config

from robustmap import kinds

SEARCH_COLUMNS = [
    "image_id",
    "attack",
    "search",
    "epsilon",
    "epsilon_low",
    "adversarial_label",
    "adversarial_name",
    "forward_passes",
    "gradient_passes",
    "status",
    "non_monotone",
]


def always_tench(path: Path) -> Path:
    """A .keras classifier that answers class 0 (tench, not among the embedded photos) always."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 3, name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(
        1000,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(np.eye(1000)[0] * 10.0),
    )(x)
    keras.Model(inputs, logits, name="always_tench").save(path)
    return path


@pytest.fixture(scope="module")
def zero_correct_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("zero_correct")
    model = always_tench(workdir / "tench.keras")
    write_config(workdir, small_config({"never": {"path": str(model)}}))
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-6000:]
    report = snakemake(workdir, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-6000:]
    return workdir


def test_zero_correct_model_gives_empty_well_formed_tables(zero_correct_run):
    results = zero_correct_run / "results"
    accuracy = json.loads((results / "never/accuracy.json").read_text())
    assert (accuracy["correct"], accuracy["top1"]) == (0, 0.0)
    predictions = pd.read_parquet(results / "never/predictions.parquet")
    assert set(predictions["top1_name"].dropna()) == {"tench"}
    epsilons = pd.read_parquet(results / "never/epsilons.parquet")
    assert list(epsilons.columns) == SEARCH_COLUMNS and len(epsilons) == 0
    compactness = pd.read_parquet(results / "never/compactness.parquet")
    assert len(compactness) == 0 and {"image_id", "heatmap", "gini"} <= set(compactness.columns)

    per_model = pd.read_parquet(results / "tables/per_model.parquet")
    assert per_model["search"].tolist() == list(kinds.SEARCH_KINDS)
    assert per_model["top1"].tolist() == [0.0] * len(kinds.SEARCH_KINDS)
    assert per_model["n"].tolist() == [0] * len(kinds.SEARCH_KINDS)
    per_class = pd.read_parquet(results / "tables/per_class.parquet")
    assert (
        len(per_class) > 0 and (per_class["accuracy"] == 0.0).all() and (per_class["n"] == 0).all()
    )


def test_zero_correct_model_gets_figures_panel_and_report(zero_correct_run):
    results = zero_correct_run / "results"
    listed = json.loads((results / "figures/done.json").read_text())["figures"]
    assert all((zero_correct_run / f["png"]["path"]).is_file() for f in listed.values())
    assert (results / "never/panels.png").stat().st_size > 0
    assert (results / "report.html").stat().st_size > 100_000
    per_model_page = (results / "tables/per_model.html").read_text()
    assert per_model_page.count("<td>never</td>") == len(kinds.SEARCH_KINDS)  # a row per search


def test_failing_job_writes_its_traceback_into_its_own_log(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    write_config(tmp_path, small_config({"broken": {"path": str(broken)}}))
    run = snakemake(tmp_path, "--cores", "2")
    assert run.returncode != 0
    log = (tmp_path / "logs/broken/predict.log").read_text()
    assert "CRITICAL robustmap: uncaught exception" in log
    assert "Traceback (most recent call last):" in log
    assert 'predict.py", line' in log  # the job script's own frame, not Snakemake's
    last = log.splitlines()[-1]
    assert last.startswith("ValueError: ") and str(broken) in last
