# The report's first page: the model leaderboard, the findings and the run's provenance.

import robustmap.provenance


rule leaderboard:
    input:
        per_model=rules.aggregate.output.per_model,
        robustness=rules.aggregate.output.robustness,
        statistics=rules.aggregate.output.statistics,
        localisation=rules.aggregate.output.localisation,
        per_image=rules.aggregate.output.per_image,
    output:
        table="results/tables/leaderboard.parquet",
        html=report(
            "results/tables/leaderboard.html",
            caption="../report/leaderboard.rst",
            category="Leaderboard",
            subcategory="Models",
            labels={"table": "leaderboard", "model": "all", "search": "uniform"},
        ),
    log:
        "logs/leaderboard.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        statistics=canonical(config["statistics"]),
    script:
        "../scripts/leaderboard.py"


# Software, commit and machine are read when the workflow is parsed (no TensorFlow import), so a
# change of any reruns this job; so does a changed config, dataset, label table or weight file.
rule provenance:
    input:
        manifest=rules.dataset.output.manifest,
        labels=rules.labels.output.table,
        accuracy=expand("results/{model}/accuracy.json", model=MODELS),
        weights=robustmap.provenance.static_weight_files(config["models"]),
    output:
        record="results/provenance.json",
    log:
        "logs/provenance.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        environment=robustmap.provenance.environment(workflow.basedir),
        config=canonical(config),
    script:
        "../scripts/provenance.py"


rule findings:
    input:
        leaderboard=rules.leaderboard.output.table,
        per_class=rules.aggregate.output.per_class,
        statistics=rules.aggregate.output.statistics,
        provenance=rules.provenance.output.record,
    output:
        findings="results/report/findings.rst",
        provenance="results/report/provenance.rst",
    log:
        "logs/findings.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        min_class_images=config["report"]["min_class_images"],
    script:
        "../scripts/findings.py"
