"""Rule provenance: the software, machine, weights, dataset and config behind the results."""

from robustmap import provenance, runtime, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
record = provenance.provenance(
    sm.params.environment,
    sm.params.config,
    manifest=sm.input.manifest,
    labels=sm.input.labels,
)
tables.write_json(sm.output.record, record)
