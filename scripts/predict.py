"""Rule predict: clean predictions of one model for every label-table row, and its accuracy."""

from robustmap import models, predict, runtime, sources, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0])
model = models.from_options(sm.params.model, lock=runtime.CHECKSUMS_LOCK)
labels = tables.read_parquet(sm.input.labels)
predictions = predict.predict(
    model,
    labels,
    sources.root_of(sm.input.manifest),
    batch_size=sm.params.batch_size,
    image_size=sm.params.image_size,
)
tables.write_parquet(sm.output.predictions, predictions)
tables.write_json(sm.output.accuracy, predict.accuracy(predictions))
