"""Shared test settings and the one real workflow run that several tests inspect."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RUN_LIMIT_S = 1500
# The embedded photos give 21 correct images: two shards, so merging is tested, and no more
# (each shard is a heatmaps and a search job, each paying TensorFlow start-up and tracing).
SHARD_SIZE = 16


def small_config(models: dict | None = None) -> dict:
    """The default config on the embedded dataset, with two cheap models and two shards."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"] = models or {
        "lite0": {"zoo": "efficientnet_lite0"},
        "lite0_fine": {"zoo": "efficientnet_lite0"},
    }
    config["shard_size"] = SHARD_SIZE
    config["statistics"]["bootstrap"] = 200
    return config


GPU_DEVICE_CASES = [
    ((), None, False),
    (("nvidiactl", "nvidia-uvm", "dri"), None, False),  # driver present, no device
    (("nvidiactl", "nvidia0"), None, True),
    (("nvidia3",), "3", True),
    (("kfd",), None, True),  # AMD ROCm
    (("dxg",), None, True),  # WSL2
    (("nvidia0",), "", False),  # every device hidden
    (("nvidia0",), "-1", False),
]
"""(device nodes, CUDA_VISIBLE_DEVICES or None for unset, whether a GPU is visible)."""


def fake_devices(folder: Path, monkeypatch, nodes, cuda_visible_devices: str | None) -> Path:
    """A fake ``/dev`` in ``folder`` holding ``nodes``, with ``CUDA_VISIBLE_DEVICES`` set."""
    for node in nodes:
        (folder / node).touch()
    if cuda_visible_devices is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible_devices)
    return folder


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command that runs the repository's workflow in ``workdir`` with ``args``."""
    return [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]


def snakemake(
    workdir: Path, *args: str, timeout: float = RUN_LIMIT_S
) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` (which holds its own config.yaml)."""
    return subprocess.run(
        snakemake_command(workdir, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def result_hashes(workdir: Path, pattern: str = "results/**/*") -> dict[str, str]:
    """SHA-256 of every result file (hidden temporaries excluded) by path relative to workdir."""
    return {
        path.relative_to(workdir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(workdir.glob(pattern))
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> Path:
    """The real workflow, run once to completion on the embedded data with two models."""
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, small_config())
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-6000:]
    report = snakemake(workdir, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-6000:]
    return workdir


@pytest.fixture(scope="session")
def clean_copy():
    """Copy a finished run's folder (results and Snakemake metadata) for a test to modify."""

    def copy(source: Path, target: Path) -> Path:
        shutil.copytree(source, target, symlinks=True)
        return target

    return copy
