# The study's answers: tables, statistics, figures and heatmap panels, all under report().

FIGURE_KINDS = {
    # file stem: (report category, subcategory, what the figure shows)
    "class_epsilon": ("Classes", "Mean epsilon by class", "mean epsilon by class, all"),
    "class_bulk": (
        "Classes",
        "Bulk of the classes",
        "mean epsilon by class, central 80%",
    ),
    "class_extremes": (
        "Classes",
        "Top-10 classes",
        "most sensitive and most robust classes",
    ),
}
SUMMARY_FIGURES = {
    "epsilon_ecdf": ("Distributions", "ECDF", "epsilon ECDF per model and search"),
    "paired_searches": ("Searches", "Paired", "uniform vs object vs background"),
    "compactness_gradcam": (
        "Compactness",
        "Grad-CAM",
        "Grad-CAM compactness vs epsilon",
    ),
    "compactness_saliency": (
        "Compactness",
        "Saliency",
        "saliency compactness vs epsilon",
    ),
    "accuracy": ("Accuracy", "Table", "clean accuracy per model"),
    "robustness": ("Distributions", "Robustness curves", "share surviving each step"),
    "localisation": (
        "Localisation",
        "Against chance",
        "pointing game and energy in box",
    ),
    "localisation_epsilon": (
        "Localisation",
        "Versus epsilon",
        "localisation scores vs epsilon",
    ),
}


# Every summary figure: file stem -> (caption stem, category, subcategory, label, search).
FIGURES = {
    f"{stem}_{kind}": (stem, category, sub, what, kind)
    for kind in SEARCH_KINDS
    for stem, (category, sub, what) in FIGURE_KINDS.items()
} | {
    stem: (stem, category, sub, what, "all")
    for stem, (category, sub, what) in SUMMARY_FIGURES.items()
}
# Named outputs of rule figures: <stem>_png (in the report) and <stem>_svg per figure.
FIGURE_OUTPUTS = {
    f"{name}_png": report(
        f"results/figures/{name}.png",
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels={"figure": what, "model": "all", "search": kind},
    )
    for name, (caption, category, subcategory, what, kind) in FIGURES.items()
} | {f"{name}_svg": f"results/figures/{name}.svg" for name in FIGURES}


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
