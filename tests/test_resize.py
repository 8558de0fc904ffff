"""Resize matrices against ``tf.image.resize``: values and input gradients, random inputs."""

import numpy as np
import pytest
import tensorflow as tf

from robustmap.models import resize
from robustmap.models.keras_apps import Resize

CASES = [
    ((64, 64), (224, 224)),
    ((64, 64), (240, 240)),
    ((64, 64), (260, 260)),
    ((37, 53), (224, 240)),
]
LIMIT = 1e-5


def values_and_gradients(function, x: np.ndarray, cotangent: np.ndarray):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = function(x)
        loss = tf.reduce_sum(out * cotangent)
    return out.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("method", resize.METHODS)
@pytest.mark.parametrize(("in_size", "out_size"), CASES, ids=lambda s: "x".join(map(str, s)))
def test_matrices_match_tf_image_resize(in_size, out_size, method):
    rng = np.random.default_rng(sum(in_size) + sum(out_size))
    x = rng.random((2, *in_size, 3), dtype=np.float32)
    # Scaled so that input gradients are O(1): each input pixel feeds about out/in outputs per
    # axis. (TensorFlow's own float32 gradient kernel is ~1e-6 relative off the exact adjoint.)
    scale = np.prod(in_size) / np.prod(out_size)
    cotangent = (rng.uniform(-1.0, 1.0, (2, *out_size, 3)) * scale).astype(np.float32)

    expected = values_and_gradients(
        lambda t: tf.image.resize(t, out_size, method=method), x, cotangent
    )
    ours = values_and_gradients(lambda t: resize.resize_images(t, out_size, method), x, cotangent)

    for want, got in zip(expected, ours, strict=True):
        assert np.abs(got - want).max() <= LIMIT


def test_the_matrix_is_the_identity_at_the_same_size_and_rows_sum_to_one():
    for method in resize.METHODS:
        np.testing.assert_array_equal(resize.resize_matrix(64, 64, method), np.eye(64))
        matrix = resize.resize_matrix(64, 224, method)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)


def test_the_layer_uses_matrices_for_known_sizes_and_tf_otherwise():
    layer = Resize(224, interpolation="bicubic")
    x = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    unknown = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(layer(x).numpy(), unknown(x).numpy(), atol=LIMIT)
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec([2, 64, 64, 3])).graph
    ops = {op.type for op in graph.get_operations()}
    assert "ResizeBicubic" not in ops
    assert "ResizeBicubic" in {
        op.type for op in unknown.get_concrete_function().graph.get_operations()
    }
