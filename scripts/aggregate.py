"""Rule aggregate: per-image, per-class and per-model tables and the statistics of all models."""

import json
from pathlib import Path

from robustmap import (
    aggregate,
    figures,
    localisation_summary,
    robustness,
    runtime,
    statistics,
    tables,
)

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
models = sm.params.models
by_model = {
    kind: dict(zip(models, map(tables.read_parquet, sm.input[kind]), strict=True))
    for kind in ("predictions", "epsilons", "compactness", "localisation")
}
accuracy = {
    model: json.loads(Path(path).read_text())
    for model, path in zip(models, sm.input.accuracy, strict=True)
}
per_image = aggregate.per_image(
    tables.read_parquet(sm.input.labels),
    by_model["predictions"],
    by_model["epsilons"],
    by_model["compactness"],
    by_model["localisation"],
)
per_model = aggregate.per_model(per_image, accuracy)
resampling = {key: sm.params.statistics[key] for key in ("bootstrap", "seed")}
min_class_images = sm.params.min_class_images
tests = statistics.statistics_table(per_image, min_class_images=min_class_images, **resampling)
per_class = aggregate.per_class(per_image, min_class_images=min_class_images, **resampling)
curves = robustness.robustness(per_image, eps_max=sm.params.eps_max, **resampling)
localisation = localisation_summary.localisation_summary(per_image, **resampling)
tables.write_parquet(sm.output.per_image, per_image)
tables.write_parquet(sm.output.per_class, per_class)
tables.write_parquet(sm.output.per_model, per_model)
tables.write_parquet(sm.output.statistics, tests)
tables.write_parquet(sm.output.robustness, curves)
tables.write_parquet(sm.output.localisation, localisation)
html = {
    "per_model_html": (per_model, "Per model and search"),
    "statistics_html": (statistics.marked(tests), "Tests (* q_bh < 0.05 within the family)"),
    "robustness_html": (curves[curves["customary"]], "Share surviving each step"),
    "localisation_html": (
        localisation[localisation["class_name"] == "all"],
        "Pointing game and energy in the human box, against chance",
    ),
}
for key, (frame, title) in html.items():
    tables.write_bytes(sm.output[key], figures.html_table(frame, title=title).encode())
