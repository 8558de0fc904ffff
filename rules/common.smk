# Helpers shared by all rule files (config validation, target lists, checkpoint look-ups).

from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from robustmap import checks, kinds, runtime

min_version("9.0")


def validated(config):
    """The config with the schema's defaults filled in, or one short line naming the bad key.

    Snakemake's own message appends the whole schema; checks.schema_problem names the key.
    """
    schema = Path(workflow.basedir) / "schemas" / "config.schema.yaml"
    try:
        validate(config, schema=str(schema))
    except WorkflowError:
        problem = checks.schema_problem(config, yaml.safe_load(schema.read_text()))
        raise checks.ConfigError(problem) from None
    return config


# Model entries and dataset sources are checked now, also under -n: a typo must not surface only
# after the dataset was downloaded and labelled.
checks.check_config(validated(config), lock=runtime.CHECKSUMS_LOCK)

MODELS = sorted(config["models"])
# A model job's share of the `model_slots` that profiles/default offers (2): all of them where a
# GPU is visible, half where not (why: the profile's comment).
MODEL_JOB_SLOTS = 2 if runtime.gpu_visible() else 1
# Upstream first: of the jobs ready to start, Snakemake runs those of higher priority. So every
# model's predict and shards run before any heatmaps, and every heatmaps before any search: the
# searches, the longest jobs, then fill the model slots to the end of the run, instead of a
# model's predict waiting behind two searches while the cores idle at the end (numbers:
# bench/README.md, section workflow.py). Jobs of equal priority keep Snakemake's own order.
PRIORITY = {"predict": 3, "shards": 3, "heatmaps": 2, "search": 1}
SEARCH_KINDS = kinds.search_order(config["search"]["kinds"])
GRADCAM_KINDS = kinds.kinds_from(SEARCH_KINDS, "gradcam")
BOX_KINDS = kinds.kinds_from(SEARCH_KINDS, "box")
# The kinds PGD searches after FGSM (checks.pgd_problems: a subset of SEARCH_KINDS); [] is off.
PGD_KINDS = kinds.search_order(config["search"]["pgd"]["kinds"])


wildcard_constraints:
    model="|".join(MODELS),
    shard=r"\d\d\d+",


def canonical(options):
    """``options`` with keys sorted at every level: params compare equal whatever the YAML order."""
    import json

    return json.loads(json.dumps(options, sort_keys=True))


def dataset_recipe():
    """The dataset config, plus the embedded recipe when it is used: editing either rebuilds."""
    recipe = dict(config["dataset"])
    if recipe["source"] == "embedded":
        from robustmap import embedded

        recipe["embedded"] = embedded.recipe()
    return canonical(recipe)


def search_settings():
    """What the search jobs' results depend on; Grad-CAM kinds add the object-mask settings,
    box kinds the box border, an engine other than TensorFlow the engine, PGD kinds the PGD
    settings (left out with PGD off, so FGSM-only results stay up to date).

    One job runs all kinds of a shard (they share each image's clean pass), so editing the mask
    reruns the uniform search too; its results come out byte-identical.
    """
    settings = {key: config["search"][key] for key in ("eps_max", "tol", "batch_size")}
    if config["search"]["engine"] != "tensorflow":
        # Left out for TensorFlow, so results from before the key was added stay up to date.
        settings["engine"] = config["search"]["engine"]
    if GRADCAM_KINDS:
        settings.update(
            {key: config["heatmaps"][key] for key in ("object_mask", "threshold")}
        )
    if BOX_KINDS:
        settings["box_border"] = config["search"]["box_border"]
    if PGD_KINDS:
        settings["pgd"] = dict(config["search"]["pgd"], kinds=PGD_KINDS)
    return canonical(settings)


def heatmap_settings():
    """What the heatmap arrays depend on (not the mask settings, applied downstream)."""
    keys = ("smoothgrad_samples", "smoothgrad_sigma", "batch_size")
    return canonical({key: config["heatmaps"][key] for key in keys})


def model_options(wildcards):
    """The config entry of one model, as rule params so that editing it reruns only that model."""
    return canonical(config["models"][wildcards.model])


def shard_ids(model):
    """Shard ids of a model, known once its shards checkpoint has run."""
    import pandas as pd

    table = checkpoints.shards.get(model=model).output.table
    return sorted(pd.read_parquet(table, columns=["shard"])["shard"].unique())


def shard_outputs(pattern):
    """Input function expanding ``pattern`` over every shard of the job's model."""

    def expand_shards(wildcards):
        kinds = {"kind": SEARCH_KINDS} if "{kind}" in pattern else {}
        return expand(
            pattern, model=wildcards.model, shard=shard_ids(wildcards.model), **kinds
        )

    return expand_shards


def all_targets():
    per_model = expand(
        [
            "results/{model}/accuracy.json",
            "results/{model}/epsilons.parquet",
            "results/{model}/compactness.parquet",
            "results/{model}/localisation.parquet",
            "results/{model}/panels.png",
        ],
        model=MODELS,
    )
    return per_model + [
        "results/tables/per_image.parquet",
        "results/tables/per_class.parquet",
        "results/tables/per_model.parquet",
        "results/tables/statistics.parquet",
        "results/tables/robustness.parquet",
        "results/tables/localisation.parquet",
        "results/figures/done.json",
        "results/tables/leaderboard.parquet",
        "results/provenance.json",
        "results/report/findings.rst",
    ]


def search_inputs(wildcards):
    """Grad-CAM searches need the shard's heatmaps; other kinds do not wait for them (the box
    kinds read their boxes from the label table)."""
    inputs = {
        "manifest": rules.dataset.output.manifest,
        "labels": rules.labels.output.table,
        "shards": checkpoints.shards.get(model=wildcards.model).output.table,
    }
    if GRADCAM_KINDS:
        inputs["heatmaps"] = f"results/{wildcards.model}/heatmaps/{wildcards.shard}.npz"
    return inputs
