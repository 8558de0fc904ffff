"""Time the figures job: every summary figure of a finished run, drawn by 1 and by N processes.

    python bench/figures.py RESULTS [--workers 1 2] [--repeats 2] [--layouts once per-format]

RESULTS is a run's ``results/`` folder (its ``tables/*.parquet`` are read; nothing in it is
written); ``eps_max`` comes from this checkout's ``config.yaml``, the kinds from the tables.
Each worker count draws and saves every figure, as PNG and SVG, into a temporary folder; the
counts alternate over ``--repeats`` rounds and the best time of each is printed with its ratio to
the first count. It also checks that every count wrote the same bytes. ``--layouts`` adds the
other way to lay figures out (``robustmap.figures.LAYOUT_ONCE``) to each round, side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from defaults import workflow_config  # bench/defaults.py

from robustmap import figures, kinds, schema, tables

TABLES = ("per_image", "per_class", "per_model", "statistics", "robustness", "localisation")


def main() -> None:
    args = parse_args()
    config = workflow_config()
    frames = [tables.read_parquet(args.results / "tables" / f"{name}.parquet") for name in TABLES]
    held = schema.searched(frames[0], kinds.SEARCH_KINDS)
    searches = [search.kind for search in held if search.attack == schema.FGSM]
    pgd_searches = [search.kind for search in held if search.attack == schema.PGD]
    builders = figures.figure_builders(
        *frames,
        searches=searches,
        pgd_searches=pgd_searches,
        eps_max=config["search"]["eps_max"],
        min_class_images=config["report"]["min_class_images"],
    )
    print(
        f"{len(builders)} figures ({', '.join(searches)}), each as {' and '.join(figures.FORMATS)}"
    )
    variants = [(workers, layout) for layout in args.layouts for workers in args.workers]
    best: dict[tuple[int, str], float] = {}
    digests: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.repeats):
            for workers, layout in variants:
                figures.LAYOUT_ONCE = layout == "once"
                folder = Path(scratch) / f"{workers}-{layout}-{round_}"
                paths = {
                    name: [folder / f"{name}.{fmt}" for fmt in figures.FORMATS] for name in builders
                }
                start = time.perf_counter()
                listing = figures.write_figures(builders, paths, workers=workers)
                seconds = time.perf_counter() - start
                best[workers, layout] = min(seconds, best.get((workers, layout), seconds))
                digests[workers, layout] = {
                    name: {fmt: entry["sha256"] for fmt, entry in saved.items()}
                    for name, saved in listing.items()
                }
    first = variants[0]
    print(f"{'workers':>8}  {'layout':>10}  {'best s':>7}  {'ratio':>6}")
    for workers, layout in variants:
        seconds = best[workers, layout]
        print(f"{workers:>8}  {layout:>10}  {seconds:>7.1f}  {seconds / best[first]:>6.2f}")
    for layout in args.layouts:
        same = all(digests[w, layout] == digests[args.workers[0], layout] for w in args.workers)
        print(f"layout {layout}: same bytes for every worker count: {same}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a finished run's results/ folder")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=["once", "per-format"],
        default=["once"],
        help="lay each figure out once for both formats (the job's way) or once per format",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
