"""Benchmark of the engines of forward-only calls (``search.engine``): TensorFlow against OpenVINO.

One run, one model (the embedded EfficientNet-Lite0), CPU. Printed:

(a) forward rows/s of ``model_calls.compiled(...).logits`` on each engine at 224x224, batch 16
    (``--side``, ``--batch``; ``--rows`` rows per timing, best of ``--repeats`` rounds that take
    the engines in turn); the first call (tracing, and for a converted engine conversion and
    compilation of that call shape) on a line of its own; each other engine's (and runtime's)
    logits against TensorFlow's on the same rows: largest absolute difference, rows with the
    same argmax, and whether a repeated call gives the same logits bit for bit; ``--runtimes``
    adds runtimes that are not engines (ONNX Runtime, LiteRT: ``bench/runtimes.py``, bench-only
    extras);
(b) the workflow's search job (``--job-batch`` rows per call) on one shard (the embedded
    photos' views at the workflow's image size that the model gets right; uniform, object and
    background searched together as ``scripts/search.py`` does) on each engine: seconds
    (OpenVINO's with and without its conversions), whether the statuses are identical, and the
    epsilons' largest absolute and relative differences, with the images beyond max(2 tol, 1e-3
    relative).

    python bench/engine.py
    python bench/engine.py --repeats 3 --images 32
    PYTHONPATH=.:/work/rtpkgs python bench/engine.py --runtimes onnxruntime litert --forward-only
    PYTHONPATH=.:/work/rtpkgs python bench/engine.py --runtimes onnxruntime litert --forward-only \
        --side 64 --batch 4   # the search job's call shape
"""

from __future__ import annotations

import argparse
import os
import time

from defaults import workflow_config  # bench/defaults.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import runtimes  # noqa: E402  (bench/runtimes.py: imports a runtime's packages when asked)
from PIL import Image  # noqa: E402

from robustmap import embedded, heatmaps, measure, model_calls, models, search  # noqa: E402

TOL = 1e-5
CLEAN_BATCH = 16  # (b): rows per call choosing the views and drawing their Grad-CAM
KINDS = ("uniform", "object", "background")


def main() -> None:
    args = parse_args()
    print(f"EfficientNet-Lite0, CPU, {os.cpu_count()} logical cores; best of {args.repeats}")
    forward_rows_per_second(args.rows, args.repeats, args.runtimes, args.side, args.batch)
    if args.forward_only:
        return
    images, labels = correct_views(args.size, args.images)
    search_job(images, labels, args.repeats, args.job_batch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timings: best of this many")
    parser.add_argument("--rows", type=int, default=64, help="(a): rows per timing")
    parser.add_argument("--side", type=int, default=224, help="(a): image side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="(a): rows per call")
    parser.add_argument(
        "--job-batch",
        type=int,
        default=workflow_config()["search"]["batch_size"],
        help="(b): rows per call; default: the workflow's search.batch_size",
    )
    parser.add_argument("--size", type=int, default=64, help="(b): image size (the workflow's)")
    parser.add_argument("--images", type=int, default=48, help="(b): at most this many views")
    parser.add_argument(
        "--runtimes",
        nargs="*",
        default=[],
        choices=runtimes.RUNTIMES,
        help="(a): also these runtimes (bench extras, bench/README.md)",
    )
    parser.add_argument("--forward-only", action="store_true", help="(a) only, not (b)")
    return parser.parse_args()


def timed(function, *args):
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def forward_rows_per_second(
    rows: int, repeats: int, runtimes: list[str], side: int, batch: int
) -> None:
    """(a): each engine's and runtime's logits on a fresh model, its first call shape converted
    separately, then timed in rounds that take them in turn (a slow spell of a shared host then
    slows every one of them, not the one that happened to run then), best of ``repeats``; then
    compared with TensorFlow's (the first engine's)."""
    shape = (side, side, 3)
    x = np.random.default_rng(0).uniform(0, 1, (rows, *shape)).astype(np.float32)
    held, calls = [], {}
    for name in (*model_calls.ENGINES, *runtimes):
        held.append(models.load("efficientnet_lite0"))  # fresh: nothing traced or converted yet
        calls[name] = forward_call(held[-1], name, shape, batch)
        _, first = timed(calls[name], x[:batch])  # traces (and converts, compiles) one shape
        print(f"(a) {name}: first call of {batch} rows (trace, conversion) {first:.2f} s")
    best = dict.fromkeys(calls, np.inf)
    for _ in range(repeats):
        for name, logits in calls.items():
            best[name] = min(best[name], timed(logits, x)[1])
    reference = calls[model_calls.TENSORFLOW](x)
    for name, logits in calls.items():
        print(
            f"(a) {name}: {rows / best[name]:.1f} rows/s ({side}px, batch {batch}), "
            f"{best[model_calls.TENSORFLOW] / best[name]:.2f}x {model_calls.TENSORFLOW}"
        )
        if name == model_calls.TENSORFLOW:
            continue
        result = logits(x)
        print(
            f"    {name}: logits |diff| from {model_calls.TENSORFLOW} max "
            f"{np.abs(result - reference).max():.2e}, same argmax "
            f"{(result.argmax(1) == reference.argmax(1)).sum()}/{rows} rows, repeat bit for bit "
            f"{np.array_equal(result, logits(x))}"
        )


def forward_call(model, name: str, shape: tuple[int, ...], batch: int):
    """The logits call of ``model`` on engine or runtime ``name`` for images of ``shape``,
    ``batch`` rows per call."""
    if name in model_calls.ENGINES:
        return model_calls.compiled(model, shape, batch, name).logits
    return runtimes.logits(model, shape, batch, name)


def correct_views(size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` views of the embedded photos (their dataset's boxes) resized to ``size``
    with Lanczos, that the model classifies correctly."""
    model = models.load("efficientnet_lite0")
    views, labels = [], []
    for photo, spec in zip(embedded.photos(), embedded.PHOTOS, strict=True):
        height, width = photo.pixels.shape[:2]
        for box in embedded.crop_boxes(width, height, spec.focus):
            view = Image.fromarray(photo.pixels).crop(box).resize((size, size), Image.LANCZOS)
            views.append(np.asarray(view, dtype=np.float32) / 255.0)
            labels.append(photo.imagenet_index)
    images, labels = np.stack(views), np.array(labels)
    logits = model_calls.compiled(model, images.shape[1:], CLEAN_BATCH).logits(images)
    correct = logits.argmax(axis=1) == labels
    return images[correct][:count], labels[correct][:count]


def search_job(images: np.ndarray, labels: np.ndarray, repeats: int, batch: int) -> None:
    """(b): the three kinds together on each engine, first run (with conversions) and best."""
    model = models.load("efficientnet_lite0")
    cam = heatmaps.gradcam(
        model, images, labels, layer=models.gradcam_layer(model), batch_size=CLEAN_BATCH
    )
    weights = measure.search_weights_by_kind(KINDS, cam, object_mask="soft", threshold="otsu")
    results, seconds = {}, {}
    for engine in model_calls.ENGINES:

        def job(engine=engine):
            return search.minimal_epsilons(
                model, images, labels, weights=weights, tol=TOL, batch_size=batch, engine=engine
            )

        results[engine], first = timed(job)
        seconds[engine] = (first, min(timed(job)[1] for _ in range(repeats)))
    n = len(images)
    for engine, (first, best) in seconds.items():
        print(
            f"(b) {engine}: search job, {n} images x {len(KINDS)} kinds at {images.shape[1]}px: "
            f"first run {first:.2f} s (trace/conversion included), best {best:.2f} s"
        )
    tf_best, ov_best = seconds[model_calls.TENSORFLOW][1], seconds[model_calls.OPENVINO][1]
    print(f"    openvino / tensorflow: {ov_best / tf_best:.2f} (best runs)")
    compare(results[model_calls.TENSORFLOW], results[model_calls.OPENVINO])


def compare(reference: dict, other: dict) -> None:
    """Statuses identical? Largest epsilon differences; rows beyond max(2 tol, 1e-3 rel)."""
    for kind in reference:
        a, b = reference[kind], other[kind]
        same_status = np.array_equal(a.status, b.status)
        changed = sorted(set(zip(a.status, b.status, strict=True)) - {(s, s) for s in a.status})
        both = np.isfinite(a.epsilon) & np.isfinite(b.epsilon)
        diff = np.abs(a.epsilon[both] - b.epsilon[both])
        relative = diff / np.maximum(a.epsilon[both], 1e-12)
        beyond = np.flatnonzero(both)[diff > np.maximum(2 * TOL, 1e-3 * a.epsilon[both])]
        print(
            f"    {kind}: statuses identical {same_status}"
            f"{'' if same_status else f' {changed}'}; "
            f"epsilon |diff| max {diff.max(initial=0):.2e}, relative max "
            f"{relative.max(initial=0):.2e}; beyond max(2 tol, 1e-3 rel): {list(beyond)}"
        )


if __name__ == "__main__":
    main()
