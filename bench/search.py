"""Benchmark of robustmap.search.minimal_epsilon against the study's loop and ART.

One run, one model (the embedded EfficientNet-Lite0), one set of images: 64x64 crops of the
embedded photos that the model classifies correctly. Printed:

(a) speed vs the study's method as written (per image, batch 1, eager Keras calls, bisection on
    [0, 1] to 1e-5) and vs the same loop compiled with tf.function, with epsilon agreement;
(b) speed vs ART FastGradientMethod(minimal=True) at equal precision (eps_step = tol = 1e-4,
    eps = 1), and the share of images whose first flip is not later than ART's;
(c) forward passes per image;
(d) search time / time of the same number of plain batched forward passes; and for the
    workflow's search job (uniform, object and background run together by
    search.minimal_epsilons, sharing each image's clean pass) against the three searches run one
    after the other.

The slow baselines (eager loop, ART) run on a subset and are extrapolated per image; the output
says so. Timings exclude one-time tracing (every timed function is warmed up first).

With ``--xla`` it prints only the ``model_calls.JIT_COMPILE`` comparison instead: the same search
on fresh copies of the model without and with XLA, first call (tracing and compiling included)
and a repeat, the epsilons' largest difference between the two, and whether the XLA search gives
the same epsilons at another batch size.

    python bench/search.py            # 48 images
    python bench/search.py --quick    # fewer images and smaller baseline subsets
    python bench/search.py --xla      # model_calls.JIT_COMPILE off against on
    python bench/search.py --batch-sizes 4 8 16 32 64   # the workflow's search job per size

With ``--batch-sizes`` it prints only the workflow's search job (uniform, object and background
together, tol 1e-5, probes on the ``auto`` engine, then PGD on the uniform kind as the default
config runs it) at each ``search.batch_size``, rounds alternating over the sizes: job seconds
with tracing and conversion (a fresh model per size) and without (best of ``--repeats``), their
ratio to the first size, the largest epsilon difference from the first size's epsilons and the
rows whose status differs.
"""

from __future__ import annotations

import argparse
import os
import time

from defaults import workflow_config  # bench/defaults.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from robustmap import embedded, heatmaps, measure, model_calls, models, search  # noqa: E402

STUDY_TOL = 1e-5
ART_STEP = 1e-4
SIZE = 64
ZOOMS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.42, 0.35)
SHIFTS = (-0.12, 0.0, 0.12)


def main() -> None:
    args = parse_args()
    model = models.load("efficientnet_lite0")
    images, labels = correct_crops(model, args.images)
    n = len(images)
    if args.xla:
        xla_comparison(images, labels, args.batch_size)
        return
    if args.batch_sizes:
        batch_size_comparison(images, labels, args.batch_sizes, args.repeats)
        return
    print(
        f"model efficientnet_lite0, {n} correctly classified {SIZE}x{SIZE} crops, CPU; "
        f"timings: best of {args.repeats}, tracing excluded; (d): median of {args.repeats} "
        "paired ratios"
    )

    plain_forward = compiled_forward(model, images, args.batch_size)
    plain_gradient = compiled_gradient(model, images, labels, args.batch_size)
    runs = {}
    for tol in (1e-5, 1e-4):  # (d): each search timing paired with the references timed next
        trace_every_call(model, images, labels, tol=tol, batch_size=args.batch_size)
        timings = []
        for _ in range(args.repeats):
            result, seconds = timed(
                search.minimal_epsilon, model, images, labels, tol=tol, batch_size=args.batch_size
            )
            rows = int(result.forward_passes.sum())
            # (d) as the issue defines it: every pass, the clean one too, as a plain forward row;
            # and split: the clean passes as gradient calls, the probes as plain forward rows.
            as_gradients = timed(plain_gradient, n)[1] + timed(plain_forward, rows - n)[1]
            timings.append((seconds, timed(plain_forward, rows)[1], as_gradients))
        runs[tol] = {
            "result": result,
            "seconds": min(t[0] for t in timings),
            "d": [t[0] / t[1] for t in timings],
            "d_split": [t[0] / t[2] for t in timings],
        }
    ours, ours_art = runs[1e-5], runs[1e-4]

    eager_subset = spread(n, args.eager_images)
    eager = best_of(
        args.repeats, study_loop, model, images[eager_subset], labels[eager_subset], eager=True
    )
    compiled = best_of(args.repeats, study_loop, model, images, labels, eager=False)
    art_subset = spread(n, args.art_images)
    art = art_minimal(model, images[art_subset], labels[art_subset])
    art["subset"] = art_subset
    other_size = 64 if args.batch_size != 64 else 16
    other_batch = search.minimal_epsilon(model, images, labels, tol=1e-5, batch_size=other_size)
    same = np.array_equal(other_batch.epsilon, ours["result"].epsilon)
    report(n, ours, ours_art, eager, compiled, art)
    print(f"batch_size {other_size} vs {args.batch_size}: identical epsilons: {same}")
    workflow_job(model, images, labels, args, plain_forward)


def spread(n: int, count: int) -> np.ndarray:
    """``count`` indices spread evenly over range(n) (a subset that spans the photos)."""
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="correct crops (at least 48)")
    parser.add_argument("--repeats", type=int, default=3, help="timings: best of this many")
    parser.add_argument("--eager-images", type=int, default=16, help="subset for the eager loop")
    parser.add_argument("--art-images", type=int, default=16, help="subset for ART")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=workflow_config()["search"]["batch_size"],
        help="default: the workflow's search.batch_size",
    )
    parser.add_argument("--quick", action="store_true", help="16 images, small subsets")
    parser.add_argument(
        "--xla", action="store_true", help="only: model_calls.JIT_COMPILE off vs on"
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", help="only: the search job at these batch sizes"
    )
    args = parser.parse_args()
    if args.quick:
        args.images, args.eager_images, args.art_images, args.repeats = 16, 3, 6, 1
    return args


# ---- images ------------------------------------------------------------------------------------


def correct_crops(model: keras.Model, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` deterministic 64x64 crops the model gets right, taken round-robin over photos.

    Views: squares of side ZOOMS x the shorter side, centred on the photo's object with SHIFTS
    (fractions of the side), resized with Lanczos as the embedded dataset does.
    """
    per_photo = []
    for photo, spec in zip(embedded.photos(), embedded.PHOTOS, strict=True):
        crops = np.stack([crop(photo.pixels, box) for box in boxes(photo.pixels, spec.focus)])
        predicted = model.predict(crops, batch_size=64, verbose=0).argmax(axis=1)
        per_photo.append(list(crops[predicted == photo.imagenet_index]))
        per_photo[-1] = [(c, photo.imagenet_index) for c in per_photo[-1]]
    chosen = []
    while len(chosen) < count and any(per_photo):
        for queue in per_photo:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    if len(chosen) < min(count, 48):
        raise SystemExit(f"only {len(chosen)} correctly classified crops; need 48")
    return np.stack([c for c, _ in chosen]), np.array([label for _, label in chosen])


def boxes(pixels: np.ndarray, focus: tuple[float, float]) -> list[tuple[int, int, int, int]]:
    height, width = pixels.shape[:2]
    short = min(width, height)
    found = []
    for zoom in ZOOMS:
        side = round(zoom * short)
        for dy in SHIFTS:
            for dx in SHIFTS:
                cx, cy = focus[0] * width + dx * side, focus[1] * height + dy * side
                left = min(max(round(cx - side / 2), 0), width - side)
                top = min(max(round(cy - side / 2), 0), height - side)
                found.append((left, top, left + side, top + side))
    return list(dict.fromkeys(found))


def crop(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    view = Image.fromarray(pixels).crop(box).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return np.asarray(view, dtype=np.float32) / 255.0


# ---- robustmap ---------------------------------------------------------------------------------


def timed(function, *args, **kwargs):
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def best_of(repeats: int, function, *args, **kwargs) -> dict:
    """The result dict of the fastest of ``repeats`` calls (the shared CPU is noisy)."""
    return min((function(*args, **kwargs) for _ in range(repeats)), key=lambda r: r["seconds"])


def xla_comparison(images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
    """The uniform search (tol 1e-5) without and with XLA, each on a fresh model (fresh traces).

    ``model_calls.JIT_COMPILE`` is read when a model's calls are first traced, and traces are
    cached per model object, so each setting gets its own ``models.load``.
    """
    runs = {}
    other = 64 if batch_size != 64 else 16
    for jit in (False, True):
        model_calls.JIT_COMPILE = jit
        model = models.load("efficientnet_lite0")
        first = timed(
            search.minimal_epsilon, model, images, labels, tol=1e-5, batch_size=batch_size
        )
        repeat = timed(
            search.minimal_epsilon, model, images, labels, tol=1e-5, batch_size=batch_size
        )
        runs[jit] = (first[1], repeat[1], repeat[0].epsilon)
        if jit:
            other_batch = search.minimal_epsilon(
                model, images, labels, tol=1e-5, batch_size=other
            ).epsilon
    model_calls.JIT_COMPILE = False
    print(f"{len(images)} images, uniform search, tol 1e-5, batch {batch_size}")
    for jit, (first_s, repeat_s, _) in runs.items():
        print(
            f"  jit_compile={jit}: first call {first_s:.1f} s (tracing included), "
            f"repeat {repeat_s:.1f} s"
        )
    print(
        f"  XLA / plain: first call {runs[True][0] / runs[False][0]:.2f}, "
        f"repeat {runs[True][1] / runs[False][1]:.2f}"
    )
    difference = np.nanmax(np.abs(runs[True][2] - runs[False][2]))
    print(f"  largest epsilon difference XLA vs plain: {difference:.2e}")
    print(
        f"  XLA, batch {other} vs {batch_size}: identical epsilons: "
        f"{np.array_equal(other_batch, runs[True][2], equal_nan=True)}"
    )


def batch_size_comparison(
    images: np.ndarray, labels: np.ndarray, sizes: list[int], repeats: int
) -> None:
    """The workflow's search job at each batch size, side by side: the three kinds together on
    the workflow's engine (``auto``), then PGD on the uniform kind from their FGSM epsilons
    (``measure.search_tables``, as ``scripts/search.py`` runs it with the default config).

    Each size gets its own model object, so its first call pays its own tracing (and
    conversion), as a job does; then the sizes take turns, ``repeats`` rounds, so drifts of the
    shared CPU hit them alike.
    """
    model = models.load("efficientnet_lite0")
    cam = heatmaps.gradcam(model, images, labels, layer=models.gradcam_layer(model))
    weights = measure.search_weights_by_kind(
        ("uniform", "object", "background"), cam, object_mask="soft", threshold="otsu"
    )
    fresh = {size: models.load("efficientnet_lite0") for size in sizes}
    image_ids = np.array([f"crop{i}" for i in range(len(images))])
    options = workflow_config()["search"]
    pgd_settings = options["pgd"]

    def job(size: int) -> pd.DataFrame:
        frames = measure.search_tables(
            fresh[size],
            image_ids,
            images,
            labels,
            weights=weights,
            eps_max=1.0,
            tol=1e-5,
            batch_size=size,
            engine=options["engine"],
            pgd_settings=pgd_settings,
        )
        return pd.concat(frames.values(), ignore_index=True)

    first = {size: timed(job, size) for size in sizes}
    best = {size: float("inf") for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            best[size] = min(best[size], timed(job, size)[1])
    reference = first[sizes[0]][0]
    print(
        f"{len(images)} images x 3 kinds, tol 1e-5, then PGD {pgd_settings}; probes on "
        f"{model_calls.resolve_engine(options['engine'])}; seconds of the search job: "
        f"first call (tracing included) and best of {repeats} repeats; ratios to batch {sizes[0]}"
    )
    print(f"batch  first s  ratio  repeat s  ratio  vs batch {sizes[0]}: max |d eps|, other status")
    for size in sizes:
        table = first[size][0]
        both = np.isfinite(reference["epsilon"]) & np.isfinite(table["epsilon"])
        difference = float((table["epsilon"] - reference["epsilon"])[both].abs().max())
        other_status = int((table["status"] != reference["status"]).sum())
        print(
            f"{size:>5}  {first[size][1]:7.1f}  {first[size][1] / first[sizes[0]][1]:5.2f}  "
            f"{best[size]:8.1f}  {best[size] / best[sizes[0]]:5.2f}  {difference:.2e}, "
            f"{other_status}"
        )


def trace_every_call(model, images, labels, *, tol, batch_size) -> None:
    """Trace every call shape of the search's forward and clean-pass calls before timing."""
    search.minimal_epsilon(model, images[:8], labels[:8], tol=tol, batch_size=batch_size)
    compiled = model_calls.compiled(model, images.shape[1:], batch_size)
    for rows in compiled.buckets:
        compiled.logits(images[:rows])
        compiled.logits_and_gradient(images[:rows], labels[:rows])


def compiled_forward(model, images, batch_size):
    """A function(rows) running ceil(rows / batch_size) plain compiled forward calls."""
    spec = tf.TensorSpec([batch_size, *images.shape[1:]], tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    batch = np.resize(images, (batch_size, *images.shape[1:]))
    return per_rows(lambda: forward(batch).numpy(), batch_size)


def compiled_gradient(model, images, labels, batch_size):
    """A function(rows) running ceil(rows / batch_size) of the search's own clean-pass calls.

    The very call (logits and input gradient, same trace) that ``minimal_epsilon`` makes once per
    ``batch_size`` images, so the split of (d) charges the clean passes what they really cost.
    """
    clean_pass = model_calls.compiled(model, images.shape[1:], batch_size).logits_and_gradient
    batch = np.resize(images, (batch_size, *images.shape[1:]))
    batch_labels = np.resize(labels, batch_size)
    return per_rows(lambda: clean_pass(batch, batch_labels), batch_size)


def per_rows(call, batch_size):
    """A function(rows) making ceil(rows / batch_size) calls of ``call``, traced beforehand."""
    call()  # trace outside the timing

    def run(rows: int) -> None:
        for _ in range(-(-rows // batch_size)):
            call()

    return run


# ---- the workflow's search job ----------------------------------------------------------------


def workflow_job(model, images, labels, args, plain_forward) -> None:
    """(d) for the three kinds run together, and the gain over running them one by one."""
    cam = heatmaps.gradcam(
        model, images, labels, layer=models.gradcam_layer(model), batch_size=args.batch_size
    )
    weights = measure.search_weights_by_kind(
        ("uniform", "object", "background"), cam, object_mask="soft", threshold="otsu"
    )
    options = {"tol": 1e-5, "batch_size": args.batch_size}

    def together():
        return search.minimal_epsilons(model, images, labels, weights=weights, **options)

    def one_by_one():
        return {
            kind: search.minimal_epsilon(model, images, labels, weights=w, **options)
            for kind, w in weights.items()
        }

    timings = []
    for _ in range(args.repeats):  # alternated; ratios taken within each round, as (d) above
        shared, shared_s = timed(together)
        alone, alone_s = timed(one_by_one)
        counted = sum(int(r.forward_passes.sum()) for r in shared.values())
        evaluated = counted - (len(weights) - 1) * len(images)  # one clean pass per image
        timings.append((shared_s, alone_s, timed(plain_forward, evaluated)[1]))
    identical = all(
        np.array_equal(shared[k].epsilon, alone[k].epsilon, equal_nan=True) for k in weights
    )
    passes = np.concatenate([r.forward_passes for r in shared.values()])
    d = [t[0] / t[2] for t in timings]
    print(
        f"\n(d) the workflow's search job, uniform + object + background in one call, tol=1e-5, "
        f"best {min(t[0] for t in timings):.2f} s: against the {evaluated} plain batched forward "
        f"rows the model evaluated (one clean pass per image plus every probe): "
        f"{ratio_text(d)}; counting the shared clean pass in each search ({counted} rows), as "
        f"forward_passes does: {ratio_text([r * evaluated / counted for r in d])}"
    )
    gain = [t[1] / t[0] for t in timings]
    print(
        f"    the same three searches one after the other, best {min(t[1] for t in timings):.2f} "
        f"s; one by one / together: {ratio_text(gain)}; identical epsilons: {identical}; "
        f"passes per image and search, median/max: {median_text(passes)}"
    )


# ---- the study's loop --------------------------------------------------------------------------


def study_loop(model, images, labels, *, eager: bool) -> dict:
    """Per image, batch 1: one gradient, then bisection of [0, 1] to STUDY_TOL on argmax flips."""

    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return tape.gradient(loss, x)

    def forward(x):
        return model(x, training=False)

    if not eager:
        shape = tf.TensorSpec([1, *images.shape[1:]], tf.float32)
        gradient = tf.function(gradient, input_signature=[shape, tf.TensorSpec([1], tf.int32)])
        forward = tf.function(forward, input_signature=[shape])
        gradient(images[:1], labels[:1].astype(np.int32))  # trace outside the timing
        forward(images[:1])

    epsilons, passes = [], []
    start = time.perf_counter()
    for x, y in zip(images, labels, strict=True):
        x = x[None]
        direction = np.sign(gradient(tf.constant(x), tf.constant([y], tf.int32)).numpy())

        def flips(eps, x=x, y=y, direction=direction):
            return int(np.argmax(forward(tf.constant(search.perturb(x, direction, eps))))) != y

        lo, hi, count = 0.0, 1.0, 2
        if not flips(hi):
            epsilons.append(np.inf)
            passes.append(count)
            continue
        while hi - lo > STUDY_TOL:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if flips(mid) else (mid, hi)
            count += 1
        epsilons.append(hi)
        passes.append(count)
    seconds = time.perf_counter() - start
    return {"epsilon": np.array(epsilons), "passes": np.array(passes), "seconds": seconds}


# ---- ART ---------------------------------------------------------------------------------------


def art_minimal(model, images, labels) -> dict:
    """ART FGM(minimal=True), eps_step = ART_STEP, eps = 1; epsilon recovered from its images."""
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model,
        nb_classes=1000,
        input_shape=images.shape[1:],
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    attack = FastGradientMethod(
        classifier, norm=np.inf, eps=1.0, eps_step=ART_STEP, minimal=True, batch_size=32
    )
    one_hot = np.eye(1000, dtype=np.float32)[labels]
    attack.generate(images[:1], y=one_hot[:1])  # warm-up outside the timing
    start = time.perf_counter()
    adversarial = attack.generate(images, y=one_hot)
    seconds = time.perf_counter() - start
    flipped = model.predict(adversarial, verbose=0).argmax(axis=1) != labels
    # ART stops each image at the first step k * eps_step that flips; k from the largest change.
    steps = np.round(np.abs(adversarial - images).reshape(len(images), -1).max(axis=1) / ART_STEP)
    return {"epsilon": np.where(flipped, steps * ART_STEP, np.inf), "seconds": seconds}


# ---- report ------------------------------------------------------------------------------------


def report(n, ours, ours_art, eager, compiled, art) -> None:
    ours_rate = n / ours["seconds"]
    ours_art_rate = n / ours_art["seconds"]
    eager_rate = len(eager["epsilon"]) / eager["seconds"]
    compiled_rate = n / compiled["seconds"]
    art_n = len(art["epsilon"])
    art_rate = art_n / art["seconds"]

    eps, study_eps = ours["result"].epsilon, compiled["epsilon"]
    agree = np.isclose(eps, study_eps, rtol=0, atol=2 * STUDY_TOL) | (eps == study_eps)
    study_later = study_eps > eps + 2 * STUDY_TOL
    ours_b = ours_art["result"].epsilon[art["subset"]]
    not_later = ours_b <= art["epsilon"] + ART_STEP
    strictly = ours_b <= art["epsilon"]

    rows = [
        ("robustmap tol=1e-5", f"{ours_rate:8.2f}", "1.0x", f"{n}", pass_text(ours)),
        ("robustmap tol=1e-4", f"{ours_art_rate:8.2f}", "", f"{n}", pass_text(ours_art)),
        (
            "study loop, eager",
            f"{eager_rate:8.2f}",
            f"{ours_rate / eager_rate:.1f}x",
            f"{len(eager['epsilon'])} (subset)",
            median_text(eager["passes"]),
        ),
        (
            "study loop, tf.function",
            f"{compiled_rate:8.2f}",
            f"{ours_rate / compiled_rate:.1f}x",
            f"{n}",
            median_text(compiled["passes"]),
        ),
        (
            "ART FGM minimal, step 1e-4",
            f"{art_rate:8.2f}",
            f"{ours_art_rate / art_rate:.1f}x (vs tol=1e-4)",
            f"{art_n} (subset)",
            "linear scan",
        ),
    ]
    print(f"\n{'method':28s} {'img/s':>8s}  {'robustmap is':24s} {'images':14s} passes med/max")
    for name, rate, ratio, count, passes in rows:
        print(f"{name:28s} {rate}  {ratio:24s} {count:14s} {passes}")

    print(
        f"\n(a) vs eager study loop: {ours_rate / eager_rate:.1f}x (eager timed on "
        f"{len(eager['epsilon'])} images, rate extrapolated per image); vs compiled loop: "
        f"{ours_rate / compiled_rate:.1f}x; epsilons agree within 2e-5 on "
        f"{agree.sum()}/{n}; the study's bisection is later on {study_later.sum()}/{n} "
        f"(non_monotone flagged on {ours['result'].non_monotone.sum()}/{n})"
    )
    for i in np.flatnonzero(~agree):
        print(f"    image {i}: robustmap {eps[i]:.6f}  study bisection {study_eps[i]:.6f}")
    print(
        f"(b) vs ART at eps_step = tol = 1e-4: {ours_art_rate / art_rate:.1f}x (ART timed on "
        f"{art_n} images, rate extrapolated per image); first flip not later than ART's "
        f"(within one step): {not_later.sum()}/{art_n} = {100 * not_later.mean():.0f}%; "
        f"strictly <=: {strictly.sum()}/{art_n}"
    )
    for i in np.flatnonzero(~not_later):
        print(f"    image {i}: robustmap {ours_b[i]:.6f}  ART {art['epsilon'][i]:.6f}")
    for label, run, tol in (("tol=1e-5", ours, 1e-5), ("tol=1e-4", ours_art, 1e-4)):
        print(
            f"(c) forward passes per image, {label}: {pass_text(run)} (median/max; 1 gradient "
            f"pass + grid points up to the first flip of {len(search.default_grid(tol=tol))} "
            "+ the next one + refinement)"
        )
        rows = int(run["result"].forward_passes.sum())
        print(
            f"(d) {label}: search / {rows} plain batched forward rows timed right after it: "
            f"{ratio_text(run['d'])}; against {n} plain gradient rows + {rows - n} forward rows: "
            f"{ratio_text(run['d_split'])} (scheduling overhead alone)"
        )
    finite = eps[np.isfinite(eps)]
    statuses = dict(zip(*np.unique(ours["result"].status, return_counts=True), strict=True))
    print(
        f"epsilon (tol=1e-5): min {finite.min():.5f}  median {np.median(finite):.5f}  "
        f"max {finite.max():.5f}; statuses { {str(k): int(v) for k, v in statuses.items()} }; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def ratio_text(ratios: list[float]) -> str:
    """Median of the paired ratios, and their range: a slow spell of the host hits both sides
    of a pair, so paired ratios spread less than ratios of separately taken best times."""
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    return f"{np.median(ratios):.2f} (median of {len(ratios)} pairs, {spread})"


def pass_text(run: dict) -> str:
    return median_text(run["result"].forward_passes)


def median_text(passes: np.ndarray) -> str:
    return f"{np.median(passes):.0f} / {passes.max()}"


if __name__ == "__main__":
    main()
