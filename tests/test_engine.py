"""The engines of forward-only calls: OpenVINO against TensorFlow, ``auto``, disagreement."""

import sys

import keras
import numpy as np
import pytest
from conftest import GPU_DEVICE_CASES, fake_devices

from robustmap import model_calls, openvino_calls, search
from robustmap.schema import ENGINE_DISAGREES, STATUSES

SHAPE = (8, 8, 3)
CLASSES = 5


def small_conv_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype(np.float32)


def test_openvino_logits_match_tensorflow_and_repeat_bit_for_bit():
    model, x = small_conv_model(), images(11)
    tensorflow = model_calls.compiled(model, SHAPE, 8).logits(x)
    calls = model_calls.compiled(model, SHAPE, 8, model_calls.OPENVINO)

    first, second = calls.logits(x), calls.logits(x)

    assert first.dtype == np.float32 and first.shape == (11, CLASSES)
    assert np.array_equal(first, second)
    np.testing.assert_allclose(first, tensorflow, rtol=0, atol=1e-5)
    assert np.array_equal(first.argmax(axis=1), tensorflow.argmax(axis=1))


def test_one_conversion_per_call_shape_and_model(monkeypatch):
    model, conversions = small_conv_model(), []
    original = openvino_calls.converted

    def counted(function):
        conversions.append(function.input_signature[0].shape[0])
        return original(function)

    monkeypatch.setattr(openvino_calls, "converted", counted)
    calls = model_calls.compiled(model, SHAPE, 8, model_calls.OPENVINO)
    assert model_calls.compiled(model, SHAPE, 8, model_calls.OPENVINO) is calls
    assert model_calls.compiled(model, SHAPE, 8) is not calls  # TensorFlow's own calls
    for _ in range(2):
        calls.logits(images(9))  # one call of 8 rows, one of bucket 4 for the last row
    assert conversions == [8, 4]


def test_conversion_sends_no_telemetry():
    model = small_conv_model()  # held here: the call cache keeps only a weak reference
    model_calls.compiled(model, SHAPE, 4, model_calls.OPENVINO).logits(images(4))
    from openvino.tools.ovc import telemetry_stub, telemetry_utils

    assert sys.modules["openvino_telemetry"] is None
    assert telemetry_utils.tm is telemetry_stub


@pytest.mark.parametrize(("nodes", "cuda_visible_devices", "gpu"), GPU_DEVICE_CASES)
def test_auto_is_tensorflow_with_a_gpu_device_node_and_openvino_without(
    tmp_path, monkeypatch, nodes, cuda_visible_devices, gpu
):
    devices = fake_devices(tmp_path, monkeypatch, nodes, cuda_visible_devices)
    expected = model_calls.TENSORFLOW if gpu else model_calls.OPENVINO
    assert model_calls.resolve_engine(model_calls.AUTO, devices) == expected
    for name in model_calls.ENGINES:  # a named engine is itself, GPU or not
        assert model_calls.resolve_engine(name, devices) == name


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine 'onnx'"):
        model_calls.resolve_engine("onnx")


def test_an_engine_that_flips_the_clean_image_gets_engine_disagrees(monkeypatch):
    """An engine stub: TensorFlow's logits, except that it misclassifies clean image 0."""
    model, x = small_conv_model(), images(6, seed=1)
    labels = model_calls.compiled(model, SHAPE, 4).logits(x).argmax(axis=1)
    expected = search.minimal_epsilon(model, x, labels, batch_size=4)
    engine = model_calls.compiled(model, SHAPE, 4, model_calls.OPENVINO)
    tensorflow_logits = model_calls.compiled(model, SHAPE, 4).logits

    def disagreeing(batch: np.ndarray) -> np.ndarray:
        logits = tensorflow_logits(batch)
        clean_zero = (batch == x[0]).reshape(len(batch), -1).all(axis=1)
        logits[clean_zero, labels[0]] -= 100.0
        return logits

    monkeypatch.setattr(engine, "logits", disagreeing)
    result = search.minimal_epsilon(model, x, labels, batch_size=4, engine=model_calls.OPENVINO)

    assert ENGINE_DISAGREES in STATUSES
    assert result.status[0] == ENGINE_DISAGREES and np.isnan(result.epsilon[0])
    assert result.adversarial_label[0] == -1 and result.forward_passes[0] == 1
    # Every other image was searched on the stub's (TensorFlow's) logits: the same result.
    assert set(expected.status[1:]) <= {search.FLIPPED, search.NOT_FLIPPED}
    assert np.array_equal(result.status[1:], expected.status[1:])
    assert np.array_equal(result.epsilon[1:], expected.epsilon[1:])
    assert np.array_equal(result.forward_passes[1:], expected.forward_passes[1:])
