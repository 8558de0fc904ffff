rule dataset:
    output:
        manifest="results/dataset/manifest.json",
    log:
        "logs/dataset.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        source=dataset_recipe(),
    script:
        "../scripts/dataset.py"


rule labels:
    input:
        manifest=rules.dataset.output.manifest,
    output:
        table="results/labels.parquet",
    log:
        "logs/labels.log",
    conda:
        "../envs/robustmap.yaml"
    script:
        "../scripts/labels.py"
