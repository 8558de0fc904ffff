rule heatmaps:
    input:
        manifest=rules.dataset.output.manifest,
        labels=rules.labels.output.table,
        shards="results/{model}/shards.parquet",
    output:
        arrays="results/{model}/heatmaps/{shard}.npz",
    log:
        "logs/{model}/heatmaps/{shard}.log",
    priority: PRIORITY["heatmaps"]
    conda:
        "../envs/robustmap.yaml"
    resources:
        gpu=1,
        model_slots=MODEL_JOB_SLOTS,
    params:
        model=model_options,
        heatmaps=heatmap_settings(),
        image_size=config["dataset"]["image_size"],
    script:
        "../scripts/heatmaps.py"


rule compactness:
    input:
        arrays=shard_outputs("results/{model}/heatmaps/{shard}.npz"),
    output:
        table="results/{model}/compactness.parquet",
    log:
        "logs/{model}/compactness.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        threshold=config["heatmaps"]["threshold"],
    script:
        "../scripts/compactness.py"


rule localisation:
    input:
        arrays=shard_outputs("results/{model}/heatmaps/{shard}.npz"),
        labels=rules.labels.output.table,
    output:
        table="results/{model}/localisation.parquet",
    log:
        "logs/{model}/localisation.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        tolerance=config["localisation"]["pointing_tolerance"],
    script:
        "../scripts/localisation.py"
