"""The run's provenance record: its keys, its hashes, its bytes, and no TensorFlow to write it."""

import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

from robustmap import landing, provenance, tables

KEYS = {"software", "git_commit", "machine", "weights", "dataset", "config"}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run_inputs(tmp_path):
    """A manifest, a label table, a local weights file and a config naming them."""
    manifest = tmp_path / "manifest.json"
    files = {"wnids.txt": [10, "a" * 64], "val/images/val_0.JPEG": [20, "b" * 64]}
    tables.write_json(manifest, {"root": str(tmp_path), "source": "zip", "files": files})
    labels = tmp_path / "labels.parquet"
    tables.write_parquet(labels, pd.DataFrame({"image_id": ["val_0"], "wnid": ["n01"]}))
    weights = tmp_path / "mine.h5"
    weights.write_bytes(b"not really hdf5")
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(b"PK not really a zip")
    config = {
        "dataset": {"source": "zip", "path": str(archive)},
        "models": {
            "lite0": {"zoo": "efficientnet_lite0"},
            "mine": {"zoo": "mobilenet_v2", "weights": str(weights)},
        },
        "statistics": {"bootstrap": 10, "seed": 0},
    }
    return {
        "manifest": manifest,
        "labels": labels,
        "weights": weights,
        "archive": archive,
        "config": config,
        "files": files,
    }


def record_of(run_inputs):
    environment = provenance.environment(REPO)
    return provenance.provenance(
        environment,
        run_inputs["config"],
        manifest=run_inputs["manifest"],
        labels=run_inputs["labels"],
    )


def test_the_record_has_every_key_and_the_files_hashes(run_inputs):
    record = record_of(run_inputs)
    assert set(record) == KEYS
    software = record["software"]
    assert software["python"] == ".".join(map(str, sys.version_info[:3]))
    for name in ("tensorflow", "keras", "snakemake", "robustmap"):
        assert software[name], name
    assert isinstance(software["inference_runtimes"], dict)
    assert set(record["machine"]) == {"platform", "architecture", "cpu", "cpus"}
    mine = record["weights"]["mine"]
    assert mine == {"file": "mine.h5", "sha256": sha256(run_inputs["weights"])}
    packaged = provenance.weight_file({"zoo": "efficientnet_lite0"})
    assert packaged.suffix == ".pth" and packaged.is_file()
    assert record["weights"]["lite0"] == {"file": packaged.name, "sha256": sha256(packaged)}
    # the rule's inputs: editing a configured or packaged weight file reruns the job
    expected = sorted([str(packaged), str(run_inputs["weights"])])
    assert provenance.static_weight_files(run_inputs["config"]["models"]) == expected
    dataset = record["dataset"]
    listing = json.dumps(run_inputs["files"], sort_keys=True, separators=(",", ":")).encode()
    assert dataset == {
        "source": "zip",
        "archive_sha256": sha256(run_inputs["archive"]),
        "files_sha256": hashlib.sha256(listing).hexdigest(),
        "files": 2,
        "label_table_sha256": sha256(run_inputs["labels"]),
    }
    assert record["config"] == run_inputs["config"]


def test_two_records_of_the_same_inputs_are_byte_identical(run_inputs, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    tables.write_json(first, record_of(run_inputs))
    tables.write_json(second, record_of(run_inputs))
    assert first.read_bytes() == second.read_bytes()


def test_git_commit_of_a_checkout_and_of_a_plain_folder(tmp_path):
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert provenance.git_commit(REPO) == expected
    assert provenance.git_commit(tmp_path) is None


def test_cpu_model_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: sse\n")
    assert provenance.cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"


def test_a_download_not_yet_cached_has_no_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMAP_CACHE", str(tmp_path))
    assert provenance.weight_file({"zoo": "resnet50"}) is None
    assert provenance.weights({"r": {"zoo": "resnet50"}}) == {"r": {"file": None, "sha256": None}}
    assert provenance.static_weight_files({"r": {"zoo": "resnet50"}}) == []


def test_the_environment_is_read_without_tensorflow():
    program = (
        "import json, sys; from robustmap import provenance; "
        f"provenance.environment({str(REPO)!r}); "
        "print(json.dumps([m for m in ('tensorflow', 'keras') if m in sys.modules]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


def test_the_provenance_section_names_every_weight_file(run_inputs):
    record = record_of(run_inputs)
    text = landing.provenance_section(record)
    assert text.startswith("Provenance\n----------\n")
    assert sha256(run_inputs["weights"]) in text
    assert f":Git commit: {record['git_commit'] or 'not a git checkout'}" in text
    assert landing.config_digest(record["config"]) in text


@pytest.mark.slow
def test_the_default_runs_record_matches_its_files(workflow_run):
    record = json.loads((workflow_run / "results" / "provenance.json").read_text())
    assert set(record) == KEYS
    labels = workflow_run / "results" / "labels.parquet"
    assert record["dataset"]["label_table_sha256"] == sha256(labels)
    for model, entry in record["weights"].items():
        path = provenance.weight_file(record["config"]["models"][model])
        assert entry == {"file": path.name, "sha256": sha256(path)}
