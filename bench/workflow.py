"""Workflow benchmarks: the embedded default, a generated N-image dataset, a reference stand-in.

``--workflow``: runs the repository's Snakefile on a copy of ``config.yaml`` (the embedded
photos; ``--models`` keeps only the named models) in a fresh temporary directory and prints the
wall time, a per-rule breakdown and the peak memory.

* Per-rule times come from Snakemake's own metadata records (``.snakemake/metadata``, one JSON
  file per output): Snakemake writes each output's ``incomplete`` marker when its job starts and
  records that marker's mtime as ``starttime`` and the output's mtime as ``endtime`` when the
  job finishes, together with the rule name and a per-job hash. Grouping records by (rule, job
  hash) gives one interval per job, with no change to the rules. ``--stats`` is gone from
  Snakemake 8+ and per-rule ``benchmark:`` directives would mean editing every rule; parsing the
  human-readable log would tie the bench to its wording. The job count is checked against the
  "N of N steps" line of Snakemake's own log.
* Peak memory: the Snakemake process tree is polled with psutil (a Snakemake dependency) every
  0.2 s for the peak *sum* of resident set sizes (concurrent jobs add up) and the largest single
  process. Polling can miss a peak shorter than 0.2 s; ``getrusage(RUSAGE_CHILDREN)`` would not,
  but it keeps the maximum over every child this process ever had, so two runs in one bench
  (``--baseline``) could not be told apart.

``--scale N``: the same run on a generated Tiny-ImageNet-layout dataset of N 64x64 JPEGs over
200 wnids (``bench/scale_dataset.py``: seeded views of the photos that ship in wheels, about 70 %
labelled with the first selected model's own top-1 so they are classified correctly and get
searched, the rest misclassified; a few grayscale and CMYK files; an object box per image).
The labelling runs that model through ``robustmap.models`` and ``robustmap.predict`` as the
``predict`` rule does, in this process (a child's peak would enter ``RUSAGE_CHILDREN``), before
the timed run; the config is ``config.yaml`` with ``dataset: {source: folder, path: ...}`` and
the selected models. Printed: the dataset's make-up and generation time, the wall time,
per-rule job-seconds and peak memory as for ``--workflow``, then per model and search kind the
forward passes per image per search (median, range, mean over the rows of
``results/<model>/epsilons.parquet``; the shared clean pass counted in each search, as
``forward_passes`` records it). The same N and ``--seed`` give byte-identical JPEGs, and image
``i`` does not depend on N.

``--keep`` keeps the run directory (its path is printed); ``--workdir PATH`` runs in PATH
(absent or empty) instead of a temporary folder and keeps it.

``--baseline REV`` (with ``--workflow`` or ``--scale``): before and after in one bench. The
Snakefile, rules, scripts, package and ``config.yaml`` of git revision REV are exported into the
run directory (``git archive``, extracted with tarfile's ``data`` filter) and run first, with
``PYTHONPATH`` pointing there so its jobs import REV's ``robustmap``; then this checkout runs on
the same dataset (``--scale``: generated once, labelled by this checkout's code) with the same
models, each with its own ``config.yaml`` (so each runs its own default search kinds). Both
reports print, then one table of this checkout over REV: wall, peak memory, job-seconds per rule
and median passes per model and search (FGSM's forward passes, PGD's gradient passes).
``--without-pgd`` adds a last run of this checkout with ``search.pgd.kinds: []`` to the same
table, so the cost of PGD and of everything else read side by side in one bench.

``--reference``: a stand-in for the study's workload (10,000 Tiny-ImageNet-sized images, all
three searches). ``--images`` seeded synthetic 64x64 images (a smooth random background with one
soft-edged, striped ellipse, so Grad-CAM has an object to find), MobileNetV2 with random weights
built through the zoo's own wrapper (``robustmap.models.load("mobilenet_v2", weights=...)`` on a
file of seeded random weights, so resize, normalisation and Grad-CAM layer are the zoo's), and
labels = the model's own top-1, so every image starts correctly classified. The stages are the
library calls the workflow's jobs make: predictions, Grad-CAM and saliency, the object and
background weights, and the uniform, object and background searches (settings from
``config.yaml``). Untouched random initialisation leaves MobileNetV2's logits at ~1e-12 (every
image the same class, margins at float32 round-off), so the batch-norm statistics are set once
from 64 separate calibration images (one training-mode call with momentum 0); every kernel
keeps its random value.

Each stage is timed three times: on one batch (tracing), on the same batch again, and on all
images. The steady cost per image is (all - second) / (N - batch), whatever the library caches
between calls, and the projection for the 10,000-image workload is the measured call plus the
remaining images at that cost. The searches' forward passes per image are printed so that the
projection can be rescaled to a real model's pass count.

    python bench/workflow.py --workflow                       # embedded default, all models
    python bench/workflow.py --workflow --models efficientnet_lite0
    python bench/workflow.py --scale 1000 --models efficientnet_lite0 [--workdir PATH]
    python bench/workflow.py --scale 1000 --models efficientnet_lite0 --baseline 21691b9
    python bench/workflow.py --reference --images 256         # CPU
    python bench/workflow.py --reference --images 10000       # GPU: the full reference workload
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import yaml
from defaults import REPO, workflow_config  # bench/defaults.py

REFERENCE_IMAGES = 10_000
TARGET_SECONDS = 120.0  # issue 8: the full reference workload in <= 2 minutes on one H100
IMAGE_SIZE = 64
CALIBRATION_IMAGES = 64
POLL_SECONDS = 0.2


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.workflow:
        workflow_benchmark(args)
    if args.scale:
        scale_benchmark(args)
    if args.reference:
        reference_benchmark(args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflow", action="store_true", help="time the embedded default")
    parser.add_argument("--reference", action="store_true", help="time the reference stand-in")
    parser.add_argument(
        "--scale", type=int, metavar="N", help="time the workflow on N generated 64x64 views"
    )
    parser.add_argument(
        "--models", nargs="+", help="workflow, scale: keep only these config models"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="workflow: --cores")
    parser.add_argument(
        "--model-slots",
        type=int,
        help="workflow, scale: --resources model_slots=N; default: the workflow profile's 2 "
        "(profiles/default), as a user gets it: one model job at a time with a GPU, two without",
    )
    parser.add_argument(
        "--keep", action="store_true", help="workflow, scale: keep the run directory"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="workflow, scale: run here (absent or empty) instead of a temporary folder; kept",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="workflow, scale: run git revision REV first on the same data and print ratios",
    )
    parser.add_argument(
        "--without-pgd",
        action="store_true",
        help="workflow, scale: also run this checkout with search.pgd.kinds [] (last)",
    )
    parser.add_argument("--images", type=int, default=REFERENCE_IMAGES, help="reference: images")
    parser.add_argument(
        "--batch-size", type=int, help="reference: every stage's batch; default 256 GPU, 64 CPU"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="reference: images and weights; scale: the views"
    )
    parser.add_argument(
        "--no-determinism",
        action="store_true",
        help="reference: skip TensorFlow op determinism (on by default, as in workflow jobs)",
    )
    args = parser.parse_args()
    if not (args.workflow or args.reference or args.scale):
        parser.error("choose --workflow, --reference, --scale N or several")
    if args.scale is not None and args.scale < 1:
        parser.error("--scale: N must be at least 1")
    if args.baseline and not (args.workflow or args.scale):
        parser.error("--baseline: for --workflow or --scale")
    if args.workflow and args.scale and args.workdir:
        parser.error("--workdir: one run directory, so not both --workflow and --scale")
    return args


# ---- shared ------------------------------------------------------------------------------------


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns right-aligned except the first, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([row[0].ljust(widths[0]), *rest])

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"CPU ({os.cpu_count()} cores)"


# ---- --workflow --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobTime:
    rule: str
    start: float
    end: float


@dataclass(frozen=True)
class Checkout:
    """A source tree to run: its Snakefile, package and ``config.yaml``."""

    label: str
    root: Path
    imports_from_root: bool  # jobs must import this tree's robustmap, not the installed one
    without_pgd: bool = False  # run with search.pgd.kinds [] (--without-pgd)


@dataclass(frozen=True)
class RunMeasures:
    """What one workflow run cost, for the side-by-side table of ``--baseline``."""

    seconds: float
    peak_tree: int
    largest: int
    job_seconds: dict[str, float]
    median_passes: dict[str, float]
    failed: bool = False  # snakemake stopped on an error: the measures cover the jobs before it


def workflow_benchmark(args: argparse.Namespace) -> None:
    workdir = run_directory(args)
    try:
        run_checkouts(args, workdir)
    finally:
        release(workdir, args)


def run_checkouts(args: argparse.Namespace, workdir: Path, dataset: dict | None = None) -> None:
    """Run each checkout (``--baseline`` first) on its own config, ``dataset`` replacing the
    config's when given, then print the side-by-side table."""
    measured = {}
    for checkout in checkouts(args, workdir):
        config = selected_config(checkout.root, args)
        if checkout.without_pgd:
            config["search"]["pgd"]["kinds"] = []
        if dataset is not None:
            config["dataset"] = {
                "image_size": config["dataset"].get("image_size", IMAGE_SIZE),
                **dataset,
            }
        several = args.baseline or args.without_pgd
        rundir = workdir / re.sub(r"[^\w.-]+", "-", checkout.label) if several else workdir
        measured[checkout.label] = run_workflow(config, rundir, args, checkout)
    report_comparison(measured)
    failed = [label for label, run in measured.items() if run.failed]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (see each run's bench-snakemake.log)")


def checkouts(args: argparse.Namespace, workdir: Path) -> list[Checkout]:
    """This checkout, preceded by ``--baseline``'s revision exported into ``workdir`` and
    followed by this checkout without PGD (``--without-pgd``)."""
    current = [Checkout("current", REPO, imports_from_root=False)]
    if args.without_pgd:
        current.append(Checkout("current, PGD off", REPO, False, without_pgd=True))
    if not args.baseline:
        return current
    root = workdir / "baseline-source"
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", args.baseline],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {args.baseline}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return [Checkout(f"baseline {args.baseline}", root, imports_from_root=True), *current]


def selected_config(root: Path, args: argparse.Namespace) -> dict:
    """A copy of ``root``'s config.yaml with only the ``--models`` models (in that order)."""
    config = yaml.safe_load((root / "config.yaml").read_text())
    if args.models:
        unknown = sorted(set(args.models) - set(config["models"]))
        if unknown:
            raise SystemExit(f"--models: not in {root / 'config.yaml'}: {', '.join(unknown)}")
        config["models"] = {name: config["models"][name] for name in args.models}
    return config


def run_directory(args: argparse.Namespace) -> Path:
    if args.workdir is None:
        return Path(tempfile.mkdtemp(prefix="robustmap-bench-"))
    workdir = args.workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"--workdir: {workdir} is not empty")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def release(workdir: Path, args: argparse.Namespace) -> None:
    """Keep the run directory when asked to (``--keep``, ``--workdir``), else delete it."""
    if args.keep or args.workdir is not None:
        print(f"run directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def run_workflow(
    config: dict, workdir: Path, args: argparse.Namespace, checkout: Checkout
) -> RunMeasures:
    """Run ``checkout``'s Snakefile on ``config`` in ``workdir``; print and return its costs."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(checkout.root / "Snakefile"),
        "--directory", str(workdir), "--cores", str(args.cores),
    ]  # fmt: skip
    if args.model_slots is not None:
        command += ["--resources", f"model_slots={args.model_slots}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if checkout.imports_from_root:
        inherited = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
        env["PYTHONPATH"] = os.pathsep.join([str(checkout.root), *inherited])
    print(
        f"\n== {checkout.label}: models {', '.join(sorted(config['models']))}; "
        f"{' '.join(command[1:])}",
        flush=True,
    )
    log_path = workdir / "bench-snakemake.log"
    # Run from the checkout: Snakemake takes profiles/default from the working directory before
    # the Snakefile's folder, and each revision must run under its own workflow profile.
    seconds, peak_tree, largest, returncode = run_monitored(command, log_path, env, checkout.root)
    log_text = log_path.read_text()
    if returncode != 0:
        # Report what ran before the error: a baseline revision may stop on data it predates
        # (before issue 13, a box-less annotation line was malformed and aggregate failed on it).
        print(f"snakemake failed ({returncode}); measures below end there:\n{log_text[-3000:]}")
    jobs = job_times(workdir)
    report_workflow(jobs, seconds, log_text, peak_tree, largest)
    job_seconds: dict[str, float] = Counter()
    for job in jobs:
        job_seconds[job.rule] += job.end - job.start
    median_passes = report_passes(workdir, list(config["models"]))
    return RunMeasures(
        seconds, peak_tree, largest, dict(job_seconds), median_passes, failed=returncode != 0
    )


def scale_benchmark(args: argparse.Namespace) -> None:
    """The workflow on ``--scale`` generated views labelled by the first selected model."""
    import scale_dataset  # beside this file; imported here so --reference needs no PIL work

    workdir = run_directory(args)
    try:
        root = workdir / "tiny-imagenet-200"
        config = selected_config(REPO, args)
        first = next(iter(config["models"]))
        started = time.perf_counter()
        # Labelling runs the model in this process, before the timed runs, so that it enters
        # neither run's time nor its polled memory.
        top1 = scale_dataset.model_top1(
            config["models"][first], batch_size=config["predict"]["batch_size"]
        )
        summary = scale_dataset.build(root, args.scale, seed=args.seed, top1=top1)
        print(
            f"dataset: {summary.images} {scale_dataset.SIZE}x{scale_dataset.SIZE} views (seed "
            f"{args.seed}) in {time.perf_counter() - started:.1f} s under {root}; "
            f"{summary.own_label} labelled with {first}'s top-1 ({summary.top1_classes} "
            f"classes), {summary.other_label} with another wnid; {summary.wnids} wnids; modes "
            + ", ".join(f"{mode} {count}" for mode, count in summary.modes.items()),
            flush=True,  # the runs that follow take minutes
        )
        run_checkouts(args, workdir, dataset={"source": "folder", "path": str(root)})
    finally:
        release(workdir, args)


def report_passes(workdir: Path, models: list[str]) -> dict[str, float]:
    """Print the passes per image per search by model and search (FGSM's forward passes, PGD's
    gradient passes); return the medians."""
    import pandas as pd

    from robustmap.schema import ATTACK_COLUMN, FGSM, Search

    rows, medians = [], {}
    for model in models:
        if not (workdir / "results" / model / "epsilons.parquet").exists():
            continue  # the run failed before this model's searches were merged
        accuracy = json.loads((workdir / "results" / model / "accuracy.json").read_text())
        table = pd.read_parquet(workdir / "results" / model / "epsilons.parquet")
        if ATTACK_COLUMN not in table:  # a revision before PGD: FGSM rows only
            table = table.assign(**{ATTACK_COLUMN: FGSM})
        fgsm = table[table[ATTACK_COLUMN] == FGSM]
        groups = [
            *table.groupby([ATTACK_COLUMN, "search"], sort=False),
            ((FGSM, "all kinds"), fgsm),
        ]
        for (attack, kind), searches in groups:
            name = Search(attack, kind).name
            column = "forward_passes" if attack == FGSM else "gradient_passes"
            passes = searches[column].dropna().to_numpy()
            flipped = int((searches["status"] == "flipped").sum())
            if len(passes):
                medians[f"{model} {name}"] = float(np.median(passes))
            rows.append(
                [
                    f"{model} {name}",
                    column.split("_")[0],
                    f"{accuracy['correct']}/{accuracy['scored']}",
                    str(len(searches)),
                    str(flipped),
                    f"{np.median(passes):g}" if len(passes) else "",
                    f"{passes.min()}-{passes.max()}" if len(passes) else "",
                    f"{passes.mean():.2f}" if len(passes) else "",
                ]
            )
    print("passes per image per search (clean pass included; epsilons.parquet):")
    header = ["model search", "passes", "correct", "searches", "flipped", "median", "range"]
    print_table([*header, "mean"], rows)
    return medians


def report_comparison(measured: dict[str, RunMeasures]) -> None:
    """With several runs: each measure of every run and its ratio to the first run's."""
    if len(measured) < 2:
        return
    (first_label, first), *others = measured.items()
    runs = list(measured.values())

    def row(name: str, value: Callable[[RunMeasures], float | None]) -> list[str]:
        values = [value(run) for run in runs]
        shown = [f"{v:.2f}" if v is not None else "-" for v in values]
        ratios = [
            f"{v / values[0]:.2f}" if values[0] and v is not None else "-" for v in values[1:]
        ]
        return [name, *shown, *ratios]

    gib = 2**30
    rows = [
        row("wall s", lambda run: run.seconds),
        row("peak memory, process tree GiB", lambda run: run.peak_tree / gib),
        row("peak memory, largest process GiB", lambda run: run.largest / gib),
    ]
    rules = list(dict.fromkeys(rule for run in runs for rule in run.job_seconds))
    rows += [row(f"job-s {r}", lambda run, r=r: run.job_seconds.get(r)) for r in rules]
    rows.append(row("job-s all jobs", lambda run: sum(run.job_seconds.values())))
    searches = list(dict.fromkeys(s for run in runs for s in run.median_passes))
    rows += [row(f"median passes {s}", lambda run, s=s: run.median_passes.get(s)) for s in searches]
    labels = [f"{label} (FAILED)" if run.failed else label for label, run in measured.items()]
    ratios = [f"{label} / {first_label}" for label, _ in others]
    print("\n== side by side (same machine, same data, in this order):")
    print_table(["measure", *labels, *ratios], rows)


def run_monitored(
    command: list[str], log_path: Path, env: dict[str, str], cwd: Path
) -> tuple[float, int, int, int]:
    """(wall s, peak summed RSS of the process tree, largest single RSS (bytes), return code)."""
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        peaks = [0, 0]
        poller = threading.Thread(target=poll_tree_rss, args=(process, peaks), daemon=True)
        poller.start()
        returncode = process.wait()
        seconds = time.perf_counter() - start
        poller.join()
    return seconds, peaks[0], peaks[1], returncode


def poll_tree_rss(process: subprocess.Popen, peaks: list[int]) -> None:
    """Keep ``peaks`` at the largest RSS sum over ``process``'s tree and largest single RSS."""
    try:
        root = psutil.Process(process.pid)
    except psutil.NoSuchProcess:
        return
    while process.poll() is None:
        sizes = []
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in members:
            try:
                sizes.append(member.memory_info().rss)
            except psutil.NoSuchProcess:
                pass  # finished between the listing and the reading
        peaks[0] = max(peaks[0], sum(sizes))
        peaks[1] = max(peaks[1], *sizes, 0)
        time.sleep(POLL_SECONDS)


def job_times(workdir: Path) -> list[JobTime]:
    """One interval per job, from Snakemake's metadata records of the run's outputs."""
    jobs: dict[tuple[str, int], JobTime] = {}
    for path in sorted((workdir / ".snakemake" / "metadata").iterdir()):
        record = json.loads(path.read_text())
        key = (record["rule"], record["job_hash"])
        seen = jobs.get(key)
        start, end = record["starttime"], record["endtime"]
        if seen is not None:
            start, end = min(start, seen.start), max(end, seen.end)
        jobs[key] = JobTime(record["rule"], start, end)
    return sorted(jobs.values(), key=lambda job: job.start)


def report_workflow(
    jobs: list[JobTime], seconds: float, log_text: str, peak_tree: int, largest: int
) -> None:
    steps = re.findall(r"(\d+) of (\d+) steps", log_text)
    done = f"{steps[-1][0]} of {steps[-1][1]}" if steps else "?"
    finished = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log_text))
    recorded = Counter(job.rule for job in jobs)
    agree = all(finished[rule] == count for rule, count in recorded.items())
    outputless = sorted(set(finished) - set(recorded))
    first = min(job.start for job in jobs)
    rows = []
    for rule in sorted({job.rule for job in jobs}, key=lambda r: min_start(jobs, r)):
        durations = [job.end - job.start for job in jobs if job.rule == rule]
        rows.append(
            [
                rule,
                str(len(durations)),
                f"{sum(durations):.1f}",
                f"{np.mean(durations):.1f}",
                f"{max(durations):.1f}",
                f"{min_start(jobs, rule) - first:.1f}",
            ]
        )
    busy = sum(job.end - job.start for job in jobs)
    rows.append(["all jobs", str(len(jobs)), f"{busy:.1f}", "", "", ""])
    print_table(["rule", "jobs", "job-s sum", "mean s", "max s", "first start s"], rows)
    print(
        f"wall {seconds:.1f} s (Snakemake start-up and DAG included); mean jobs running "
        f"{busy / seconds:.2f}\njobs with outputs {len(jobs)}; Snakemake log: {done} steps, "
        f"finished jobs per rule {'agree' if agree else 'DISAGREE'} with the records "
        f"(rules without outputs: {', '.join(outputless) or 'none'})\n"
        f"peak memory: process tree {peak_tree / 2**30:.2f} GiB (sum of RSS, polled every "
        f"{POLL_SECONDS} s); largest single process {largest / 2**30:.2f} GiB"
    )


def min_start(jobs: list[JobTime], rule: str) -> float:
    return min(job.start for job in jobs if job.rule == rule)


# ---- --reference -------------------------------------------------------------------------------


@dataclass
class StageTime:
    """Timings of one stage: first call and repeat on one batch, then all N images."""

    name: str
    images: int
    batch: int
    first: float
    repeat: float
    full: float
    passes_per_image: float | None = None

    @property
    def seconds_per_image(self) -> float:
        """Steady marginal cost: one-time work (tracing, model wrapping) cancels out."""
        if self.images <= self.batch:
            return self.full / self.images
        return max(self.full - self.repeat, 0.0) / (self.images - self.batch)

    @property
    def first_call_overhead(self) -> float:
        """What the first call on one batch costs beyond its images (tracing, wrapping)."""
        return max(self.first - self.batch * self.seconds_per_image, 0.0)

    def projected(self, images: int) -> float:
        return self.full + (images - self.images) * self.seconds_per_image


def reference_benchmark(args: argparse.Namespace) -> None:
    import keras
    import tensorflow as tf

    from robustmap import heatmaps, models, predict, runtime, search

    if args.no_determinism:
        keras.utils.set_random_seed(args.seed)
    else:
        runtime.setup(None, seed=args.seed)  # as every workflow job: seeded, deterministic ops
    gpus = tf.config.list_physical_devices("GPU")
    device = (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        if gpus
        else cpu_name()
    )
    batch = args.batch_size or (256 if gpus else 64)
    config = workflow_config()
    options, heat = config["search"], config["heatmaps"]

    images = synthetic_images(args.images, seed=args.seed)
    model = random_mobilenet_v2(
        synthetic_images(CALIBRATION_IMAGES, seed=args.seed + 1), seed=args.seed, keras=keras
    )
    layer = models.gradcam_layer(model)
    print(
        f"reference stand-in: {len(images)} synthetic {IMAGE_SIZE}x{IMAGE_SIZE} images, "
        f"MobileNetV2 (random weights, zoo wrapper, Grad-CAM layer {layer}); batch {batch}; "
        f"eps_max {options['eps_max']}, tol {options['tol']}, object mask "
        f"{heat['object_mask']}/{heat['threshold']}\n"
        f"device: {device}; TensorFlow {tf.__version__}; "
        f"op determinism {'off' if args.no_determinism else 'on'}"
    )

    stages: list[StageTime] = []
    logits = timed_stage(
        stages, "predict", images, batch,
        lambda n: predict.logits_in_batches(model, images[:n], batch_size=batch),
    )  # fmt: skip
    labels = logits.argmax(axis=1)
    cam = timed_stage(
        stages, "gradcam", images, batch,
        lambda n: heatmaps.gradcam(model, images[:n], labels[:n], layer=layer, batch_size=batch),
    )  # fmt: skip
    timed_stage(
        stages, "saliency", images, batch,
        lambda n: heatmaps.saliency(
            model, images[:n], labels[:n], smoothgrad_samples=heat["smoothgrad_samples"],
            noise_sigma=heat["smoothgrad_sigma"], batch_size=batch,
        ),
    )  # fmt: skip
    object_w = timed_stage(
        stages, "object/background weights", images, batch,
        lambda n: heatmaps.object_weights(
            cam[:n], mode=heat["object_mask"], threshold=heat["threshold"]
        ),
    )  # fmt: skip
    weights = {
        "uniform": None,
        "object": object_w,
        "background": heatmaps.background_weights(object_w),
    }

    def run_searches(n: int) -> dict[str, search.SearchResult]:
        """The three kinds in one call, sharing each image's clean pass, as the search rule."""
        return search.minimal_epsilons(
            model, images[:n], labels[:n],
            weights={kind: None if w is None else w[:n] for kind, w in weights.items()},
            eps_max=options["eps_max"], tol=options["tol"], batch_size=batch,
        )  # fmt: skip

    results = timed_stage(stages, "search (3 kinds)", images, batch, run_searches)
    # Per image, over the three searches (the shared clean pass counted in each).
    stages[-1].passes_per_image = float(sum(r.forward_passes.mean() for r in results.values()))
    statuses = {
        kind: dict(zip(*np.unique(r.status, return_counts=True), strict=True))
        for kind, r in results.items()
    }
    report_reference(stages, statuses)


def timed_stage(
    stages: list[StageTime], name: str, images: np.ndarray, batch: int, run: Callable[[int], object]
):
    """Time ``run(n)`` on one batch twice, then on all images; keep the last result."""
    first_n = min(batch, len(images))
    first = seconds_of(run, first_n)[1]
    repeat = seconds_of(run, first_n)[1]
    result, full = seconds_of(run, len(images))
    stages.append(StageTime(name, len(images), first_n, first, repeat, full))
    return result


def seconds_of(function: Callable[[int], object], n: int) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(n)
    return result, time.perf_counter() - start


def report_reference(stages: list[StageTime], statuses: dict[str, dict[str, int]]) -> None:
    rows = []
    for stage in stages:
        rate = 1.0 / stage.seconds_per_image if stage.seconds_per_image > 0 else float("inf")
        passes = stage.passes_per_image
        rows.append(
            [
                stage.name,
                f"{stage.full:.1f}",
                f"{stage.images / stage.full:.1f}",
                f"{rate:.1f}",
                f"{stage.first_call_overhead:.1f}",
                "" if passes is None else f"{passes:.1f}",
                "" if passes is None else f"{passes * rate:.0f}",
                f"{stage.projected(REFERENCE_IMAGES):.1f}",
            ]
        )
    total = sum(stage.projected(REFERENCE_IMAGES) for stage in stages)
    measured = sum(stage.full for stage in stages)
    rows.append(["total", f"{measured:.1f}", "", "", "", "", "", f"{total:.1f}"])
    n = stages[0].images
    print_table(
        [
            "stage",
            f"s ({n} img)",
            "img/s",
            "img/s steady",
            "1st-call extra s",
            "passes/img",
            "passes/s",
            f"projected s ({REFERENCE_IMAGES})",
        ],
        rows,
    )
    for kind, counts in statuses.items():
        print(f"search {kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(
        f"full reference workload ({REFERENCE_IMAGES} images, all stages): {total:.1f} s "
        f"projected on this device (issue 8 target: <= {TARGET_SECONDS:.0f} s on one H100)"
    )


def synthetic_images(count: int, *, seed: int) -> np.ndarray:
    """Float32 [count, 64, 64, 3] in [0, 1]; image i depends only on (seed, i).

    A smooth background (bicubic upsampling of a 4x4 random colour field around a random mean)
    under one soft-edged ellipse of random size, position, colour and stripe texture.
    """
    from scipy import ndimage

    size = IMAGE_SIZE
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((count, size, size, 3), np.float32)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        coarse = rng.random((4, 4, 3), dtype=np.float32)
        field = ndimage.zoom(coarse, (size / 4, size / 4, 1), order=3, mode="nearest")
        background = rng.uniform(0.2, 0.8, 3) + 0.5 * (field - 0.5)
        centre_row, centre_col = rng.uniform(0.25, 0.75, 2) * size
        radius_row, radius_col = rng.uniform(0.12, 0.3, 2) * size
        angle = rng.uniform(0.0, np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        u = ((cols - centre_col) * cos + (rows - centre_row) * sin) / radius_col
        v = (-(cols - centre_col) * sin + (rows - centre_row) * cos) / radius_row
        inside = 1.0 / (1.0 + np.exp(8.0 * (np.sqrt(u * u + v * v) - 1.0)))  # soft edge
        stripes = 0.5 + 0.5 * np.sin(rng.uniform(0.15, 0.6) * (cols * cos + rows * sin) + angle)
        colour = rng.random(3) * (0.6 + 0.4 * stripes[..., None])
        mixed = background * (1.0 - inside[..., None]) + colour * inside[..., None]
        images[index] = np.clip(mixed, 0.0, 1.0)
    return images


def random_mobilenet_v2(calibration: np.ndarray, *, seed: int, keras):
    """The zoo's MobileNetV2 wrapper with seeded random kernels and calibrated BN statistics.

    The bare application's random weights go through a weights file into
    ``models.load("mobilenet_v2", weights=...)``, the zoo's own path. Batch-norm moving
    statistics are then set to the batch statistics of ``calibration`` (float32 [n, H, W, 3]):
    with momentum 0, one training-mode call replaces them, layer after layer, by the statistics
    of inputs normalised by the layers before, which is what inference then sees.
    """
    from robustmap import models

    keras.utils.set_random_seed(seed)
    bare = keras.applications.MobileNetV2(weights=None, classifier_activation=None)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "mobilenet_v2_random.weights.h5"
        bare.save_weights(weights)
        model = models.load("mobilenet_v2", weights=weights)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(calibration, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    return model


if __name__ == "__main__":
    main()
