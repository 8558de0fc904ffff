"""Rule compactness: compactness scores of every heatmap of one model, and their agreement."""

from robustmap import measure, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
shard_arrays = [tables.read_npz(path) for path in sm.input.arrays]
table = measure.compactness_table(shard_arrays, threshold=sm.params.threshold)
tables.write_parquet(sm.output.table, table)
