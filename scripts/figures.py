"""Rule figures: every summary figure as PNG (in the report) and SVG, and their list."""

import hashlib
from pathlib import Path

from robustmap import figures, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
log = runtime.setup(sm.log[0], tensorflow=False)
drawn = figures.figure_set(
    tables.read_parquet(sm.input.per_image),
    tables.read_parquet(sm.input.per_class),
    tables.read_parquet(sm.input.per_model),
    tables.read_parquet(sm.input.statistics),
    tables.read_parquet(sm.input.robustness),
    tables.read_parquet(sm.input.localisation),
    searches=sm.params.searches,
    eps_max=sm.params.eps_max,
    min_class_images=sm.params.min_class_images,
)
listing = {}
for name, figure in drawn.items():
    listing[name] = {}
    for fmt in figures.FORMATS:
        path = figures.save_figure(figure, sm.output[f"{name}_{fmt}"])
        listing[name][fmt] = {
            "path": str(path),
            "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        }
    log.info("figure %s written", name)
tables.write_json(sm.output.done, {"figures": listing})
