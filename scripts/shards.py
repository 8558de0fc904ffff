"""Checkpoint shards: split one model's correctly classified images into fixed-size shards."""

from robustmap import runtime, shards, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
predictions = tables.read_parquet(sm.input.predictions)
tables.write_parquet(
    sm.output.table, shards.shard_table(predictions, shard_size=sm.params.shard_size)
)
