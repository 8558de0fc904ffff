"""Human bounding boxes: box weights, box searches and the embedded recipe's boxes."""

import keras
import numpy as np
import pytest

from robustmap import embedded, kinds, localisation, measure, schema, search

SIZE = 8


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )


def images_and_labels(model: keras.Model, n: int = 6):
    images = np.random.default_rng(2).uniform(0.3, 0.7, (n, SIZE, SIZE, 3)).astype(np.float32)
    return images, np.asarray(model(images)).argmax(axis=1).astype(np.int64)


def test_box_weights_hard_and_soft_edges():
    box = np.array([[2, 3, 4, 5]])
    hard = localisation.box_weights(box, (SIZE, SIZE))[0]
    assert hard.sum() == 9 and hard[3, 2] == 1 and hard[5, 4] == 1 and hard[2, 2] == 0
    soft = localisation.box_weights(box, (SIZE, SIZE), border=2)[0]
    assert soft[3, 2] == 1.0
    assert soft[3, 1] == pytest.approx(2 / 3) and soft[3, 0] == pytest.approx(1 / 3)
    assert soft[0, 0] == 0.0  # three pixels from the box: beyond the border
    assert soft[1, 1] == pytest.approx(1 / 3)  # chessboard distance 2


def test_box_search_weights_come_from_the_boxes_their_border_and_validity():
    boxes = np.array([[2, 3, 4, 5], [0, 0, 1, 1]])
    weights = measure.search_weights_by_kind(
        ["box_object", "box_background"],
        None,
        object_mask=None,
        threshold=None,
        boxes=boxes,
        box_valid=np.array([True, False]),
        box_border=1,
        shape=(SIZE, SIZE),
    )
    inside, edge, beyond = 1.0, 0.5, 0.0  # border 1: half weight one pixel from the box
    expected = np.full((SIZE, SIZE), beyond, np.float32)
    expected[2:7, 1:6] = edge
    expected[3:6, 2:5] = inside
    np.testing.assert_array_equal(weights["box_object"][0], expected)
    np.testing.assert_array_equal(weights["box_object"][1], np.zeros((SIZE, SIZE)))  # no box
    np.testing.assert_array_equal(weights["box_background"], 1.0 - weights["box_object"])
    assert weights["box_object"].dtype == weights["box_background"].dtype == np.float32


def test_scale_boxes_keeps_a_same_size_box_and_covers_resized_pixels():
    boxes = np.array([[1, 2, 3, 5]])
    np.testing.assert_array_equal(
        localisation.scale_boxes(boxes, np.array([[8, 8]]), (8, 8)), boxes
    )
    doubled = localisation.scale_boxes(boxes, np.array([[8, 8]]), (16, 16))
    np.testing.assert_array_equal(doubled, [[2, 4, 7, 11]])
    halved = localisation.scale_boxes(np.array([[1, 1, 2, 2]]), np.array([[8, 8]]), (4, 4))
    np.testing.assert_array_equal(halved, [[0, 0, 1, 1]])


def test_box_object_with_a_full_image_box_is_exactly_the_uniform_search():
    model = tiny_model()
    images, labels = images_and_labels(model)
    full = np.tile([0, 0, SIZE - 1, SIZE - 1], (len(images), 1))
    weights = measure.search_weights_by_kind(
        kinds.SEARCH_KINDS[:1] + ("box_object", "box_background"),
        None,
        object_mask=None,
        threshold=None,
        boxes=full,
        box_valid=np.ones(len(images), bool),
        shape=(SIZE, SIZE),
    )
    found = search.minimal_epsilons(model, images, labels, weights=weights, eps_max=1.0, tol=1e-5)
    for field in ("epsilon", "adversarial_label", "forward_passes", "status"):
        np.testing.assert_array_equal(
            getattr(found["box_object"], field), getattr(found["uniform"], field)
        )
    assert (found["uniform"].status == search.FLIPPED).all()
    assert (found["box_background"].status == search.ZERO_GRADIENT).all()  # nothing to perturb
    assert np.isinf(found["box_background"].epsilon).all()


def test_images_without_a_box_get_a_no_box_row_not_a_missing_or_censored_one():
    model = tiny_model()
    images, labels = images_and_labels(model, n=4)
    boxes = np.array([[1, 1, 5, 5]] * 4)
    valid = np.array([True, False, True, False])
    names = ("uniform", "box_object", "box_background")
    weights = measure.search_weights_by_kind(
        names,
        None,
        object_mask=None,
        threshold=None,
        boxes=boxes,
        box_valid=valid,
        shape=(SIZE, SIZE),
    )
    frames = measure.search_tables(
        model,
        np.array(["a", "b", "c", "d"]),
        images,
        labels,
        weights=weights,
        eps_max=1.0,
        tol=1e-5,
        batch_size=4,
        box_valid=valid,
        pgd_settings={"kinds": ["uniform", "box_object"], "steps": 5, "rel_tol": 0.01},
    )
    for kind in ("box_object", "box_background"):
        frame = frames[kind][frames[kind]["attack"] == "fgsm"].set_index("image_id")
        assert frame.loc[["b", "d"], "status"].tolist() == ["no_box", "no_box"]
        assert frame.loc[["b", "d"], "epsilon"].isna().all()
        assert frame.loc[["b", "d"], "forward_passes"].tolist() == [0, 0]
        assert frame.loc[["a", "c"], "status"].isin(["flipped", "not_flipped"]).all()
    assert (frames["uniform"]["status"] != "no_box").all()
    # PGD rows of a box kind: no_box too, with PGD's own fields
    pgd_rows = frames["box_object"][frames["box_object"]["attack"] == "pgd"].set_index("image_id")
    assert pgd_rows.loc[["b", "d"], "status"].tolist() == ["no_box", "no_box"]
    assert pgd_rows.loc[["b", "d"], ["epsilon", "epsilon_low"]].isna().all().all()
    assert pgd_rows.loc[["b", "d"], "gradient_passes"].tolist() == [0, 0]
    assert pgd_rows["forward_passes"].isna().all() and pgd_rows["non_monotone"].isna().all()
    assert "pgd" not in set(frames["box_background"]["attack"])
    with pytest.raises(ValueError, match="box_object search needs the human boxes"):
        measure.search_weights_by_kind(["box_object"], None, object_mask=None, threshold=None)


def test_every_kind_has_a_source_and_the_vocabulary_refuses_strangers():
    assert [kinds.source_of(k) for k in kinds.SEARCH_KINDS] == [
        "none",
        "gradcam",
        "gradcam",
        "box",
        "box",
    ]
    assert kinds.search_order(["box_object", "zeta", "uniform"]) == [
        "uniform",
        "box_object",
        "zeta",
    ]
    with pytest.raises(ValueError, match="unknown search kind 'sideways'; known: uniform"):
        kinds.check_kinds(["uniform", "sideways"])


def test_embedded_views_carry_the_object_box_and_a_lost_object_has_none():
    # a view of the top-left quarter of a photo whose object sits in the bottom-right corner
    assert embedded.view_box((0.8, 0.8, 0.9, 0.9), (100, 100), (0, 0, 50, 50), 64) is None
    # a tight zoom inside a large object keeps the object: the box covers the view
    assert embedded.view_box((0.0, 0.0, 1.0, 1.0), (100, 100), (40, 40, 60, 60), 64) == (
        0,
        0,
        63,
        63,
    )
    # a box in the middle of the whole photo, resized from 100 to 64 pixels
    assert embedded.view_box((0.25, 0.5, 0.75, 1.0), (100, 100), (0, 0, 100, 100), 64) == (
        16,
        32,
        47,
        63,
    )


def test_the_search_job_runs_pgd_after_fgsm_and_never_above_it():
    """Each PGD kind's table holds its FGSM rows, then its PGD rows, in image order; PGD's
    epsilon is never above FGSM's of the same image and kind, and its witness is recorded."""
    model = tiny_model()
    images, labels = images_and_labels(model, n=6)
    ids = np.array([f"i{n}" for n in range(6)])
    deltas = {}
    frames = measure.search_tables(
        model,
        ids,
        images,
        labels,
        weights={"uniform": None},
        eps_max=1.0,
        tol=1e-5,
        batch_size=4,
        pgd_settings={"kinds": ["uniform"], "steps": 5, "rel_tol": 0.01},
        delta_out=deltas,
    )
    table = frames["uniform"]
    assert list(table.columns) == schema.SEARCH_COLUMNS
    assert table["attack"].tolist() == ["fgsm"] * 6 + ["pgd"] * 6
    assert table["image_id"].tolist() == [*ids, *ids] and set(table["search"]) == {"uniform"}
    fgsm = table[table["attack"] == "fgsm"].set_index("image_id")
    found = table[table["attack"] == "pgd"].set_index("image_id")
    assert fgsm["epsilon_low"].isna().all() and fgsm["gradient_passes"].isna().all()
    assert (found["status"] == "flipped").sum() >= 3
    flipped = found["status"] == "flipped"
    assert (found.loc[flipped, "epsilon"] <= fgsm.loc[flipped, "epsilon"]).all()
    assert (found.loc[flipped, "gradient_passes"] >= 2).all()  # the clean pass and a point
    assert deltas["uniform"].shape == images.shape and deltas["uniform"][flipped.to_numpy()].any()
