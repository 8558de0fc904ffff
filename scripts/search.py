"""Rule search: minimal FGSM epsilon of every image of one shard, for every search kind."""

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
cam = tables.read_npz(sm.input.heatmaps)["gradcam"] if "heatmaps" in sm.input.keys() else None
options = sm.params.settings
weights = measure.search_weights_by_kind(
    sm.params.kinds,
    cam,
    object_mask=options.get("object_mask"),
    threshold=options.get("threshold"),
)
frames = measure.search_tables(
    model,
    image_ids,
    images,
    labels,
    weights=weights,
    eps_max=options["eps_max"],
    tol=options["tol"],
    batch_size=options["batch_size"],
)
for kind, path in zip(sm.params.kinds, sm.output.tables, strict=True):
    tables.write_parquet(path, frames[kind])
