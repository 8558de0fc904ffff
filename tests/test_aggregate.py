"""Tables of robustmap.aggregate on small constructed frames with known answers."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from robustmap import (
    aggregate,
    censored,
    epsilon_table,
    kinds,
    localisation_summary,
    robustness,
    schema,
)

INF = math.inf
SCORES = ("gini", "entropy", "share_50", "share_90", "concentration_auc", "spread", "components")


def synthetic_study(models=("m1", "m2"), classes=4, per_class=5, seed=0):
    """Labels, predictions, epsilons, compactness and accuracy of a made-up study.

    About 80% of the images are correct per model; epsilons are log-normal with ~15% censored.
    """
    rng = np.random.default_rng(seed)
    ids = [f"img{i:03d}" for i in range(classes * per_class)]
    class_of = np.repeat(np.arange(classes), per_class)
    labels = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"val/images/{i}.JPEG" for i in ids],
            "wnid": [f"n{c:08d}" for c in class_of],
            "class_name": [f"class{c}" for c in class_of],
            "imagenet_index": pd.array(class_of * 10, dtype="Int64"),
            "status": "ok",
            "reason": "",
        }
    )
    predictions, epsilons, compactness, accuracy = {}, {}, {}, {}
    for model in models:
        correct = rng.random(len(ids)) < 0.8
        predictions[model] = prediction_table(ids, correct, labels["imagenet_index"])
        kept = np.array(ids)[correct]
        epsilons[model] = pd.concat(
            [search_rows(kept, kind, rng) for kind in kinds.SEARCH_KINDS], ignore_index=True
        )
        compactness[model] = pd.concat(
            [
                pd.DataFrame(
                    {"image_id": kept, "heatmap": heatmap}
                    | {score: rng.random(len(kept)) for score in SCORES}
                    | {"spearman": rng.random(len(kept)), "iou_top20": 0.25}
                )
                for heatmap in ("gradcam", "saliency")
            ],
            ignore_index=True,
        )
        accuracy[model] = {
            "images": len(ids),
            "scored": len(ids),
            "correct": int(correct.sum()),
            "top1": float(correct.mean()),
            "top5": float(correct.mean()),
            "by_status": {"ok": len(ids)},
        }
    return labels, predictions, epsilons, compactness, accuracy


def synthetic_localisation(compactness_by_model, seed=0):
    """Localisation rows for the images of each model's compactness table; one in five has no
    box (status no_box, scores nan)."""
    rng = np.random.default_rng(seed)
    tables = {}
    for model, compactness in compactness_by_model.items():
        rows = compactness[["image_id", "heatmap"]].copy()
        n = len(rows)
        boxed = np.arange(n) % 5 != 0
        fraction = rng.uniform(0.1, 0.6, n)
        rows["status"] = np.where(boxed, "ok", "no_box")
        rows["pointing_hit"] = np.where(boxed, (rng.random(n) < 0.7).astype(float), np.nan)
        rows["energy_in_box"] = np.where(boxed, np.clip(fraction + 0.2, 0, 1), np.nan)
        rows["rank_accuracy"] = np.where(boxed, rng.random(n), np.nan)
        rows["auc"] = np.where(boxed, rng.random(n), np.nan)
        rows["box_fraction"] = np.where(boxed, fraction, np.nan)
        # one box per image: both heatmap rows share the image's box fraction
        first = rows.groupby("image_id")["box_fraction"].transform("first")
        rows["box_fraction"] = first
        tables[model] = rows
    return tables


def prediction_table(ids, correct, truth):
    top1 = np.where(correct, truth.to_numpy(dtype=int), 999)
    return pd.DataFrame(
        {
            "image_id": ids,
            "imagenet_index": truth,
            "status": "ok",
            "reason": "",
            "top1": pd.array(top1, dtype="Int64"),
            **{f"top{k}": pd.array(np.full(len(ids), 500 + k), dtype="Int64") for k in range(2, 6)},
            "logit_margin": np.where(correct, 1.0, -1.0),
            "correct": pd.array(correct, dtype="boolean"),
            "in_top5": pd.array(correct, dtype="boolean"),
        }
    )


def search_rows(image_ids, kind, rng=None, epsilon=None, attack="fgsm"):
    if epsilon is None:
        epsilon = np.exp(rng.normal(-4, 1, len(image_ids)))
        epsilon[rng.random(len(image_ids)) < 0.15] = INF
    epsilon = np.asarray(epsilon, dtype=float)
    return pd.DataFrame(
        {
            "image_id": list(image_ids),
            "attack": attack,
            "search": kind,
            "epsilon": epsilon,
            "adversarial_label": np.where(np.isfinite(epsilon), 7, -1),
            "forward_passes": 12,
            "status": np.where(np.isfinite(epsilon), "flipped", "not_flipped"),
            "non_monotone": False,
        }
    )


def shard_frame(ids):
    return pd.DataFrame(
        {"image_id": ids, "imagenet_index": 1, "shard": [f"{i // 2:03d}" for i in range(len(ids))]}
    )


# merge_searches -----------------------------------------------------------------------------


def test_merge_sorts_by_search_then_shard_order():
    ids = ["c", "a", "b", "d"]
    tables = [
        search_rows(["b", "d"], "object", epsilon=[0.3, 0.4]),
        search_rows(["d", "b"], "uniform", epsilon=[0.4, 0.2]),
        search_rows(["a", "c"], "object", epsilon=[0.2, 0.1]),
        search_rows(["c", "a"], "uniform", epsilon=[INF, 0.1]),
    ]
    merged = epsilon_table.merge_searches(tables, shard_frame(ids))
    assert merged["search"].tolist() == ["uniform"] * 4 + ["object"] * 4
    assert merged["image_id"].tolist() == ids + ids
    assert merged.loc[0, "epsilon"] == INF  # censored rows kept as they are


def test_merge_names_the_missing_images():
    tables = [
        search_rows(["a", "b", "c"], "uniform", epsilon=[0.1, 0.2, 0.3]),
        search_rows(["a"], "object", epsilon=[0.1]),
    ]
    with pytest.raises(ValueError, match=r"search 'object' misses 2 images: b, c"):
        epsilon_table.merge_searches(tables, shard_frame(["a", "b", "c"]))


def test_merge_refuses_duplicates_and_strangers():
    shards = shard_frame(["a", "b"])
    twice = [search_rows(["a", "b", "a"], "uniform", epsilon=[0.1, 0.2, 0.1])]
    with pytest.raises(ValueError, match=r"several rows for 1 images: a"):
        epsilon_table.merge_searches(twice, shards)
    stranger = [search_rows(["a", "b", "z"], "uniform", epsilon=[0.1, 0.2, 0.3])]
    with pytest.raises(ValueError, match=r"images in no shard: z"):
        epsilon_table.merge_searches(stranger, shards)


def test_merge_checks_and_orders_each_attack_on_its_own():
    ids = ["b", "a"]
    pgd_rows = search_rows(["a", "b"], "uniform", epsilon=[0.05, 0.1], attack="pgd")
    tables = [
        pgd_rows,
        search_rows(["a", "b"], "object", epsilon=[0.3, 0.4]),
        search_rows(["b", "a"], "uniform", epsilon=[0.2, 0.1]),
    ]
    merged = epsilon_table.merge_searches(tables, shard_frame(ids))
    assert merged[["attack", "search", "image_id"]].values.tolist() == [
        ["fgsm", "uniform", "b"],
        ["fgsm", "uniform", "a"],
        ["fgsm", "object", "b"],
        ["fgsm", "object", "a"],
        ["pgd", "uniform", "b"],
        ["pgd", "uniform", "a"],
    ]
    # FGSM uniform is complete; its PGD rows lack b: named as the PGD search's
    with pytest.raises(ValueError, match=r"pgd search 'uniform' misses 1 images: b$"):
        epsilon_table.merge_searches([pgd_rows.iloc[:1], *tables[1:]], shard_frame(ids))
    with pytest.raises(ValueError, match=r"pgd search 'uniform' has several rows for 1 images"):
        epsilon_table.merge_searches([pgd_rows, pgd_rows.iloc[:1], *tables[1:]], shard_frame(ids))
    # the panels' images are FGSM's, never the same image twice
    chosen = epsilon_table.extreme_images(merged, count=1)
    assert chosen[["image_id", "epsilon"]].values.tolist() == [["a", 0.1], ["b", 0.2]]
    pgd_chosen = epsilon_table.extreme_images(merged, count=1, attack="pgd")
    assert pgd_chosen["epsilon"].tolist() == [0.05, 0.1]


def test_merge_of_nothing():
    assert epsilon_table.merge_searches([], shard_frame([])).empty
    with pytest.raises(ValueError, match="no search rows for 2 shard images"):
        epsilon_table.merge_searches([], shard_frame(["a", "b"]))


# censoring-aware summaries -------------------------------------------------------------------


def test_summary_without_censoring_matches_numpy():
    summary = censored.epsilon_summary(np.array([0.1, 0.2, 0.3, 0.4]))
    assert summary["median"] == pytest.approx(0.25)
    assert summary["q25"] == pytest.approx(0.175)
    assert summary["q75"] == pytest.approx(0.325)
    assert summary["iqr"] == pytest.approx(0.15)
    assert summary["mean_flipped"] == pytest.approx(0.25)
    assert (summary["n"], summary["n_censored"], summary["median_censored"]) == (4, 0, False)


def test_censored_values_rank_above_every_flipped_one():
    summary = censored.epsilon_summary(np.array([INF, 0.3, 0.1, INF, 0.2, np.nan]))
    assert summary["median"] == pytest.approx(0.3)  # 5 defined values: the 3rd smallest
    assert summary["q25"] == pytest.approx(0.2)
    assert summary["q75"] == INF and summary["iqr"] == INF
    assert summary["mean_flipped"] == pytest.approx(0.2)  # over flipped only
    assert (summary["n"], summary["n_flipped"], summary["n_censored"]) == (5, 3, 2)
    assert summary["n_undefined"] == 1
    assert summary["median_censored"] is False


def test_a_censored_median_is_inf_and_flagged():
    summary = censored.epsilon_summary(np.array([0.1, INF, INF, INF]))
    assert summary["median"] == INF and summary["median_censored"] is True
    assert summary["q25"] == INF  # position 0.75 lies between 0.1 and a censored value
    assert censored.censored_quantile(np.array([0.1, INF]), 0.0) == pytest.approx(0.1)
    assert np.isnan(censored.epsilon_summary(np.array([]))["median"])


# per_image / per_class / per_model -------------------------------------------------------------


def test_per_image_one_row_per_model_and_label_row():
    labels, predictions, epsilons, compactness, _ = synthetic_study()
    table = aggregate.per_image(labels, predictions, epsilons, compactness)
    assert len(table) == 2 * len(labels)
    assert table["model"].tolist() == ["m1"] * len(labels) + ["m2"] * len(labels)
    m1 = table[table["model"] == "m1"].set_index("image_id")
    searched = epsilons["m1"].set_index(["search", "image_id"])
    for kind in kinds.SEARCH_KINDS:
        expected = searched.loc[kind, "epsilon"]
        np.testing.assert_array_equal(m1.loc[expected.index, f"epsilon_{kind}"], expected)
    wrong = ~m1["correct"].astype(bool)
    assert m1.loc[wrong, "epsilon_uniform"].isna().all()  # not searched: nan, not inf
    assert m1.loc[wrong, "search_status_uniform"].isna().all()
    gradcam = compactness["m1"].query("heatmap == 'gradcam'").set_index("image_id")
    np.testing.assert_array_equal(m1.loc[gradcam.index, "gradcam_gini"], gradcam["gini"])
    saliency = compactness["m1"].query("heatmap == 'saliency'").set_index("image_id")
    np.testing.assert_array_equal(m1.loc[saliency.index, "saliency_spread"], saliency["spread"])
    np.testing.assert_array_equal(m1.loc[gradcam.index, "heatmap_spearman"], gradcam["spearman"])
    assert {"path", "wnid", "status", "top1", "in_top5", "forward_passes_object"} <= set(table)


def test_per_image_refuses_rows_for_unknown_images():
    labels, predictions, epsilons, compactness, _ = synthetic_study(models=("m1",))
    epsilons["m1"].loc[0, "image_id"] = "ghost"
    with pytest.raises(ValueError, match="ghost"):
        aggregate.per_image(labels, predictions, epsilons, compactness)


def known_per_image():
    """Two classes of one model, uniform search only, with hand-computed statistics."""
    labels = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(7)],
            "path": "x",
            "wnid": "n0",
            "class_name": ["cat"] * 4 + ["dog"] * 3,
            "imagenet_index": pd.array([1] * 4 + [2] * 3, dtype="Int64"),
            "status": "ok",
            "reason": "",
        }
    )
    correct = np.array([True, True, True, False, True, True, True])
    predictions = {"m": prediction_table(labels["image_id"], correct, labels["imagenet_index"])}
    searched = ["i0", "i1", "i2", "i4", "i5", "i6"]
    epsilons = {"m": search_rows(searched, "uniform", epsilon=[0.1, 0.3, 0.2, 0.05, INF, INF])}
    return aggregate.per_image(labels, predictions, epsilons, {})


def test_per_class_known_answers_and_ranks():
    table = aggregate.per_class(known_per_image(), min_class_images=3).set_index("class_name")
    cat, dog = table.loc["cat"], table.loc["dog"]
    assert cat["accuracy"] == pytest.approx(0.75) and cat["images"] == 4
    assert cat["median"] == pytest.approx(0.2) and cat["n_censored"] == 0
    assert cat["iqr"] == pytest.approx(0.1)
    assert dog["median"] == INF and bool(dog["median_censored"])
    assert dog["mean_flipped"] == pytest.approx(0.05)  # lower mean, but censored median
    assert (cat["sensitivity_rank"], dog["sensitivity_rank"]) == (1, 2)
    assert bool(cat["ranked"]) and bool(dog["ranked"])
    # bootstrap medians of {0.1, 0.2, 0.3}: every resample median is one of the three values
    assert 0.1 <= cat["median_ci_low"] <= 0.2 <= cat["median_ci_high"] <= 0.3
    assert dog["median_ci_high"] == INF  # two of three censored: most resample medians are inf


def test_small_classes_are_never_ranked():
    table = aggregate.per_class(known_per_image(), min_class_images=4).set_index("class_name")
    assert table["n"].tolist() == [3, 3]
    assert not table["ranked"].any()
    assert table["sensitivity_rank"].isna().all()
    default = aggregate.per_class(known_per_image())
    assert not default["ranked"].any()  # report.min_class_images defaults to 5


def test_a_class_of_identical_epsilons_has_a_zero_width_median_ci():
    labels, predictions, _, compactness, _ = synthetic_study(models=("m1",), classes=1)
    ids = predictions["m1"].loc[predictions["m1"]["correct"], "image_id"]
    epsilons = {"m1": search_rows(ids, "uniform", epsilon=[0.0125] * len(ids))}
    table = aggregate.per_class(
        aggregate.per_image(labels, predictions, epsilons, {}), min_class_images=2
    )
    row = table.iloc[0]
    assert row["n"] == len(ids) >= 2
    assert row["median_ci_low"] == row["median_ci_high"] == row["median"] == 0.0125
    assert row["sensitivity_rank"] == 1


def test_median_ci_is_seeded_and_needs_two_values():
    values = np.array([0.1, 0.2, 0.3, 0.4, INF, np.nan])
    first = censored.median_ci(values, bootstrap=500, rng=np.random.default_rng(3))
    again = censored.median_ci(values, bootstrap=500, rng=np.random.default_rng(3))
    assert first == again and first[0] < 0.3 < first[1]
    assert all(map(math.isnan, censored.median_ci([0.1], bootstrap=50, rng=None)))


def robustness_table():
    """One model, six scoreable images: hand-made epsilons with censored and misclassified."""
    return pd.DataFrame(
        {
            "model": "m",
            "image_id": [f"i{k}" for k in range(7)],
            "correct": pd.array([True, True, True, True, True, False, None], "boolean"),
            # 0.5/255 flips before every customary step; 3/255 survives 1/255 and 2/255;
            # inf (censored) survives all; nan on a correct image: misclassified at start
            "epsilon_uniform": [0.5 / 255, 3 / 255, 8 / 255, INF, np.nan, np.nan, np.nan],
        }
    )


def test_robustness_shares_at_the_customary_steps_are_exact():
    table = robustness.robustness(robustness_table(), eps_max=1.0, bootstrap=200)
    customary = table[table["customary"]].set_index("step")
    assert customary.index.tolist() == ["1/255", "2/255", "4/255", "8/255"]
    assert (customary["n"] == 6).all()  # the unscoreable row is not in the denominator
    # survivors: 3/255, 8/255, inf | 3/255, 8/255, inf | 8/255, inf | inf (8/255 flips AT 8/255)
    assert customary["survivors"].tolist() == [3, 3, 2, 1]
    assert customary["share"].tolist() == pytest.approx([3 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert (customary["ci_low"] <= customary["share"]).all()
    assert (customary["share"] <= customary["ci_high"]).all()
    grid = table[~table["customary"]]
    assert len(grid) == robustness.ROBUSTNESS_GRID[1] and grid["epsilon"].iloc[-1] == 1.0
    assert grid["survivors"].iloc[0] == 4  # below every epsilon: the correct, searchable ones
    assert grid["survivors"].iloc[-1] == 1  # at eps_max only the censored image survives
    assert table["epsilon"].is_monotonic_increasing


def test_robustness_leaves_out_customary_steps_above_eps_max():
    table = robustness.robustness(robustness_table(), eps_max=0.01, bootstrap=50)
    assert table.loc[table["customary"], "step"].tolist() == ["1/255", "2/255"]


def test_per_model_adds_clean_accuracy():
    labels, predictions, epsilons, compactness, accuracy = synthetic_study()
    table = aggregate.per_image(labels, predictions, epsilons, compactness)
    summary = aggregate.per_model(table, accuracy)
    assert summary[["model", "search"]].values.tolist() == [
        [m, k] for m in ("m1", "m2") for k in kinds.SEARCH_KINDS
    ]
    row = summary.iloc[0]
    assert row["top1"] == accuracy["m1"]["top1"]
    uniform = epsilons["m1"].query("search == 'uniform'")["epsilon"]
    assert row["n"] == len(uniform) and row["n_censored"] == int(np.isinf(uniform).sum())
    assert row["median"] == censored.censored_quantile(uniform.to_numpy(), 0.5)


def test_pgd_searches_get_their_own_summary_rows_after_fgsm():
    labels, predictions, epsilons, compactness, accuracy = synthetic_study()
    fgsm = epsilons["m1"].query("search == 'uniform'")
    pgd_rows = fgsm.assign(attack="pgd", epsilon=fgsm["epsilon"] / 2)
    epsilons = {**epsilons, "m1": pd.concat([epsilons["m1"], pgd_rows], ignore_index=True)}
    table = aggregate.per_image(labels, predictions, epsilons, compactness)
    summary = aggregate.per_model(table, accuracy)
    assert list(summary.columns) == list(schema.PER_MODEL_COLUMNS)
    assert summary[["model", "attack", "search"]].values.tolist() == [
        *([m, "fgsm", k] for m in ("m1",) for k in kinds.SEARCH_KINDS),
        ["m1", "pgd", "pgd_uniform"],
        *([m, "fgsm", k] for m in ("m2",) for k in kinds.SEARCH_KINDS),
        ["m2", "pgd", "pgd_uniform"],
    ]
    pgd_row = summary[(summary["model"] == "m1") & (summary["attack"] == "pgd")].iloc[0]
    fgsm_row = summary[(summary["model"] == "m1") & (summary["search"] == "uniform")].iloc[0]
    assert pgd_row["n"] == fgsm_row["n"] and pgd_row["median"] == fgsm_row["median"] / 2
    classes = aggregate.per_class(table, bootstrap=20)
    assert list(classes.columns) == list(schema.PER_CLASS_COLUMNS)
    assert set(classes.loc[classes["attack"] == "pgd", "search"]) == {"pgd_uniform"}
    for _, rows in classes.groupby("model"):
        assert rows["attack"].tolist() == sorted(rows["attack"])  # FGSM's rows first
    curves = robustness.robustness(table, eps_max=1.0, bootstrap=20)
    assert list(curves.columns) == list(schema.ROBUSTNESS_COLUMNS)
    assert curves.loc[curves["search"] == "pgd_uniform", "attack"].eq("pgd").all()
    assert curves.loc[curves["search"] == "uniform", "attack"].eq("fgsm").all()


def test_extreme_images_put_censored_among_the_most_robust():
    epsilons = search_rows(["a", "b", "c", "d", "e"], "uniform", epsilon=[0.3, INF, 0.1, 0.2, 0.4])
    chosen = epsilon_table.extreme_images(epsilons, count=2)
    assert chosen["image_id"].tolist() == ["c", "d", "b", "e"]
    assert chosen["role"].tolist() == ["most sensitive"] * 2 + ["most robust"] * 2
    few = epsilon_table.extreme_images(epsilons.head(3), count=2)
    assert few["image_id"].tolist() == ["c", "a", "b"]  # never the same image twice


def test_localisation_joins_per_image_and_summarises_against_chance():
    labels, predictions, epsilons, compactness, _ = synthetic_study(models=("m1",))
    localisation = synthetic_localisation(compactness)
    table = aggregate.per_image(labels, predictions, epsilons, compactness, localisation)
    assert {"loc_gradcam_pointing_hit", "loc_saliency_auc", "loc_box_fraction"} <= set(table)
    summary = localisation_summary.localisation_summary(table, bootstrap=200)
    overall = summary[summary["class_name"] == "all"].set_index("heatmap")
    assert overall.index.tolist() == ["gradcam", "saliency"]
    rows = localisation["m1"]
    for heatmap in ("gradcam", "saliency"):
        boxed = rows[(rows["heatmap"] == heatmap) & (rows["status"] == "ok")]
        assert overall.loc[heatmap, "n"] == len(boxed)
        assert overall.loc[heatmap, "pointing_accuracy"] == pytest.approx(
            boxed["pointing_hit"].mean()
        )
        assert overall.loc[heatmap, "energy_in_box"] == pytest.approx(boxed["energy_in_box"].mean())
        assert overall.loc[heatmap, "chance"] == pytest.approx(boxed["box_fraction"].mean())
        assert (
            overall.loc[heatmap, "energy_ci_low"]
            <= overall.loc[heatmap, "energy_in_box"]
            <= overall.loc[heatmap, "energy_ci_high"]
        )
    per_class = summary[summary["class_name"] != "all"]
    assert per_class.groupby("heatmap")["n"].sum().tolist() == overall["n"].tolist()


def test_a_class_without_a_defined_auc_gets_nan_quietly():
    labels, predictions, epsilons, compactness, _ = synthetic_study(models=("m1",))
    table = aggregate.per_image(
        labels, predictions, epsilons, compactness, synthetic_localisation(compactness)
    )
    first_class = table["imagenet_index"] == table["imagenet_index"].iloc[0]
    table.loc[first_class, "loc_gradcam_auc"] = np.nan  # e.g. boxes covering the whole image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = localisation_summary.localisation_summary(table, bootstrap=50)
    rows = summary[(summary["heatmap"] == "gradcam") & (summary["class_name"] != "all")]
    assert np.isnan(rows["auc"].iloc[0]) and np.isfinite(rows["auc"].iloc[1:]).all()
    overall = summary[(summary["heatmap"] == "gradcam") & (summary["class_name"] == "all")]
    assert overall["auc"].iloc[0] == pytest.approx(table["loc_gradcam_auc"].mean())
