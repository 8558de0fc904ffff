"""Submit a workflow to a real SLURM cluster and check it against a local run.

Needs a responding cluster, such as the single-node one that ``ci/slurm/setup.sh`` starts as
root (stop it with ``ci/slurm/stop.sh``). Without one the test is skipped; with
``ROBUSTMAP_SLURM=1`` a missing cluster is an error instead, so CI cannot skip it silently.

The real workflow (embedded photos, EfficientNet-Lite0, shards of 16) goes through
``snakemake --profile profiles/slurm-test``: every job is a real ``sbatch`` submission and
Snakemake follows it with ``squeue`` (no accounting database). The test then asks slurmctld
(``scontrol``, which keeps finished jobs for MinJobAge = 600 s) for each job's final state, and
compares the model's result files byte for byte with the local run of ``workflow_run``
(conftest.py), which holds the same model under the same name.
"""

import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, result_hashes, small_config, write_config

# The workflow under test, the jobs SLURM must see for it rule by rule (local rules such as `all`
# are not submitted; the embedded data give 21 correct images, so 2 shards of 16, and one search job
# per shard runs every kind), and which of its outputs must equal the local run's.
WORKFLOW = REPO / "Snakefile"
MODEL = "lite0"
SHARDS = 2
SUBMITTED_JOBS_PER_RULE = {
    "dataset": 1,
    "labels": 1,
    "predict": 1,
    "shards": 1,
    "heatmaps": SHARDS,
    "search": SHARDS,
    "merge_searches": 1,
    "compactness": 1,
    "localisation": 1,
    "aggregate": 1,
    "figures": 1,
    "panels": 1,
    "leaderboard": 1,
    "provenance": 1,
    "findings": 1,
}
COMPARED = ("results/labels.parquet", "results/dataset/manifest.json", f"results/{MODEL}/**/*")
SLURM_PROFILE = REPO / "profiles" / "slurm-test"
# Hard wall-clock limits (SIGKILL) so that a hung scheduler cannot hang CI.
SLURM_RUN_LIMIT_S = 1200
SLURM_QUERY_LIMIT_S = 30
# sinfo retries an unreachable slurmctld for ~10 s; a live one answers in milliseconds.
PROBE_LIMIT_S = 3


def _slurm_query(*command: str, limit_s: int = SLURM_QUERY_LIMIT_S) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=limit_s, check=False)


def _cluster_responds() -> bool:
    """True when ``sinfo`` lists at least one responding node."""
    if shutil.which("sinfo") is None:
        return False
    try:
        nodes = _slurm_query(
            "sinfo", "--noheader", "--responding", "--format=%n %t", limit_s=PROBE_LIMIT_S
        )
    except subprocess.TimeoutExpired:
        return False
    return nodes.returncode == 0 and bool(nodes.stdout.strip())


@pytest.fixture(scope="module")
def cluster() -> None:
    if _cluster_responds():
        return
    if os.environ.get("ROBUSTMAP_SLURM") == "1":
        pytest.fail("ROBUSTMAP_SLURM=1 but no SLURM node responds; run ci/slurm/setup.sh")
    pytest.skip("no responding SLURM cluster (start one with ci/slurm/setup.sh as root)")


def _snakemake(workdir: Path, *options: str, limit_s: int) -> subprocess.CompletedProcess:
    """Run Snakemake on ``WORKFLOW`` in ``workdir`` under ``timeout -s KILL``."""
    command = [
        "timeout", "-s", "KILL", str(limit_s),
        sys.executable, "-m", "snakemake",
        "--snakefile", str(WORKFLOW), "--directory", str(workdir), *options,
    ]  # fmt: skip
    # Jobs inherit this environment (sbatch --export=ALL): put the venv's tools first.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def _job_fields(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict, e.g. {"JobState": "COMPLETED", "ExitCode": "0:0"}."""
    shown = _slurm_query("scontrol", "--oneliner", "show", "job", job_id)
    assert shown.returncode == 0, f"scontrol lost job {job_id}: {shown.stderr}"
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", shown.stdout))


def _file_digests(workdir: Path) -> dict[str, str]:
    """SHA-256 of each compared result file, keyed by its path below ``workdir``."""
    return {
        path: digest
        for pattern in COMPARED
        for path, digest in result_hashes(workdir, pattern).items()
    }


@pytest.mark.slow
def test_slurm_run_completes_every_job_and_matches_a_local_run(cluster, workflow_run, tmp_path):
    slurm_dir = tmp_path / "slurm"
    write_config(slurm_dir, small_config({MODEL: {"zoo": "efficientnet_lite0"}}))
    run_id = None
    try:
        submitted = _snakemake(
            slurm_dir, "--profile", str(SLURM_PROFILE), limit_s=SLURM_RUN_LIMIT_S
        )
        log = submitted.stdout + submitted.stderr
        match = re.search(r"SLURM run ID: (\S+)", log)
        run_id = match and match.group(1)
        assert submitted.returncode == 0, log[-5000:]

        # The job ids Snakemake reports must be exactly the jobs SLURM holds under the run's name.
        job_ids = sorted(re.findall(r"submitted with SLURM jobid (\d+)", log), key=int)
        by_name = _slurm_query(
            "squeue", "--noheader", "--states=all", f"--name={run_id}", "--format=%i"
        )
        assert sorted(by_name.stdout.split(), key=int) == job_ids

        jobs = {job_id: _job_fields(job_id) for job_id in job_ids}
        for job_id, fields in jobs.items():
            print(
                f"SLURM job {job_id}: {fields['Comment']} {fields['JobState']} "
                f"exit={fields['ExitCode']} TRES={fields['TRES']}"
            )
        assert {f["JobState"] for f in jobs.values()} == {"COMPLETED"}
        assert {f["ExitCode"] for f in jobs.values()} == {"0:0"}
        # The GPU rule ran, and without a GPU request (the test node has none).
        assert not [f["TRES"] for f in jobs.values() if "gpu" in f["TRES"]]
        rules = collections.Counter(
            re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", f["Comment"]).group(1)
            for f in jobs.values()
        )
        assert rules == SUBMITTED_JOBS_PER_RULE
    finally:
        if run_id:
            _slurm_query("scancel", f"--name={run_id}")

    slurm_digests = _file_digests(slurm_dir)
    local_digests = _file_digests(workflow_run)
    for name, digest in slurm_digests.items():
        print(f"sha256 {digest} {name}")
    assert slurm_digests, "the SLURM run wrote no results"
    assert slurm_digests == local_digests
