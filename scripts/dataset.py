"""Rule dataset: materialise the configured source in Tiny-ImageNet layout, write its manifest."""

from robustmap import runtime, sources

runtime.setup(snakemake.log[0], tensorflow=False)  # noqa: F821 - injected by Snakemake
sources.materialise(
    snakemake.params.source,  # noqa: F821
    workdir="results/dataset",
    manifest_path=snakemake.output.manifest,  # noqa: F821
    lock=runtime.CHECKSUMS_LOCK,
)
