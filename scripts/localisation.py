"""Rule localisation: every heatmap of one model scored against the human bounding boxes."""

import numpy as np
import pandas as pd

from robustmap import kinds, localisation, runtime, shards, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
frames = []
for path in sm.input.arrays:
    arrays = tables.read_npz(path)
    image_ids = arrays["image_id"].astype(str)
    maps = {kind: arrays[kind] for kind in kinds.HEATMAP_KINDS}
    shape = maps[kinds.HEATMAP_KINDS[0]].shape[1:]
    boxes, valid = shards.load_boxes(sm.input.labels, list(image_ids), shape=shape)
    frames.append(
        localisation.localisation_table(
            image_ids, maps, boxes, valid, tolerance=sm.params.tolerance
        )
    )
table = (
    pd.concat(frames, ignore_index=True)
    if frames
    else localisation.localisation_table(np.array([]), {}, np.zeros((0, 4)), np.zeros(0, bool))
)
tables.write_parquet(sm.output.table, table)
