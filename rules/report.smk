# The study's answers: tables, statistics, figures and heatmap panels, all under report().

from robustmap import figure_registry

# Named outputs of rule figures, one per file of robustmap.figure_registry (which also gives its
# report category, subcategory, caption and label): <name>_png (in the report) and <name>_svg.
FIGURES = figure_registry.figure_files(SEARCH_KINDS, PGD_KINDS)
FIGURE_OUTPUTS = {
    f"{figure.name}_png": report(
        f"results/figures/{figure.name}.png",
        caption=f"../report/{figure.kind.stem}.rst",
        category=figure.kind.category,
        subcategory=figure.kind.subcategory,
        labels={"figure": figure.kind.shows, "model": "all", "search": figure.search},
    )
    for figure in FIGURES
} | {f"{figure.name}_svg": f"results/figures/{figure.name}.svg" for figure in FIGURES}


rule aggregate:
    input:
        labels=rules.labels.output.table,
        predictions=expand("results/{model}/predictions.parquet", model=MODELS),
        accuracy=expand("results/{model}/accuracy.json", model=MODELS),
        epsilons=expand("results/{model}/epsilons.parquet", model=MODELS),
        compactness=expand("results/{model}/compactness.parquet", model=MODELS),
        localisation=expand("results/{model}/localisation.parquet", model=MODELS),
    output:
        per_image="results/tables/per_image.parquet",
        per_class="results/tables/per_class.parquet",
        per_model="results/tables/per_model.parquet",
        statistics="results/tables/statistics.parquet",
        robustness="results/tables/robustness.parquet",
        localisation="results/tables/localisation.parquet",
        per_model_html=report(
            "results/tables/per_model.html",
            caption="../report/per_model.rst",
            category="Tables",
            subcategory="Per model",
            labels={"table": "per model x search", "model": "all", "search": "all"},
        ),
        statistics_html=report(
            "results/tables/statistics.html",
            caption="../report/statistics.rst",
            category="Tables",
            subcategory="Statistics",
            labels={"table": "statistics", "model": "all", "search": "all"},
        ),
        robustness_html=report(
            "results/tables/robustness.html",
            caption="../report/robustness_table.rst",
            category="Tables",
            subcategory="Robustness",
            labels={
                "table": "robustness at customary steps",
                "model": "all",
                "search": "all",
            },
        ),
        localisation_html=report(
            "results/tables/localisation.html",
            caption="../report/localisation_table.rst",
            category="Localisation",
            subcategory="Table",
            labels={
                "table": "localisation vs chance",
                "model": "all",
                "search": "all",
            },
        ),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        models=MODELS,
        statistics=canonical(config["statistics"]),
        min_class_images=config["report"]["min_class_images"],
        eps_max=config["search"]["eps_max"],
    script:
        "../scripts/aggregate.py"


rule figures:
    input:
        per_image=rules.aggregate.output.per_image,
        per_class=rules.aggregate.output.per_class,
        per_model=rules.aggregate.output.per_model,
        statistics=rules.aggregate.output.statistics,
        robustness=rules.aggregate.output.robustness,
        localisation=rules.aggregate.output.localisation,
    output:
        **FIGURE_OUTPUTS,
        done="results/figures/done.json",
    log:
        "logs/figures.log",
    conda:
        "../envs/robustmap.yaml"
    # The figures are drawn side by side in this many processes (capped by --cores).
    threads: 4
    params:
        searches=SEARCH_KINDS,
        pgd_searches=PGD_KINDS,
        eps_max=config["search"]["eps_max"],
        min_class_images=config["report"]["min_class_images"],
    script:
        "../scripts/figures.py"


rule panels:
    input:
        manifest=rules.dataset.output.manifest,
        labels=rules.labels.output.table,
        epsilons="results/{model}/epsilons.parquet",
        heatmaps=shard_outputs("results/{model}/heatmaps/{shard}.npz"),
        signs=shard_outputs("results/{model}/search/signs/{shard}.npz"),
    output:
        panel=report(
            "results/{model}/panels.png",
            caption="../report/panels.rst",
            category="Heatmaps",
            subcategory="{model}",
            labels={"figure": "heatmap panel", "model": "{model}", "search": "all"},
        ),
    log:
        "logs/{model}/panels.log",
    conda:
        "../envs/robustmap.yaml"
    params:
        panel_images=config["report"]["panel_images"],
        object_mask=config["heatmaps"]["object_mask"],
        threshold=config["heatmaps"]["threshold"],
        eps_max=config["search"]["eps_max"],
        image_size=config["dataset"]["image_size"],
        box_border=config["search"]["box_border"],
    script:
        "../scripts/panels.py"
