"""Rule search: minimal FGSM epsilon of every image of one shard, for every search kind, then the
minimal PGD epsilon for the PGD kinds (measure.search_tables)."""

import numpy as np

from robustmap import kinds, measure, models, runtime, shards, tables
from robustmap.schema import pgd_delta_key

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
boxes, box_valid = None, None
if kinds.kinds_from(sm.params.kinds, "box"):
    boxes, box_valid = shards.load_boxes(sm.input.labels, list(image_ids), shape=images.shape[1:3])
weights = measure.search_weights_by_kind(
    sm.params.kinds,
    cam,
    object_mask=options.get("object_mask"),
    threshold=options.get("threshold"),
    boxes=boxes,
    box_valid=box_valid,
    box_border=options.get("box_border", 0),
    shape=images.shape[1:3],
)
signs = np.zeros(images.shape, np.int8)
deltas = {}
pgd_settings = dict(options["pgd"], kinds=sm.params.pgd_kinds) if sm.params.pgd_kinds else None
frames = measure.search_tables(
    model,
    image_ids,
    images,
    labels,
    weights=weights,
    eps_max=options["eps_max"],
    tol=options["tol"],
    batch_size=options["batch_size"],
    box_valid=box_valid,
    sign_out=signs,
    engine=options.get("engine", "tensorflow"),
    pgd_settings=pgd_settings,
    delta_out=deltas,
)
for kind, path in zip(sm.params.kinds, sm.output.tables, strict=True):
    tables.write_parquet(path, frames[kind])
# The panels redraw the searched adversarial images from these, without the model.
pgd_deltas = {pgd_delta_key(kind): delta.astype(np.float16) for kind, delta in deltas.items()}
tables.write_npz(sm.output.signs, image_id=image_ids, fgsm_sign=signs, **pgd_deltas)
