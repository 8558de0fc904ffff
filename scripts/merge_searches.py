"""Rule merge_searches: one model's per-shard search tables as one table (censored rows kept)."""

from robustmap import epsilon_table, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
merged = epsilon_table.merge_searches(
    [tables.read_parquet(path) for path in sm.input.tables], tables.read_parquet(sm.input.shards)
)
tables.write_parquet(sm.output.table, merged)
