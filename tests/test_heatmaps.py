"""Grad-CAM, saliency and object/background weights on hand-built models with known answers."""

import keras
import numpy as np
import pytest
import skimage.filters

from robustmap.heatmaps import (
    background_weights,
    gradcam,
    normalise_for_display,
    object_weights,
    saliency,
)
from robustmap.models import gradcam_layer

SIZE = 16
HALF = SIZE // 2


def quadrant_model() -> keras.Model:
    """16x16 grey images -> two fixed feature channels -> three logits with known evidence.

    Channel ``bright`` = ReLU(x), channel ``dark`` = ReLU(1 - x), both average-pooled to 8x8
    (layer ``features``, so Grad-CAM must upsample), read out by a fixed linear layer: logit 0 =
    mean of ``bright`` over the top-left feature quadrant; logit 1 = mean of ``dark`` over the
    bottom-right quadrant; logit 2 = minus the mean of ``bright`` (negative evidence only).
    """
    inputs = keras.Input((SIZE, SIZE, 1))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="detectors")
    detectors = conv(inputs)
    conv.set_weights([np.array([[[[1.0, -1.0]]]]), np.array([0.0, 1.0])])
    features = keras.layers.AveragePooling2D(2, name="features")(detectors)
    readout = keras.layers.Dense(3, use_bias=False, name="readout")
    logits = readout(keras.layers.Flatten()(features))
    weights = np.zeros((HALF, HALF, 2, 3))  # Flatten keeps the (row, col, channel) order
    quarter = HALF // 2
    weights[:quarter, :quarter, 0, 0] = 1 / quarter**2
    weights[quarter:, quarter:, 1, 1] = 1 / quarter**2
    weights[:, :, 0, 2] = -1 / HALF**2
    readout.set_weights([weights.reshape(-1, 3)])
    return keras.Model(inputs, logits)


def top_left_bright_image() -> np.ndarray:
    image = np.zeros((1, SIZE, SIZE, 1), dtype=np.float32)
    image[0, :HALF, :HALF] = 1.0
    return image


def one_pixel_model(row: int, col: int, height: int = 8, width: int = 8) -> keras.Model:
    """Logits = W @ (RGB of pixel (row, col)): reads nothing else of the image."""
    inputs = keras.Input((height, width, 3))
    pixel = keras.layers.Cropping2D(((row, height - row - 1), (col, width - col - 1)))(inputs)
    dense = keras.layers.Dense(2, use_bias=False, name="readout")
    logits = dense(keras.layers.Flatten()(pixel))
    dense.set_weights([np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]])])
    return keras.Model(inputs, logits)


def small_convnet() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="normalise")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu", name="conv_last")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = keras.layers.Conv2D(5, 1, name="head")(x)  # 1 x 1 "spatial" head: no location
    logits = keras.layers.Flatten(name="logits")(x)
    return keras.Model(inputs, logits)


def quadrant_mass(cam: np.ndarray) -> float:
    return float(cam[:HALF, :HALF].sum() / cam.sum())


def test_gradcam_lands_in_the_quadrant_holding_the_evidence():
    model = quadrant_model()
    assert gradcam_layer(model) == "features"
    cams = gradcam(
        model, np.repeat(top_left_bright_image(), 3, axis=0), np.array([0, 1, 2]), layer="features"
    )
    assert cams.shape == (3, SIZE, SIZE) and cams.dtype == np.float32

    evidence_top_left = cams[0]
    row, col = np.unravel_index(np.argmax(evidence_top_left), evidence_top_left.shape)
    assert row < HALF and col < HALF
    assert quadrant_mass(evidence_top_left) > 0.9
    # Raw magnitude: weight 1/64 (= 16 cells * 1/16 / 64 cells) times activation 1.
    assert evidence_top_left[0, 0] == pytest.approx(1 / 64)
    assert evidence_top_left[-1, -1] == 0.0

    dark_evidence = cams[1]  # 'dark' is active everywhere except the bright quadrant
    assert quadrant_mass(dark_evidence) < 0.05
    assert np.all(cams[2] == 0.0)  # negative evidence only: ReLU leaves nothing


def test_gradcam_accepts_an_explicit_layer_and_batches_consistently():
    model = quadrant_model()
    images = np.random.default_rng(0).random((5, SIZE, SIZE, 1), dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 0])
    layer = gradcam_layer(model)
    whole = gradcam(model, images, labels, layer=layer, batch_size=5)
    np.testing.assert_allclose(
        gradcam(model, images, labels, layer=layer, batch_size=2), whole, rtol=1e-6
    )
    at_detectors = gradcam(model, images, labels, layer="detectors")
    assert at_detectors.shape == whole.shape
    assert not np.allclose(at_detectors, whole)


def test_gradcam_layer_skips_one_by_one_maps():
    assert gradcam_layer(small_convnet()) == "conv_last"
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="spatial"):
        gradcam_layer(flat)


def test_saliency_is_nonzero_only_at_the_pixel_the_model_reads():
    row, col = 2, 5
    model = one_pixel_model(row, col)
    images = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
    labels = np.array([0, 1])
    maps = saliency(model, images, labels)
    assert maps.shape == (2, 8, 8) and maps.dtype == np.float32
    others = np.ones((8, 8), dtype=bool)
    others[row, col] = False
    assert np.all(maps[:, others] == 0.0)
    # dCE/dx = W (softmax(z) - onehot(y)); the map is its largest absolute channel entry.
    readout = model.get_layer("readout").get_weights()[0]
    for index, label in enumerate(labels):
        logits = images[index, row, col] @ readout
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        gradient = readout @ (probabilities - np.eye(2)[label])
        assert maps[index, row, col] == pytest.approx(np.abs(gradient).max(), rel=1e-5)


def test_smoothgrad_is_seeded_and_independent_of_batch_size():
    model = small_convnet()
    images = np.random.default_rng(2).random((4, 12, 12, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, 3])
    first = saliency(model, images, labels, smoothgrad_samples=3, seed=7, batch_size=4)
    again = saliency(model, images, labels, smoothgrad_samples=3, seed=7, batch_size=4)
    np.testing.assert_array_equal(first, again)
    rebatched = saliency(model, images, labels, smoothgrad_samples=3, seed=7, batch_size=3)
    np.testing.assert_allclose(rebatched, first, rtol=1e-6, atol=1e-9)
    other_seed = saliency(model, images, labels, smoothgrad_samples=3, seed=8, batch_size=4)
    assert not np.allclose(other_seed, first)
    plain = saliency(model, images, labels)
    assert not np.allclose(plain, first)
    assert np.all(first >= 0)


def test_soft_object_weights_scale_each_map_and_background_complements():
    cams = np.random.default_rng(3).gamma(1.0, size=(3, 10, 10)).astype(np.float32)
    cams[2] = 0.25  # flat map: no location, every pixel counts as object
    soft = object_weights(cams, mode="soft")
    assert soft.dtype == np.float32 and soft.shape == cams.shape
    for index in (0, 1):
        assert soft[index].min() == 0.0 and soft[index].max() == 1.0
        expected = (cams[index] - cams[index].min()) / (cams[index].max() - cams[index].min())
        np.testing.assert_allclose(soft[index], expected, rtol=1e-6)
    np.testing.assert_array_equal(soft[2], 1.0)
    background = background_weights(soft)
    assert background.dtype == np.float32
    np.testing.assert_array_equal(background, 1.0 - soft)
    assert background.min() >= 0.0 and background.max() <= 1.0


@pytest.mark.parametrize("method", ["otsu", "li", "yen", "mean"])
def test_hard_object_weights_agree_with_scikit_image(method):
    cams = np.random.default_rng(4).gamma(0.7, size=(3, 12, 12)).astype(np.float32)
    hard = object_weights(cams, mode="hard", threshold=method)
    threshold = getattr(skimage.filters, f"threshold_{method}")
    for cam, weights in zip(cams, hard, strict=True):
        np.testing.assert_array_equal(weights, (cam > threshold(cam)).astype(np.float32))
    assert set(np.unique(hard)) <= {0.0, 1.0}


def test_hard_object_weights_with_a_fraction_of_the_range():
    cam = np.arange(10, dtype=np.float32).reshape(1, 2, 5) + 1.0  # values 1..10
    hard = object_weights(cam, mode="hard", threshold=0.5)  # threshold 1 + 0.5 * 9 = 5.5
    np.testing.assert_array_equal(hard.ravel(), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(object_weights(np.zeros((1, 3, 3)), mode="hard"), 1.0)
    with pytest.raises(ValueError, match="mode"):
        object_weights(cam, mode="fuzzy")


def test_normalise_for_display_clips_at_the_percentile():
    heatmap = np.zeros((10, 10), dtype=np.float32)
    heatmap[0, :] = np.arange(10)  # 91 zeros, then 1..9: the 99th percentile is 8.01
    shown = normalise_for_display(heatmap)
    assert shown.shape == heatmap.shape
    assert shown.min() == 0.0 and shown[0, 9] == 1.0  # clipped
    assert shown[0, 8] == pytest.approx(8 / 8.01)
    sparse = np.zeros((1, 10, 10), dtype=np.float32)
    sparse[0, 3, 3] = 2.0  # percentile 0: fall back to the maximum
    np.testing.assert_array_equal(normalise_for_display(sparse), sparse / 2.0)
    np.testing.assert_array_equal(normalise_for_display(np.zeros((2, 4, 4))), 0.0)
