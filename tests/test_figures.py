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
    classes,
    epsilon_table,
    figure_registry,
    figures,
    kinds,
    localisation_summary,
    panels,
    robustness,
    schema,
    search,
    statistics,
)
from robustmap.schema import FGSM, PGD, Search, search_column

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


def write_all(tables, folder, *, workers, pgd_searches=()):
    builders = figures.figure_builders(
        *tables, searches=SEARCHES, eps_max=1.0, pgd_searches=pgd_searches
    )
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
    """Drawn in this process, then again by two worker processes: the same bytes (PGD too)."""
    tables = (with_pgd(study_tables[0]), *study_tables[1:4])
    tables += (with_pgd_curves(study_tables[4]), study_tables[5])
    first = write_all(tables, tmp_path / "a", workers=1, pgd_searches=["uniform"])
    second = write_all(tables, tmp_path / "b", workers=2, pgd_searches=["uniform"])
    names = figure_registry.figure_names(SEARCHES, pgd_searches=["uniform"])
    assert names[-1] == "attack_scatter"
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
    pgd = config["search"]["pgd"]["kinds"]
    assert pgd == ["uniform"]  # the default: PGD on, so the iterative-attack figure is declared
    builders = figures.figure_builders(
        *study_tables, searches=searches, eps_max=1.0, pgd_searches=pgd
    )
    assert pngs == svgs == list(builders)
    assert "attack_scatter" in builders
    assert "class_bulk_box_object" in builders and "class_bulk_object" not in builders


def test_every_registered_figure_has_a_caption_and_a_file_of_its_own():
    files = figure_registry.figure_files(kinds.SEARCH_KINDS, pgd_searches=["uniform"])
    names = [figure.name for figure in files]
    assert len(set(names)) == len(names) == 3 * len(kinds.SEARCH_KINDS) + 9
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


def test_the_attack_figure_is_registered_under_iterative_attack_only_when_pgd_runs():
    without = figure_registry.figure_names(kinds.SEARCH_KINDS)
    assert "attack_scatter" not in without
    files = figure_registry.figure_files(kinds.SEARCH_KINDS, pgd_searches=["uniform"])
    assert [figure.name for figure in files] == [*without, "attack_scatter"]
    scatter = files[-1]
    assert (scatter.kind.category, scatter.kind.subcategory, scatter.search) == (
        "Iterative attack",
        "FGSM vs PGD",
        "all",
    )
    caption = (REPO / "report" / "attack_scatter.rst").read_text()
    assert "upper bound" in caption and "attack_pair" in caption
    builders = figures.figure_builders(
        *[pd.DataFrame({"model": [], "search": []})] * 6, searches=["uniform"], eps_max=1.0
    )
    assert "attack_scatter" not in builders


# ---- PGD beside FGSM: synthetic tables as the workflow writes them (contract of issue 24) ------


def with_pgd(per_image: pd.DataFrame, kinds_: tuple[str, ...] = ("uniform",)) -> pd.DataFrame:
    """``per_image`` with PGD columns: each image's FGSM epsilon divided by 1 to 5 (exactly 1
    for every 7th image); a censored FGSM image flips under PGD at 0.5 for every 2nd image."""
    table = per_image.copy()
    rng = np.random.default_rng(1)
    for kind in kinds_:
        fgsm = table[search_column("epsilon", Search(FGSM, kind))].to_numpy(dtype=float)
        ratio = rng.uniform(1.0, 5.0, len(table))
        ratio[::7] = 1.0
        pgd = fgsm / ratio
        pgd[np.isinf(fgsm) & (np.arange(len(table)) % 2 == 0)] = 0.5
        status = np.where(np.isinf(pgd), "not_flipped", "flipped").astype(object)
        status[np.isnan(pgd)] = None
        table[search_column("epsilon", Search(PGD, kind))] = pgd
        table[search_column("status", Search(PGD, kind))] = status
    return table


def test_attack_scatter_plots_each_image_against_the_diagonal(study_tables, tmp_path):
    table = with_pgd(study_tables[0])
    figure = figures.attack_scatter_figure(table, kinds=["uniform"], eps_max=1.0)
    assert len(figure.axes) == 2  # one panel per model
    for ax, model in zip(figure.axes, ["m1", "m2"], strict=True):
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        (diagonal,) = [line for line in ax.get_lines() if line.get_label() == "y = x"]
        data = diagonal.get_xydata()
        np.testing.assert_array_equal(data[:, 0], data[:, 1])
        rows = table[table["model"] == model]
        x = rows["epsilon_uniform"].to_numpy(dtype=float)
        y = rows["epsilon_pgd_uniform"].to_numpy(dtype=float)
        both = ~(np.isnan(x) | np.isnan(y))
        x, y = x[both], y[both]
        finite = np.isfinite(x) & np.isfinite(y)
        np.testing.assert_array_equal(
            ax.collections[0].get_offsets(), np.column_stack([x[finite], y[finite]])
        )
        censored = ax.collections[1].get_offsets()
        shown = ~np.isnan(np.asarray(censored, dtype=float)).any(axis=1)
        expected = np.minimum(np.column_stack([x, y]), 1.5)[~finite]
        np.testing.assert_array_equal(np.asarray(censored)[shown], expected)
        assert np.isinf(x).sum() > 0 and (np.isinf(x) & np.isfinite(y)).sum() > 0
        assert ax.get_title(loc="left") == (
            f"{model} (n={x.size}, below y = x: {int((y < x).sum())})\n"
            f"censored: FGSM {int(np.isinf(x).sum())}, PGD {int(np.isinf(y).sum())}"
        )
    path = figures.save_figure(figure, tmp_path / "a.png")
    again = figures.attack_scatter_figure(table, kinds=["uniform"], eps_max=1.0)
    assert figures.save_figure(again, tmp_path / "b.png").read_bytes() == path.read_bytes()


def test_attack_scatter_says_when_a_model_has_no_pgd_epsilon(study_tables, tmp_path):
    table = with_pgd(study_tables[0])
    table.loc[table["model"] == "m2", "epsilon_pgd_uniform"] = np.nan
    figure = figures.attack_scatter_figure(table, kinds=["uniform"], eps_max=1.0)
    blank = figure.axes[1]
    assert [text.get_text() for text in blank.texts] == ["m2: no PGD epsilon"]
    assert not blank.axison and figure.axes[0].axison
    nothing = figures.attack_scatter_figure(study_tables[0], kinds=["uniform"], eps_max=1.0)
    assert [ax.texts[0].get_text() for ax in nothing.axes] == [
        "m1: no PGD epsilon",
        "m2: no PGD epsilon",
    ]
    builders = figures.figure_builders(
        *study_tables, searches=SEARCHES, eps_max=1.0, pgd_searches=["uniform"]
    )
    assert list(builders)[-1] == "attack_scatter"
    assert figures.save_figure(builders["attack_scatter"](), tmp_path / "s.png").stat().st_size


def with_pgd_curves(robustness_table: pd.DataFrame) -> pd.DataFrame:
    """The robustness table's FGSM rows and PGD rows for uniform (their shares halved)."""
    fgsm = robustness_table[robustness_table["attack"] == FGSM].copy()
    pgd = fgsm[fgsm["search"] == "uniform"].assign(attack=PGD, search=Search(PGD, "uniform").name)
    pgd[["share", "ci_low", "ci_high"]] = pgd[["share", "ci_low", "ci_high"]] / 2
    return pd.concat([fgsm, pgd], ignore_index=True)


def test_robustness_curves_draw_pgd_dashed_beside_fgsm(study_tables):
    table = with_pgd_curves(study_tables[4])
    figure = figures.robustness_figure(table)
    assert [ax.get_title(loc="left") for ax in figure.axes] == [
        f"{kind} search" for kind in kinds.SEARCH_KINDS
    ]
    for ax, kind in zip(figure.axes, kinds.SEARCH_KINDS, strict=True):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
        assert [line.get_label() for line in solid] == ["m1", "m2"]
        expected = ["m1, PGD (dashed)", "m2, PGD (dashed)"] if kind == "uniform" else []
        assert [line.get_label() for line in dashed] == expected
        for line in dashed:
            model = line.get_label().split(",")[0]
            rows = table[(table["search"] == "pgd_uniform") & (table["model"] == model)]
            np.testing.assert_array_equal(line.get_xdata(), rows["epsilon"].to_numpy())
            np.testing.assert_array_equal(line.get_ydata(), rows["share"].to_numpy())
            (twin,) = [other for other in solid if other.get_label() == model]
            assert twin.get_color() == line.get_color()
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend == [*(line.get_label() for line in ax.get_lines() if line in solid + dashed)]
    fgsm_only = figures.robustness_figure(study_tables[4])
    assert not [
        line for ax in fgsm_only.axes for line in ax.get_lines() if line.get_linestyle() == "--"
    ]


def pgd_panel_inputs(tiny_classifier):
    """A model's epsilon table with FGSM and PGD rows (the contract's ``attack`` column), the
    chosen images in panel order, and a signs shard with the PGD witnesses of uniform."""
    model, images, labels = tiny_classifier
    ids = [f"img{k}" for k in range(4)]
    rows = []
    for kind in SEARCHES:
        epsilon = [0.01, 0.02, np.inf, 0.3] if kind == "uniform" else [0.02, 0.04, 0.5, np.inf]
        rows.append(pd.DataFrame({"image_id": ids, "attack": FGSM, "search": kind}))
        rows[-1] = rows[-1].assign(epsilon=epsilon, status="flipped", adversarial_label=7)
    pgd = pd.DataFrame(
        {
            "image_id": ids,
            "attack": PGD,
            "search": "uniform",
            "epsilon": [0.005, 0.01, 0.5, np.nan],
            "status": ["flipped", "flipped", "flipped", "zero_gradient"],
            "adversarial_label": pd.array([9, 9, 11, None], dtype="Int64"),
        }
    )
    epsilons = pd.concat([*rows, pgd], ignore_index=True)
    chosen = epsilon_table.extreme_images(epsilons, count=2)
    fgsm_only = epsilons[epsilons["attack"] == FGSM].drop(columns="attack")
    pd.testing.assert_frame_equal(chosen, epsilon_table.extreme_images(fgsm_only, count=2))
    order = [ids.index(i) for i in chosen["image_id"]]
    rng = np.random.default_rng(0)
    shard = {
        "image_id": np.array(ids),
        "fgsm_sign": search.fgsm_direction(model, images, labels).astype(np.int8),
        schema.pgd_delta_key("uniform"): rng.uniform(-0.4, 0.4, images.shape).astype(np.float16),
        "gradcam": rng.random((4, 8, 8)).astype(np.float32),
        "saliency": rng.random((4, 8, 8)).astype(np.float32),
    }
    return epsilons, fgsm_only, chosen, order, shard


def test_panel_has_a_pgd_column_when_the_signs_file_has_pgd_witnesses(tiny_classifier, tmp_path):
    _, images, labels = tiny_classifier
    epsilons, fgsm_only, chosen, order, shard = pgd_panel_inputs(tiny_classifier)
    ids = chosen["image_id"].tolist()
    assert schema.pgd_delta_key("uniform") == "pgd_delta_uniform"
    deltas = panels.select_pgd_deltas([shard], ids, SEARCHES)
    assert list(deltas) == ["uniform"] and deltas["uniform"].dtype == np.float16
    without = {key: value for key, value in shard.items() if not key.startswith("pgd_")}
    assert panels.select_pgd_deltas([without], ids, SEARCHES) == {}

    def panel(table, pgd_deltas):
        return panels.model_panel(
            name="tiny",
            chosen=chosen,
            images=images[order],
            labels=labels[order],
            signs=panels.select_rows([shard], ids, ["fgsm_sign"])["fgsm_sign"],
            heatmaps=panels.select_heatmaps([shard], ids),
            epsilons=table,
            object_mask="soft",
            threshold="otsu",
            eps_max=1.0,
            pgd_deltas=pgd_deltas,
        )

    figure = panel(epsilons, deltas)
    columns = 4 + 3 + 1
    assert len(figure.axes) == 4 * columns
    assert [ax.get_title() for ax in figure.axes[4:columns]] == [
        "uniform search",
        "uniform PGD",
        "object search",
        "background search",
    ]
    expected = np.clip(images[order] + shard["pgd_delta_uniform"][order].astype(np.float32), 0, 1)
    captions = [
        f"eps=0.005\n-> {classes.class_name(9)}",
        f"eps=0.01\n-> {classes.class_name(9)}",
        f"eps=0.5\n-> {classes.class_name(11)}",
        "no epsilon (zero_gradient)",
    ]
    for row in range(4):
        ax = figure.axes[row * columns + 5]
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), expected[row])
        assert ax.get_xlabel() == captions[row]
        fgsm = figure.axes[row * columns + 4].get_xlabel()
        assert fgsm.endswith(classes.class_name(7)) or fgsm.startswith("not flipped")
    figures.save_figure(figure, tmp_path / "pgd.png")
    # PGD off (no witnesses): no PGD column, the FGSM-only panel byte for byte, PGD rows or not
    plain = figures.save_figure(panel(fgsm_only, None), tmp_path / "plain.png").read_bytes()
    off = panel(epsilons, panels.select_pgd_deltas([without], ids, SEARCHES))
    assert len(off.axes) == 4 * (4 + 3)
    assert figures.save_figure(off, tmp_path / "off.png").read_bytes() == plain
