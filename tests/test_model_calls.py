"""robustmap.model_calls: call shapes, padding, the per-model cache and the logit margin."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from robustmap import model_calls

SHAPE = (3, 4, 2)


def linear_model(seed: int = 0) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """logits = flatten(x) @ weight + bias, 5 classes: every row computed on its own."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 1.0, (int(np.prod(SHAPE)), 5)).astype(np.float32)
    bias = rng.normal(0.0, 1.0, 5).astype(np.float32)
    inputs = keras.Input(SHAPE)
    dense = keras.layers.Dense(5)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([weight, bias])
    return model, weight, bias


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *SHAPE)).astype(np.float32)


def call_rows(x: tf.Tensor) -> tf.Tensor:
    """Each row's output is the number of rows of the call it ran in."""
    rows = tf.shape(x)[0]
    return tf.fill([rows], rows)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (1, (4,)),
        (4, (4,)),
        (5, (5, 4)),
        (8, (8, 4)),
        (16, (16, 4)),
        (32, (32, 8, 4)),
        (64, (64, 16, 4)),
        (100, (100, 25, 6, 4)),
    ],
)
def test_buckets_divide_by_four_down_to_min_rows(rows, expected):
    assert model_calls.MIN_ROWS == 4
    assert model_calls.buckets(rows) == expected


@pytest.mark.parametrize(
    ("total", "shapes"),
    [
        (37, [16] * 37),  # a tail of 5 takes a full call: no bucket between 16 and 4 holds it
        (35, [16] * 32 + [4] * 3),
        (16, [16] * 16),
        (1, [4]),
    ],
)
def test_a_batched_call_runs_full_calls_and_one_bucketed_tail(total, shapes):
    call = model_calls.BatchedCall(call_rows, [(SHAPE, np.float32)], 16)
    (out,) = call(images(total))
    assert out.tolist() == shapes
    assert call.rows == 16 and call.buckets == (16, 4)


def test_a_batched_call_of_any_row_count_runs_its_tail_unpadded():
    call = model_calls.BatchedCall(call_rows, [(SHAPE, np.float32)], 16, fixed_shapes=False)
    (out,) = call(images(35))
    assert out.tolist() == [16] * 32 + [3] * 3
    assert call.buckets == ()
    with pytest.raises(ValueError, match="rows must be positive"):
        model_calls.BatchedCall(call_rows, [(SHAPE, np.float32)], 0)


def test_a_batched_call_returns_every_output_and_empty_inputs_keep_their_shapes():
    def body(x, y):
        return tf.reduce_sum(x, axis=(1, 2, 3)), y * 2

    call = model_calls.BatchedCall(body, [(SHAPE, np.float32), ((), np.int32)], 4)
    x, y = images(6), np.arange(6)
    sums, doubled = call(x, y)
    np.testing.assert_allclose(sums, x.sum(axis=(1, 2, 3)), rtol=1e-6)
    assert doubled.tolist() == [0, 2, 4, 6, 8, 10] and doubled.dtype == np.int32
    sums, doubled = call(x[:0], y[:0])
    assert sums.shape == (0,) and doubled.shape == (0,)


def test_padding_does_not_change_a_row_independent_models_results():
    """Every prefix of 11 images (full calls of 8, tails padded to 8 or 4) gives exactly the
    rows of the whole; the values are the linear model's."""
    model, weight, bias = linear_model()
    x, y = images(11), np.arange(11) % 5
    calls = model_calls.compiled(model, SHAPE, 8)
    logits = calls.logits(x)
    logits_with_gradient, gradient = calls.logits_and_gradient(x, y)
    for n in (1, 3, 4, 5, 8, 9):
        np.testing.assert_array_equal(calls.logits(x[:n]), logits[:n])
        clean, grad = calls.logits_and_gradient(x[:n], y[:n])
        np.testing.assert_array_equal(clean, logits_with_gradient[:n])
        np.testing.assert_array_equal(grad, gradient[:n])
    exact = x.reshape(11, -1).astype(np.float64) @ weight + bias
    np.testing.assert_allclose(logits, exact, rtol=1e-5, atol=1e-5)
    softmax = np.exp(exact - exact.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    cross_entropy_gradient = (softmax - np.eye(5)[y]) @ weight.T
    np.testing.assert_allclose(gradient.reshape(11, -1), cross_entropy_gradient, atol=1e-5)


def test_the_cache_holds_one_object_per_model_shape_and_rows_without_keeping_the_model():
    model, _, _ = linear_model()
    calls = model_calls.compiled(model, SHAPE, 8)
    assert model_calls.compiled(model, list(SHAPE), 8) is calls
    assert model_calls.compiled(model, SHAPE, 2) is model_calls.compiled(model, SHAPE, 4)
    assert model_calls.compiled(model, SHAPE, 16) is not calls
    assert model_calls.compiled(linear_model()[0], SHAPE, 8) is not calls
    calls.logits(images(3))  # traced: the traces must not hold the model either
    alive = weakref.ref(model)
    del model, calls
    gc.collect()
    assert alive() is None


def test_the_margin_is_the_true_logit_minus_the_best_other():
    logits = np.array([[1.0, 5.0, 3.0], [2.0, 2.0, 0.0], [-1.0, -4.0, -2.0]], np.float32)
    margin, argmax = model_calls.margin(logits, np.array([1, 0, 2]))
    assert margin.dtype == np.float64 and argmax.dtype == np.int64
    assert margin.tolist() == [2.0, 0.0, -1.0]
    assert argmax.tolist() == [1, 0, 0]
    single, _ = model_calls.margin(logits[:, :1], np.zeros(3, np.int64))
    assert single.tolist() == [np.inf] * 3


def test_the_margin_rounds_in_the_dtype_asked_for():
    """1 + 2^-23 minus 2^-30: float32 rounds the difference back to 1 + 2^-23."""
    top, other = np.float32(1 + 2**-23), np.float32(2**-30)
    logits = np.array([[top, other]], np.float32)
    exact, _ = model_calls.margin(logits, np.array([0]))
    rounded, _ = model_calls.margin(logits, np.array([0]), dtype=np.float32)
    assert exact[0] == np.float64(top) - np.float64(other) != np.float64(top)
    assert rounded.dtype == np.float32 and rounded[0] == top
