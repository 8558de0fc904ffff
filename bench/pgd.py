"""Benchmark of robustmap.pgd.minimal_epsilons against Foolbox's LInfFMNAttack(steps=100).

One process, one model (the embedded EfficientNet-Lite0), the same images for both: the first
``--images`` correctly classified images of a finished default run (``--results``), with that
run's FGSM uniform epsilons as ``upper``. Printed per image and in summary: the epsilon ratio
robustmap / FMN (median and 80th percentile, over the images both flipped; FMN's epsilon is the
L-inf distance of its adversarial image), gradient passes per image (robustmap counted, FMN its
``steps`` plus the initial pass) and the wall-time ratio. Both are warmed up first (tracing is
not timed). robustmap's calls hold ``config.yaml``'s ``search.batch_size`` rows, as in the
search job; FMN attacks all images at once. Foolbox is the ``bench`` extra, never a dependency
of the package (imported only when FMN runs, so ``--help`` works without it).

    python bench/pgd.py                     # 16 images of /tmp/new/results
    python bench/pgd.py --images 32 --results path/to/results
    python bench/pgd.py --rel-tols 0.004 0.002   # also the bracket at narrower rel_tol

Each search's line ``rel_tol ...`` says where FMN's epsilon falls in robustmap's final bracket
[epsilon_low, epsilon] (medians of both over FMN's), with the passes that bracket cost.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from defaults import workflow_config  # bench/defaults.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from robustmap import models, pgd, shards, tables  # noqa: E402
from robustmap.epsilon_table import attack_rows  # noqa: E402
from robustmap.schema import FGSM  # noqa: E402

MODEL = "efficientnet_lite0"
FMN_STEPS = 100
RELATIVE_TOLERANCE = workflow_config()["search"]["pgd"]["rel_tol"]
BATCH_SIZE = workflow_config()["search"]["batch_size"]


def main() -> None:
    args = parse_args()
    model = models.load(MODEL)
    results = args.results.resolve()
    os.chdir(results.parent)  # a run's manifest holds its dataset root relative to the run
    images, labels, upper = default_run_images(results, args.images, args.image_size)
    print(f"{len(images)} images {images.shape[1:]}, FGSM upper median {np.median(upper):.5f}")

    def ours(x, y, eps, rel_tol=RELATIVE_TOLERANCE):
        return pgd.minimal_epsilons(
            model,
            x,
            y,
            weights={"uniform": None},
            upper={"uniform": eps},
            batch_size=BATCH_SIZE,
            rel_tol=rel_tol,
        )["uniform"]

    theirs = fmn_attack(model)

    ours(images[:4], labels[:4], upper[:4])  # warm-up: tracing
    theirs(images[:4], labels[:4])
    start = time.perf_counter()
    result = ours(images, labels, upper)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fmn = theirs(images, labels)
    fmn_seconds = time.perf_counter() - start

    print("image  fgsm      pgd       pgd_low   fmn       pgd/fmn  passes")
    for i in range(len(images)):
        print(
            f"{i:5d}  {upper[i]:.6f}  {result.epsilon[i]:.6f}  {result.epsilon_low[i]:.6f}  "
            f"{fmn[i]:.6f}  {result.epsilon[i] / fmn[i]:7.3f}  {result.gradient_passes[i]}"
        )
    both = np.isfinite(result.epsilon) & np.isfinite(fmn)
    ratio = result.epsilon[both] / fmn[both]
    print(f"flipped: robustmap {np.isfinite(result.epsilon).sum()}, FMN {np.isfinite(fmn).sum()}")
    median, p80 = np.median(ratio), np.quantile(ratio, 0.8)
    print(f"epsilon ratio robustmap/FMN: median {median:.3f}, p80 {p80:.3f}")
    print_bracket(RELATIVE_TOLERANCE, result, fmn)
    print(f"epsilon ratio FGSM/robustmap: median {np.median(upper / result.epsilon):.3f}")
    print(
        f"gradient passes per image: robustmap median {np.median(result.gradient_passes):.0f} "
        f"(max {result.gradient_passes.max()}), FMN {FMN_STEPS + 1}"
    )
    print(
        f"wall time: robustmap {ours_seconds:.2f} s, FMN {fmn_seconds:.2f} s, "
        f"ratio {ours_seconds / fmn_seconds:.3f}"
    )
    for rel_tol in args.rel_tols:
        print_bracket(rel_tol, ours(images, labels, upper, rel_tol), fmn)


def fmn_attack(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Foolbox's FMN on ``model``: images and labels -> each image's L-inf distance to the
    adversarial image FMN found (inf where it found none). Foolbox is imported here, so that
    ``--help`` works without the bench extra."""
    import foolbox as fb

    if not hasattr(np, "find_common_type"):
        # eagerpy 0.30.0 (Foolbox's tensor layer, unmaintained) calls this NumPy 1 function,
        # removed in NumPy 2; for the dtypes it passes (no scalar types) result_type is the same.
        np.find_common_type = lambda array_types, scalar_types: np.result_type(*array_types)
    fmodel = fb.TensorFlowModel(
        tf.function(lambda x: model(x, training=False), autograph=False), bounds=(0, 1)
    )
    attack = fb.attacks.LInfFMNAttack(steps=FMN_STEPS)

    def theirs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        _, adversarial, success = attack(
            fmodel, tf.constant(x), tf.constant(y.astype(np.int32)), epsilons=None
        )
        distance = np.abs(adversarial.numpy() - x).reshape(len(x), -1).max(axis=1)
        return np.where(success.numpy(), distance, np.inf)

    return theirs


def print_bracket(rel_tol: float, result: pgd.PgdResult, fmn: np.ndarray) -> None:
    """Where FMN's epsilon falls in robustmap's final bracket [epsilon_low, epsilon] at
    ``rel_tol``: a median epsilon_low / FMN below 1 with epsilon / FMN above it says the bracket's
    width, not the attack, keeps the median ratio above FMN's."""
    both = np.isfinite(result.epsilon) & np.isfinite(fmn)
    high, low = result.epsilon[both] / fmn[both], result.epsilon_low[both] / fmn[both]
    passes = result.gradient_passes
    print(
        f"rel_tol {rel_tol:g}: epsilon/FMN median {np.median(high):.4f} (p80 "
        f"{np.quantile(high, 0.8):.4f}), epsilon_low/FMN median {np.median(low):.4f}, at or below "
        f"FMN {np.mean(high <= 1):.2f} of images; gradient passes median {np.median(passes):.0f}, "
        f"mean {passes.mean():.1f}, max {passes.max()}"
    )


def default_run_images(
    results: Path, count: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``count`` images the run's FGSM uniform search flipped: images, labels and
    their FGSM epsilons."""
    epsilons = attack_rows(tables.read_parquet(results / MODEL / "epsilons.parquet"), FGSM)
    flipped = epsilons[(epsilons["search"] == "uniform") & (epsilons["status"] == "flipped")]
    chosen = flipped.head(count)
    images, labels = shards.load_labelled_images(
        results / "labels.parquet",
        results / "dataset" / "manifest.json",
        list(chosen["image_id"]),
        image_size=image_size,
    )
    return images, labels, chosen["epsilon"].to_numpy(dtype=np.float64)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--results", type=Path, default=Path("/tmp/new/results"))
    parser.add_argument("--image-size", type=int, default=64, help="the run's dataset.image_size")
    parser.add_argument(
        "--rel-tols",
        type=float,
        nargs="*",
        default=[],
        help="also search at these rel_tol values and print where FMN falls in each bracket",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
