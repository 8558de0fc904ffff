"""A model that gets no image right: empty tables with every column, figures that say so.

The library half of the workflow edge in test_workflow_edges.py, with exact values, fast.
"""

import numpy as np
import pandas as pd
import pytest
from test_aggregate import prediction_table, synthetic_study

from robustmap import (
    aggregate,
    classes,
    epsilon_table,
    figures,
    kinds,
    localisation_summary,
    measure,
    robustness,
    schema,
    search,
    statistics,
)

SEARCHES = ["uniform", "object", "background"]


def zero_correct(study, model):
    """``study`` with ``model`` wrong on every image: no epsilon, no heatmap, accuracy 0."""
    labels, predictions, epsilons, compactness, accuracy = study
    ids = labels["image_id"].tolist()
    predictions[model] = prediction_table(ids, np.zeros(len(ids), bool), labels["imagenet_index"])
    epsilons[model] = epsilon_table.merge_searches([], pd.DataFrame({"image_id": [], "shard": []}))
    compactness[model] = measure.compactness_table([], threshold="otsu")
    accuracy[model] = accuracy[model] | {"correct": 0, "top1": 0.0, "top5": 0.0}
    return labels, predictions, epsilons, compactness, accuracy


def tables_of(study):
    labels, predictions, epsilons, compactness, accuracy = study
    per_image = aggregate.per_image(labels, predictions, epsilons, compactness)
    return per_image, aggregate.per_class(per_image), aggregate.per_model(per_image, accuracy)


def test_empty_search_and_compactness_tables_keep_every_column():
    epsilons = epsilon_table.merge_searches([], pd.DataFrame({"image_id": [], "shard": []}))
    assert list(epsilons.columns) == schema.SEARCH_COLUMNS and len(epsilons) == 0
    compactness = measure.compactness_table([], threshold="otsu")
    assert list(compactness.columns) == list(schema.COMPACTNESS_COLUMNS)
    assert len(compactness) == 0
    assert epsilon_table.extreme_images(epsilons, count=3).empty


def test_only_model_with_no_correct_image_still_gets_its_zero_rows():
    per_image, per_class, per_model = tables_of(zero_correct(synthetic_study(models=("m1",)), "m1"))
    # no model searched anything: every kind of the vocabulary gets its zero row
    assert per_model[["search", "top1", "n"]].to_dict("list") == {
        "search": list(kinds.SEARCH_KINDS),
        "top1": [0.0] * len(kinds.SEARCH_KINDS),
        "n": [0] * len(kinds.SEARCH_KINDS),
    }
    rows = len(kinds.SEARCH_KINDS) * 4
    assert len(per_class) == rows  # every class of every search
    assert per_class["accuracy"].tolist() == [0.0] * rows and per_class["n"].tolist() == [0] * rows
    assert per_class["sensitivity_rank"].isna().all()
    assert per_image["epsilon_uniform"].isna().all() and len(per_image) == 20


@pytest.mark.parametrize("models", [("m1",), ("m1", "m2")])
def test_figures_say_no_correct_images(models):
    study = zero_correct(synthetic_study(models=models, classes=6), "m1")
    per_image, per_class, per_model = tables_of(study)
    builders = figures.figure_builders(
        per_image,
        per_class,
        per_model,
        statistics.statistics_table(per_image, bootstrap=100),
        robustness.robustness(per_image, eps_max=1.0, bootstrap=100),
        localisation_summary.localisation_summary(per_image, bootstrap=100),
        searches=SEARCHES,
        eps_max=1.0,
    )
    drawn = {
        name: builders[name]()
        for name in ("class_epsilon_uniform", "class_extremes_object", "epsilon_ecdf", "accuracy")
    }
    for name in ("class_epsilon_uniform", "class_extremes_object", "epsilon_ecdf"):
        texts = [text.get_text() for ax in drawn[name].axes for text in ax.texts]
        assert "m1: no correct images" in texts, name
    table = drawn["accuracy"].axes[0].tables[0]
    assert table.get_celld()[(1, 3)].get_text().get_text() == "0.0%"  # m1's top-1


def test_message_figure_says_why():
    figure = figures.message_figure("m1", figures.NO_CORRECT)
    assert [t.get_text() for t in figure.axes[0].texts] == ["no correct images"]


def test_class_names_beside_indices():
    assert classes.names_of([435, -1, None, float("nan")]) == ["bathtub", None, None, None]
    table = measure._search_frame(
        "uniform",
        np.array(["a", "b"]),
        search.SearchResult(
            epsilon=np.array([0.01, np.inf]),
            adversarial_label=np.array([435, -1]),
            forward_passes=np.array([5, 13]),
            status=np.array(["flipped", "not_flipped"]),
            non_monotone=np.array([False, False]),
        ),
    )
    assert list(table.columns) == schema.SEARCH_COLUMNS
    assert table["adversarial_name"].tolist() == ["bathtub", None]
