"""Rule heatmaps: raw Grad-CAM and gradient saliency of one shard, kept as compressed arrays."""

from robustmap import measure, models, runtime, shards, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0])
model = models.from_options(sm.params.model, lock=runtime.CHECKSUMS_LOCK)
image_ids, images, labels = shards.load_shard(
    sm.input.shards,
    sm.input.labels,
    sm.input.manifest,
    sm.wildcards.shard,
    image_size=sm.params.image_size,
)
options = sm.params.heatmaps
arrays = measure.heatmap_arrays(
    model,
    images,
    labels,
    layer=models.gradcam_layer(model),
    smoothgrad_samples=options["smoothgrad_samples"],
    smoothgrad_sigma=options["smoothgrad_sigma"],
    batch_size=options["batch_size"],
)
tables.write_npz(sm.output.arrays, image_id=image_ids, **arrays)
