"""Rule figures: every summary figure as PNG (in the report) and SVG, and their list."""

import os

from robustmap import figures, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
log = runtime.setup(sm.log[0], tensorflow=False)
builders = figures.figure_builders(
    tables.read_parquet(sm.input.per_image),
    tables.read_parquet(sm.input.per_class),
    tables.read_parquet(sm.input.per_model),
    tables.read_parquet(sm.input.statistics),
    tables.read_parquet(sm.input.robustness),
    tables.read_parquet(sm.input.localisation),
    searches=sm.params.searches,
    pgd_searches=sm.params.pgd_searches,
    eps_max=sm.params.eps_max,
    min_class_images=sm.params.min_class_images,
)
paths = {name: [sm.output[f"{name}_{fmt}"] for fmt in figures.FORMATS] for name in builders}
# Not more processes than CPUs this job may use (a SLURM allocation can be smaller than threads).
workers = min(sm.threads, len(os.sched_getaffinity(0)))
listing = figures.write_figures(builders, paths, workers=workers)
tables.write_json(sm.output.done, {"figures": listing})
log.info("%d figures written in %d processes", len(listing), workers)
