rule predict:
    input:
        manifest=rules.dataset.output.manifest,
        labels=rules.labels.output.table,
    output:
        predictions="results/{model}/predictions.parquet",
        accuracy="results/{model}/accuracy.json",
    log:
        "logs/{model}/predict.log",
    priority: PRIORITY["predict"]
    conda:
        "../envs/robustmap.yaml"
    resources:
        gpu=1,
        model_slots=MODEL_JOB_SLOTS,
    params:
        model=model_options,
        batch_size=config["predict"]["batch_size"],
        image_size=config["dataset"]["image_size"],
    script:
        "../scripts/predict.py"


checkpoint shards:
    input:
        predictions=rules.predict.output.predictions,
    output:
        table="results/{model}/shards.parquet",
    log:
        "logs/{model}/shards.log",
    priority: PRIORITY["shards"]
    conda:
        "../envs/robustmap.yaml"
    params:
        shard_size=config["shard_size"],
    script:
        "../scripts/shards.py"
