"""Rule panels: image, heatmaps, boxes, object mask and adversarial images of one model's
extremes."""

from robustmap import epsilon_table, figures, panels, runtime, shards, tables

sm = snakemake  # noqa: F821 - injected by Snakemake
runtime.setup(sm.log[0], tensorflow=False)
epsilons = tables.read_parquet(sm.input.epsilons)
chosen = epsilon_table.extreme_images(epsilons, count=sm.params.panel_images)
ids = chosen["image_id"].tolist()
if chosen.empty:  # a model with no correct image still gets its (explaining) panel
    figure = figures.message_figure(sm.wildcards.model, figures.NO_CORRECT)
else:
    images, labels = shards.load_labelled_images(
        sm.input.labels, sm.input.manifest, ids, image_size=sm.params.image_size
    )
    boxes, box_valid = shards.load_boxes(sm.input.labels, ids, shape=images.shape[1:3])
    signs = [tables.read_npz(path) for path in sm.input.signs]
    figure = panels.model_panel(
        name=sm.wildcards.model,
        chosen=chosen,
        images=images,
        labels=labels,
        signs=panels.select_rows(signs, ids, ["fgsm_sign"])["fgsm_sign"],
        heatmaps=panels.select_heatmaps([tables.read_npz(path) for path in sm.input.heatmaps], ids),
        epsilons=epsilons,
        object_mask=sm.params.object_mask,
        threshold=sm.params.threshold,
        eps_max=sm.params.eps_max,
        boxes=boxes,
        box_valid=box_valid,
        box_border=sm.params.box_border,
        pgd_deltas=panels.select_pgd_deltas(signs, ids, epsilons["search"].unique()),
    )
figures.save_figure(figure, sm.output.panel)
