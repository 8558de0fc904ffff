# robustmap: minimal FGSM epsilons (uniform, Grad-CAM object, background), heatmap compactness,
# and per-class / per-model answers, for every model in config.yaml. See docs/architecture.md.


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/dataset.smk"
include: "rules/predict.smk"
include: "rules/search.smk"
include: "rules/heatmaps.smk"
include: "rules/report.smk"
include: "rules/answers.smk"


rule all:
    default_target: True
    input:
        all_targets(),
