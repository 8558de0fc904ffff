"""Figures: every file written, non-empty, byte-identical across runs; panels show real flips."""

import hashlib
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake, write_config
from test_aggregate import synthetic_localisation, synthetic_study

from robustmap import (
    aggregate,
    epsilon_table,
    figure_registry,
    figures,
    kinds,
    localisation_summary,
    panels,
    robustness,
    search,
    statistics,
)

SEARCHES = ["uniform", "object", "background"]


@pytest.fixture(scope="module")
def study_tables():
    labels, predictions, epsilons, compactness, accuracy = synthetic_study(classes=12, per_class=6)
    localisation = synthetic_localisation(compactness)
    per_image = aggregate.per_image(labels, predictions, epsilons, compactness, localisation)
    return (
        per_image,
        aggregate.per_class(per_image, min_class_images=4, bootstrap=100),
        aggregate.per_model(per_image, accuracy),
        statistics.statistics_table(per_image, bootstrap=100),
        robustness.robustness(per_image, eps_max=1.0, bootstrap=100),
        localisation_summary.localisation_summary(per_image, bootstrap=100),
    )


def write_all(tables, folder, *, workers):
    builders = figures.figure_builders(*tables, searches=SEARCHES, eps_max=1.0)
    paths = {name: [folder / f"{name}.{fmt}" for fmt in figures.FORMATS] for name in builders}
    listing = figures.write_figures(builders, paths, workers=workers)
    assert list(listing) == list(builders)
    for name, saved in listing.items():
        for fmt, entry in saved.items():
            assert (
                entry["sha256"]
                == hashlib.sha256((folder / f"{name}.{fmt}").read_bytes()).hexdigest()
            )
    return [Path(entry["path"]) for saved in listing.values() for entry in saved.values()]


def test_every_figure_is_written_and_stable(study_tables, tmp_path):
    """Drawn in this process, then again by two worker processes: the same bytes."""
    first = write_all(study_tables, tmp_path / "a", workers=1)
    second = write_all(study_tables, tmp_path / "b", workers=2)
    names = figure_registry.figure_names(SEARCHES)
    assert sorted(p.name for p in first) == sorted(
        f"{n}.{f}" for n in names for f in ("png", "svg")
    )
    for a, b in zip(first, second, strict=True):
        data = a.read_bytes()
        assert len(data) > 5000, a.name
        assert data == b.read_bytes(), f"{a.name} differs between two runs"
        if a.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in data[:2000] and b"<dc:date>" not in data


def test_the_workflow_declares_for_the_report_exactly_the_figures_drawn(study_tables, tmp_path):
    """rules/report.smk and figure_builders both read the registry: the same files."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["search"]["kinds"] = ["box_object", "uniform"]
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "--dry-run", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    job = run.stdout[run.stdout.index("rule figures:") :]
    outputs = job[job.index("output: ") + len("output: ") :].splitlines()[0].split(", ")
    pngs = [Path(path).stem for path in outputs if path.endswith(".png")]
    svgs = [Path(path).stem for path in outputs if path.endswith(".svg")]
    searches = kinds.search_order(config["search"]["kinds"])
    builders = figures.figure_builders(*study_tables, searches=searches, eps_max=1.0)
    assert pngs == svgs == list(builders)
    assert "class_bulk_box_object" in builders and "class_bulk_object" not in builders


def test_every_registered_figure_has_a_caption_and_a_file_of_its_own():
    files = figure_registry.figure_files(kinds.SEARCH_KINDS)
    names = [figure.name for figure in files]
    assert len(set(names)) == len(names) == 3 * len(kinds.SEARCH_KINDS) + 8
    assert names[:4] == [
        "class_epsilon_uniform",
        "class_bulk_uniform",
        "class_extremes_uniform",
        "class_epsilon_object",
    ]
    for figure in files:
        assert (REPO / "report" / f"{figure.kind.stem}.rst").is_file(), figure.kind.stem
        if figure.kind.per_search:
            assert figure.name == f"{figure.kind.stem}_{figure.search}"
        else:
            assert (figure.name, figure.search) == (figure.kind.stem, "all")


def test_figures_survive_a_model_without_any_epsilon(study_tables, tmp_path):
    per_image, per_class, per_model, tests, _, localisation = study_tables
    blank = per_image.copy()
    blank.loc[blank["model"] == "m2", [f"epsilon_{k}" for k in SEARCHES]] = np.nan
    blank.loc[blank["model"] == "m2", [f"search_status_{k}" for k in SEARCHES]] = None
    builders = figures.figure_builders(
        blank,
        aggregate.per_class(blank),
        per_model,
        statistics.statistics_table(blank, bootstrap=100),
        robustness.robustness(blank, eps_max=1.0, bootstrap=100),
        localisation.iloc[:0],
        searches=SEARCHES,
        eps_max=1.0,
    )
    for name, build in builders.items():
        assert figures.save_figure(build(), tmp_path / f"{name}.png").stat().st_size > 0


def test_class_extremes_rank_only_classes_with_enough_images(study_tables):
    per_class = aggregate.per_class(study_tables[0], min_class_images=6, bootstrap=100)
    rows = per_class[(per_class["search"] == "uniform") & (per_class["model"] == "m1")]
    figure = figures.class_extremes_figure(
        per_class, search="uniform", eps_max=1.0, count=3, min_class_images=6
    )
    sensitive = figure.axes[0]
    shown = [label.get_text().split(" (n=")[0] for label in sensitive.get_yticklabels()]
    ranked = rows[rows["ranked"]].sort_values("sensitivity_rank")["class_name"].head(3)
    assert shown == ranked.tolist()  # rank 1 first (drawn at the top)
    small = (rows["n"] > 0) & ~rows["ranked"]
    assert small.any() and rows["ranked"].sum() >= 3  # both kinds occur in the synthetic study
    counts = sensitive.texts[-1].get_text()
    assert counts == (
        f"{int(rows['ranked'].sum())} of {int((rows['n'] > 0).sum())} classes ranked, "
        f"{int(small.sum())} left out (n < 6)"
    )


def test_html_table_is_a_page_with_every_row(study_tables):
    page = figures.html_table(study_tables[2], title="Per model")
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr") == len(study_tables[2]) + 1


@pytest.fixture(scope="module")
def tiny_classifier():
    """A linear 1000-class model on 8x8 images, and images it classifies as their labels."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(1000)]
    )
    images = np.random.default_rng(0).uniform(0.3, 0.7, (4, 8, 8, 3)).astype(np.float32)
    labels = np.asarray(model(images)).argmax(axis=1).astype(np.int64)
    return model, images, labels


def test_adversarial_examples_are_the_searchs_own_probes(tiny_classifier):
    """Rebuilt from the search's recorded signs, each adversarial image is the probe the search
    ended on, bit for bit, captioned with the label the search recorded (a model call composed
    differently can disagree with it this close to the flip)."""
    model, images, labels = tiny_classifier
    signs = np.zeros(images.shape, np.int8)
    weights = {"uniform": None, "object": np.linspace(0.2, 1.0, 4 * 64).reshape(4, 8, 8)}
    found = search.minimal_epsilons(
        model, images, labels, weights=weights, eps_max=1.0, tol=1e-5, sign_out=signs
    )
    assert set(np.unique(signs)) <= {-1, 0, 1} and np.abs(signs).sum() > 0
    epsilons = {kind: result.epsilon.copy() for kind, result in found.items()}
    epsilons["uniform"][3] = np.nan  # no epsilon: the clean image is shown
    recorded = {kind: result.adversarial_label for kind, result in found.items()}
    examples = panels.adversarial_examples(
        images, signs, weights=weights, epsilons=epsilons, eps_max=1.0, adversarial_labels=recorded
    )
    for kind, result in found.items():
        assert (result.status == "flipped").all()
        adversarial, shown = examples[kind]
        np.testing.assert_array_equal(shown, result.adversarial_label)
        direction = search.fgsm_direction(model, images, labels, weights=weights[kind])
        np.testing.assert_array_equal(
            adversarial[:3], search.perturb(images, direction, result.epsilon)[:3]
        )
        assert (shown != labels).all()
    np.testing.assert_array_equal(examples["uniform"][0][3], images[3])
    assert np.abs(examples["uniform"][0][0] - images[0]).max() == pytest.approx(
        found["uniform"].epsilon[0], rel=1e-5
    )


def test_model_panel_draws_every_row_and_column(tiny_classifier, tmp_path):
    model, images, labels = tiny_classifier
    ids = [f"img{k}" for k in range(4)]
    rows = []
    for kind in SEARCHES:
        epsilon = [0.01, 0.02, np.inf, 0.3] if kind == "uniform" else [0.02, 0.04, 0.5, np.inf]
        rows.append(
            pd.DataFrame(
                {"image_id": ids, "search": kind, "epsilon": epsilon, "adversarial_label": 7}
            )
        )
    epsilons = pd.concat(rows, ignore_index=True)
    chosen = epsilon_table.extreme_images(epsilons, count=2)
    order = [ids.index(i) for i in chosen["image_id"]]
    rng = np.random.default_rng(0)
    shard = {
        "image_id": np.array(ids),
        "gradcam": rng.random((4, 8, 8)).astype(np.float32),
        "saliency": rng.random((4, 8, 8)).astype(np.float32),
    }
    heatmaps = panels.select_heatmaps([shard], chosen["image_id"].tolist())
    np.testing.assert_array_equal(heatmaps["gradcam"], shard["gradcam"][order])
    signs = search.fgsm_direction(model, images, labels).astype(np.int8)
    figure = panels.model_panel(
        name="tiny",
        chosen=chosen,
        images=images[order],
        labels=labels[order],
        signs=signs[order],
        heatmaps=heatmaps,
        epsilons=epsilons,
        object_mask="soft",
        threshold="otsu",
        eps_max=1.0,
    )
    assert len(figure.axes) == 4 * (4 + 3)
    first = figures.save_figure(figure, tmp_path / "a.png").read_bytes()
    assert len(first) > 10000
    assert "not flipped up to eps=1" in figure.axes[2 * 7 + 4].get_xlabel()  # img2, censored
    with pytest.raises(KeyError, match="ghost"):
        panels.select_heatmaps([shard], ["ghost"])


def test_saved_bytes_are_hashable_and_format_checked(tmp_path, study_tables):
    figure = figures.accuracy_figure(study_tables[2])
    path = figures.save_figure(figure, tmp_path / "accuracy.png")
    assert len(hashlib.sha256(path.read_bytes()).hexdigest()) == 64
    with pytest.raises(ValueError, match="unsupported figure format"):
        figures.save_figure(figure, tmp_path / "accuracy.jpg")
