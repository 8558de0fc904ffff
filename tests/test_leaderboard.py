"""The leaderboard against the tables it reads: constructed studies and the default run."""

import math

import numpy as np
import pandas as pd
import pytest
from test_aggregate import synthetic_localisation, synthetic_study

from robustmap import (
    aggregate,
    leaderboard,
    localisation_summary,
    robustness,
    schema,
    statistics,
    tables,
)
from robustmap.schema import Search

BOOTSTRAP = 200


def study_tables(models=("m1", "m2", "m3"), *, no_correct=(), pgd=False):
    """The study tables of a synthetic run; models in ``no_correct`` get no image right. With
    ``pgd``, every image's uniform search also has a PGD result, 1 to 3 times smaller."""
    labels, predictions, epsilons, compactness, accuracy = synthetic_study(models=models)
    localisation = synthetic_localisation(compactness)
    for model in no_correct:
        predictions[model]["correct"] = pd.array([False] * len(labels), dtype="boolean")
        accuracy[model] |= {"correct": 0, "top1": 0.0}
        epsilons[model] = epsilons[model].iloc[:0]
        compactness[model] = compactness[model].iloc[:0]
        localisation[model] = localisation[model].iloc[:0]
    per_image = aggregate.per_image(labels, predictions, epsilons, compactness, localisation)
    if pgd:
        per_image = with_pgd(per_image)
    resampling = {"bootstrap": BOOTSTRAP, "seed": 0}
    return {
        "per_model": aggregate.per_model(per_image, accuracy),
        "robustness": robustness.robustness(per_image, eps_max=1.0, **resampling),
        "statistics": statistics.statistics_table(per_image, **resampling),
        "localisation": localisation_summary.localisation_summary(per_image, **resampling),
        "per_image": per_image,
    }


def with_pgd(per_image: pd.DataFrame) -> pd.DataFrame:
    """The per-image table with a PGD uniform search beside FGSM's: same statuses, epsilons
    divided by a factor in [1, 3] (censored images stay censored)."""
    fgsm, pgd = Search(schema.FGSM, "uniform"), Search(schema.PGD, "uniform")
    factor = np.random.default_rng(0).uniform(1, 3, len(per_image))
    return per_image.assign(
        **{
            schema.search_column("epsilon", pgd): per_image[
                schema.search_column("epsilon", fgsm)
            ].to_numpy()
            / factor,
            schema.search_column("status", pgd): per_image[schema.search_column("status", fgsm)],
        }
    )


def board_of(study, **options):
    frames = [study[name] for name in leaderboard.INPUT_TABLES]
    return leaderboard.leaderboard(*frames, bootstrap=BOOTSTRAP, seed=0, **options)


@pytest.fixture(scope="module")
def study():
    return study_tables()


def assert_matches_tables(board: pd.DataFrame, study: dict) -> None:
    """Every leaderboard value equals the one in the table that holds it."""
    per_model, robustness = study["per_model"], study["robustness"]
    for _, row in board.iterrows():
        summary = per_model.query("model == @row.model and search == 'uniform'").iloc[0]
        assert row["scored"] == summary["scored"] and row["top1"] == summary["top1"]
        assert row["fgsm_n"] == summary["n"]
        assert row["fgsm_median"] == summary["median"] or (
            math.isnan(row["fgsm_median"]) and math.isnan(summary["median"])
        )
        curve = robustness.query("model == @row.model and search == 'uniform' and customary")
        for step, share, low, high in curve[["step", "share", "ci_low", "ci_high"]].itertuples(
            index=False
        ):
            column = f"fgsm_{leaderboard.step_column(step)}"
            assert (row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]) == (
                share,
                low,
                high,
            )


def test_values_are_those_of_the_per_model_robustness_and_localisation_tables(study):
    board = board_of(study)
    assert len(board) == 3 and board["rank"].tolist() == [1, 2, 3]
    assert_matches_tables(board, study)
    summary = study["localisation"].query("heatmap == 'gradcam' and class_name == 'all'")
    for _, row in board.iterrows():
        expected = summary.query("model == @row.model").iloc[0]
        assert row["pointing_accuracy"] == expected["pointing_accuracy"]
        assert row["pointing_chance"] == expected["chance"]


def test_rows_are_sorted_by_median_and_say_whether_they_differ_from_the_next(study):
    board = board_of(study)
    medians = board["fgsm_median"].to_numpy()
    assert (np.diff(medians) <= 0).all()
    pairs = study["statistics"].query("test == 'model_pair' and search == 'uniform'")
    for index in range(len(board) - 1):
        a, b = board["model"].iloc[index], board["model"].iloc[index + 1]
        q = pairs[
            ((pairs["a"] == a) & (pairs["b"] == b)) | ((pairs["a"] == b) & (pairs["b"] == a))
        ]["q_bh"].item()
        assert board["q_vs_next"].iloc[index] == q
        assert board["differs_from_next"].iloc[index] == (q < 0.05)
    assert math.isnan(board["q_vs_next"].iloc[-1])
    assert pd.isna(board["differs_from_next"].iloc[-1])


def test_the_cis_hold_their_estimates_and_are_seeded(study):
    board = board_of(study)
    assert (board["top1_ci_low"] <= board["top1"]).all()
    assert (board["top1"] <= board["top1_ci_high"]).all()
    assert (board["fgsm_median_ci_low"] <= board["fgsm_median"]).all()
    assert (board["fgsm_median"] <= board["fgsm_median_ci_high"]).all()
    pd.testing.assert_frame_equal(board, board_of(study))


def test_a_model_without_correct_images_is_kept_last():
    study = study_tables(("m1", "m2"), no_correct=("m2",))
    board = board_of(study)
    last = board.iloc[-1]
    assert last["model"] == "m2" and last["fgsm_n"] == 0 and math.isnan(last["fgsm_median"])
    assert last["top1"] == 0.0 and last["fgsm_robust_1_255"] == 0.0
    assert "n/a" in leaderboard.display(board).iloc[-1].tolist()


def test_pgd_adds_columns_sets_the_order_and_fgsms_overstatement(study):
    with_attacks = study_tables(pgd=True)
    board = board_of(with_attacks)
    assert (np.diff(board["pgd_median"].to_numpy()) <= 0).all()
    assert {"fgsm_median", "pgd_median", "pgd_robust_8_255"} <= set(board.columns)
    pairs = with_attacks["statistics"].query("test == 'attack_pair'")
    assert set(zip(pairs["a"], pairs["b"], pairs["search"], strict=True)) == {
        ("uniform", "pgd_uniform", "uniform")
    }
    pairs = pairs.set_index("model")
    for _, row in board.iterrows():
        found = pairs.loc[row["model"]]
        assert (
            row["fgsm_over_pgd"],
            row["fgsm_over_pgd_ci_low"],
            row["fgsm_over_pgd_ci_high"],
            row["fgsm_over_pgd_q"],
        ) == (found["estimate"], found["ci_low"], found["ci_high"], found["q_bh"])
        assert 1 < row["fgsm_over_pgd_ci_low"] < row["fgsm_over_pgd_ci_high"] < 3
    shown = leaderboard.display(board)
    assert "FGSM overstates PGD by" in shown and "PGD median ε (pgd_uniform)" in shown
    assert "fgsm_over_pgd" not in board_of(study).columns  # no PGD run: no PGD columns
    assert "pgd_median" not in board_of(study).columns


def test_display_cells():
    assert leaderboard.format_percent(0.446809) == "44.7%"
    assert leaderboard.ci_text(0.297872, 0.595745, percent=True) == "29.8–59.6%"
    assert leaderboard.ci_text(-0.821, -0.145) == "-0.821 to -0.145"
    assert leaderboard.q_text(0.0004) == "q < 0.001"
    assert leaderboard.q_text(0.04599) == "q = 0.046"
    assert leaderboard.format_epsilon_ci(0.4209, 0.1, math.inf) == "0.421 (0.1–> eps_max)"


@pytest.mark.slow
def test_the_default_runs_leaderboard_agrees_with_its_tables(workflow_run):
    folder = workflow_run / "results" / "tables"
    study = {
        name: tables.read_parquet(folder / f"{name}.parquet")
        for name in ("per_model", "robustness")
    }
    board = tables.read_parquet(folder / "leaderboard.parquet")
    assert sorted(board["model"]) == sorted(study["per_model"]["model"].unique())
    assert_matches_tables(board, study)
