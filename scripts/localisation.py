"""Rule localisation: every heatmap of one model scored against the human bounding boxes."""

from robustmap import measure, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
shard_arrays = (tables.read_npz(path) for path in sm.input.arrays)  # one shard in memory at a time
table = measure.localisation_table(shard_arrays, sm.input.labels, tolerance=sm.params.tolerance)
tables.write_parquet(sm.output.table, table)
