"""robustmap.schema: wide names, the searches a table holds, the wide views' columns and dtypes."""

import math

import numpy as np
import pandas as pd
import pytest

from robustmap import censored, schema
from robustmap.schema import FGSM, Search

KINDS = ("uniform", "object", "background")
PGD = Search("pgd", "uniform")


def long_rows(search: Search, ids, epsilon) -> pd.DataFrame:
    epsilon = np.asarray(epsilon, dtype=float)
    return pd.DataFrame(
        {
            "image_id": list(ids),
            "attack": search.attack,
            "search": search.kind,
            "epsilon": epsilon,
            "adversarial_label": pd.array(np.where(np.isfinite(epsilon), 3, -1), "Int64"),
            "adversarial_name": np.where(np.isfinite(epsilon), "tabby", None),
            "forward_passes": pd.array([12] * len(ids), "Int64"),
            "gradient_passes": pd.array([7] * len(ids), "Int64"),
            "epsilon_low": epsilon / 2,
            "status": np.where(np.isfinite(epsilon), schema.FLIPPED, schema.NOT_FLIPPED),
            "non_monotone": pd.array([False] * len(ids), "boolean"),
        }
    )[schema.SEARCH_COLUMNS]


def test_fgsm_keeps_the_names_of_the_tables_and_another_attack_adds_its_own():
    uniform = Search(FGSM, "uniform")
    assert schema.search_column("epsilon", uniform) == "epsilon_uniform"
    assert schema.search_column("status", Search(FGSM, "box_object")) == "search_status_box_object"
    assert schema.search_column("forward_passes", uniform) == "forward_passes_uniform"
    assert schema.search_column("epsilon", PGD) == "epsilon_pgd_uniform"
    assert schema.search_column("status", PGD) == "search_status_pgd_uniform"
    assert (uniform.name, PGD.name) == ("uniform", "pgd_uniform")
    assert schema.heatmap_column("gradcam", "gini") == "gradcam_gini"
    assert schema.agreement_column("iou_top20") == "heatmap_iou_top20"
    assert schema.localisation_column("saliency", "auc") == "loc_saliency_auc"
    assert schema.BOX_FRACTION_COLUMN == "loc_box_fraction"


def test_wide_columns_read_back_the_long_rows_of_every_attack_and_kind():
    epsilons = pd.concat(
        [
            long_rows(Search(FGSM, "uniform"), ["a", "b", "c"], [0.1, math.inf, 0.3]),
            long_rows(Search(FGSM, "object"), ["c", "a"], [0.05, 0.2]),
            long_rows(PGD, ["b", "a"], [0.01, 0.02]),
        ],
        ignore_index=True,
    )
    wide = schema.wide_searches(epsilons, KINDS).set_index("image_id")
    for (attack, kind), rows in epsilons.groupby(["attack", "search"]):
        rows = rows.set_index("image_id")
        for field in schema.ATTACK_FIELDS[attack]:
            column = schema.search_column(field, Search(attack, kind))
            assert wide.loc[rows.index, column].tolist() == rows[field].tolist(), column
    # each attack gets only its own fields
    assert "forward_passes_pgd_uniform" not in wide and "epsilon_low_uniform" not in wide
    assert [c for c in wide.columns if c.endswith("_pgd_uniform")] == [
        "epsilon_pgd_uniform",
        "search_status_pgd_uniform",
        "epsilon_low_pgd_uniform",
        "adversarial_label_pgd_uniform",
        "adversarial_name_pgd_uniform",
        "gradient_passes_pgd_uniform",
    ]
    assert wide["gradient_passes_pgd_uniform"].dtype == "Int64"
    # every search gets its columns; an image without a result has nulls there
    assert wide["epsilon_background"].isna().all()
    assert wide.loc["c", ["epsilon_pgd_uniform", "search_status_pgd_uniform"]].isna().all()
    assert list(wide.columns[:6]) == [
        "epsilon_uniform",
        "search_status_uniform",
        "adversarial_label_uniform",
        "adversarial_name_uniform",
        "forward_passes_uniform",
        "non_monotone_uniform",
    ]


def test_searched_lists_the_searches_a_table_holds_in_study_order():
    epsilons = pd.concat(
        [
            long_rows(Search(FGSM, "background"), ["a", "b"], [0.1, 0.2]),
            long_rows(Search(FGSM, "uniform"), ["a"], [0.3]),
        ],
        ignore_index=True,
    )
    held = [Search(FGSM, "uniform"), Search(FGSM, "background")]
    assert schema.searched(epsilons, KINDS) == held  # long: the rows' searches
    wide = schema.wide_searches(epsilons, KINDS)
    assert "epsilon_object" in wide  # a column, but no result: object is not held
    assert schema.searched(wide, KINDS) == held
    assert schema.searched(wide, ("object",)) == []


def test_searched_counts_a_search_whose_every_epsilon_is_undefined():
    rows = long_rows(Search(FGSM, "object"), ["a", "b"], [np.nan, np.nan])
    rows["status"] = schema.NO_BOX
    wide = schema.wide_searches(rows, KINDS)
    assert schema.searched(wide, KINDS) == [Search(FGSM, "object")]
    no_statuses = pd.DataFrame({"epsilon_uniform": [0.1, np.nan], "epsilon_object": np.nan})
    assert schema.searched(no_statuses, KINDS) == [Search(FGSM, "uniform")]


def test_the_wide_view_of_no_results_has_every_column_and_dtype():
    for empty in (None, schema.empty_search_table()):
        wide = schema.wide_searches(empty, KINDS)
        assert len(wide) == 0
        fields = sum(len(schema.ATTACK_FIELDS[attack]) for attack in schema.ATTACKS)
        assert len(wide.columns) == 1 + len(KINDS) * fields
        for kind in KINDS:
            column = {
                field: schema.search_column(field, Search(FGSM, kind))
                for field in schema.ATTACK_FIELDS[FGSM]
            }
            assert wide[schema.search_column("epsilon_low", Search("pgd", kind))].dtype == float
            assert wide[column["epsilon"]].dtype == "float64"
            assert wide[column["adversarial_label"]].dtype == "Int64"
            assert wide[column["forward_passes"]].dtype == "Int64"
            assert wide[column["non_monotone"]].dtype == "boolean"
            assert wide[column["status"]].dtype == object
    table = schema.empty_search_table()
    assert (
        list(table.columns)
        == schema.SEARCH_COLUMNS
        == [
            "image_id",
            "attack",
            "search",
            "epsilon",
            "epsilon_low",
            "adversarial_label",
            "adversarial_name",
            "forward_passes",
            "gradient_passes",
            "status",
            "non_monotone",
        ]
    )
    assert {name: str(table[name].dtype) for name in table} == {
        name: str(pd.Series(dtype=dtype).dtype) for name, dtype in schema.SEARCH_TABLE.items()
    }


def test_heatmap_wide_views_and_their_column_lists():
    compactness = pd.DataFrame(
        {
            "image_id": ["a", "a", "b", "b"],
            "heatmap": ["gradcam", "saliency"] * 2,
            **{score: [0.1, 0.2, 0.3, 0.4] for score in schema.COMPACTNESS_SCORES},
            "spearman": [0.5, 0.5, 0.7, 0.7],
            "iou_top20": [0.25, 0.25, 0.5, 0.5],
        }
    )
    wide = schema.wide_compactness(compactness, ("gradcam", "saliency")).set_index("image_id")
    assert wide.loc["b", "saliency_gini"] == 0.4 and wide.loc["b", "heatmap_spearman"] == 0.7
    columns = schema.compactness_columns(wide.columns, ("gradcam", "saliency"))
    assert columns == list(wide.columns)
    localisation = compactness[["image_id", "heatmap"]].assign(
        status=schema.BOX_OK,
        **{score: [0.1, 0.2, 0.3, 0.4] for score in schema.LOCALISATION_SCORES},
    )
    localisation["box_fraction"] = [0.3, 0.3, 0.6, 0.6]
    wide = schema.wide_localisation(localisation, ("gradcam", "saliency")).set_index("image_id")
    assert wide.loc["b", "loc_gradcam_auc"] == 0.3 and wide.loc["b", "loc_box_fraction"] == 0.6
    scores = schema.localisation_columns(wide.columns, ("gradcam", "saliency"))
    assert scores == [c for c in wide.columns if c != "loc_box_fraction"]
    assert list(schema.wide_localisation(localisation.iloc[:0], ("gradcam",)).columns) == [
        "image_id"
    ]


def test_one_quantile_rule_for_one_sample_and_for_many():
    rng = np.random.default_rng(0)
    samples = rng.exponential(size=(50, 7))
    samples[rng.random(samples.shape) < 0.3] = math.inf
    for q in (0.025, 0.25, 0.5, 0.975):
        many = censored.censored_quantiles(samples, q, axis=1)
        one = [censored.censored_quantile(row, q) for row in samples]
        np.testing.assert_array_equal(many, one)
        finite = np.isfinite(samples).all(axis=1)
        np.testing.assert_allclose(many[finite], np.quantile(samples[finite], q, axis=1))
    assert censored.censored_quantile(np.array([0.1, 0.2, math.inf]), 0.75) == math.inf
    assert censored.censored_quantile(np.array([0.1, 0.2, math.inf]), 0.5) == pytest.approx(0.2)
