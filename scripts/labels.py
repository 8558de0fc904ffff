"""Rule labels: the label table, one row per image file and per orphan annotation."""

from robustmap import dataset, runtime, sources, tables

runtime.setup(snakemake.log[0], tensorflow=False)  # noqa: F821 - injected by Snakemake
root = sources.root_of(snakemake.input.manifest)  # noqa: F821
tables.write_parquet(snakemake.output.table, dataset.label_table(root))  # noqa: F821
