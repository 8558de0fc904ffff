rule search:
    input:
        unpack(search_inputs),
    output:
        tables=expand(
            "results/{{model}}/search/{kind}/{{shard}}.parquet", kind=SEARCH_KINDS
        ),
        signs="results/{model}/search/signs/{shard}.npz",
    log:
        "logs/{model}/search/{shard}.log",
    priority: PRIORITY["search"]
    conda:
        "../envs/robustmap.yaml"
    resources:
        gpu=1,
        model_slots=MODEL_JOB_SLOTS,
    params:
        model=model_options,
        kinds=SEARCH_KINDS,
        pgd_kinds=PGD_KINDS,
        settings=search_settings(),
        image_size=config["dataset"]["image_size"],
    script:
        "../scripts/search.py"


rule merge_searches:
    input:
        tables=shard_outputs("results/{model}/search/{kind}/{shard}.parquet"),
        shards="results/{model}/shards.parquet",
    output:
        table="results/{model}/epsilons.parquet",
    log:
        "logs/{model}/merge_searches.log",
    conda:
        "../envs/robustmap.yaml"
    script:
        "../scripts/merge_searches.py"
