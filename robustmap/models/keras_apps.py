"""Keras-applications classifiers (MobileNetV2, ResNet50, EfficientNetB0) as flat logit models.

Each builder wraps ``keras.applications.<App>(weights=None, classifier_activation=None)`` so that
the graph reads: float32 NHWC images in [0, 1] of any size -> bilinear resize to 224 -> the
application's own input normalisation -> backbone -> logits ``[N, 1000]``. The application is
built *on* the preprocessed tensor (``input_tensor=``), so its layers join one flat functional
graph (no nested sub-model) and any layer's output is reachable for Grad-CAM. Weights are then
loaded from a local file (the Keras-applications ``.h5`` files, legacy HDF5 format, or any file
``model.load_weights`` accepts); the preprocessing layers carry no weights, so loading matches
the application's layers exactly as it would on the bare application.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from robustmap.models import resize

NATIVE_SIZE = 224
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="robustmap")
class Resize(keras.layers.Layer):
    """Differentiable resize of NHWC images to ``size`` x ``size`` (``tf.image.resize``).

    Used instead of ``keras.layers.Resizing``: in Keras 3.15 that preprocessing layer makes an
    eager ``model(x)`` call run later BatchNormalization layers in training mode (batch
    statistics), so the same model gave different logits under ``model(x)`` and ``predict``.

    Where the input's height and width are known when the call is traced (every compiled call
    of the search and the heatmaps, ``predict``, eager calls), the resize is two matrix products
    (``robustmap.models.resize``): TensorFlow's bicubic kernels run only on the CPU and XLA
    cannot compile them. Elsewhere (a symbolic build with unknown sizes) it is
    ``keras.ops.image.resize``, which the matrices match to float32 round-off.
    """

    def __init__(self, size: int, *, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.interpolation = interpolation

    def call(self, images):
        size = (self.size, self.size)
        known = images.shape[1] is not None and images.shape[2] is not None
        if known and self.interpolation in resize.METHODS:
            return resize.resize_images(images, size, self.interpolation)
        return keras.ops.image.resize(images, size, interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="robustmap")
class CaffePreprocess(keras.layers.Layer):
    """Keras 'caffe' preprocessing from [0, 1] RGB: ``255 * x[..., ::-1] - mean_BGR``."""

    def call(self, images):
        bgr = keras.ops.flip(images, axis=-1)
        return bgr * 255.0 - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=images.dtype)


def _images_input() -> keras.KerasTensor:
    return keras.Input(shape=(None, None, 3), dtype="float32", name="images")


def _resize(images: keras.KerasTensor) -> keras.KerasTensor:
    return Resize(NATIVE_SIZE, interpolation="bilinear", name="resize")(images)


def _finish(
    images: keras.KerasTensor, app: keras.Model, *, weights: str | Path, name: str
) -> keras.Model:
    """Re-wrap the application's graph under ``name`` and load its weights."""
    model = keras.Model(images, app.output, name=name)
    model.load_weights(str(weights))
    return model


def mobilenet_v2(*, weights: str | Path, name: str = "mobilenet_v2") -> keras.Model:
    """MobileNetV2 (alpha 1.0, 224): normalisation ``2x - 1`` (Keras 'tf' mode from [0, 1])."""
    images = _images_input()
    x = keras.layers.Rescaling(scale=2.0, offset=-1.0, name="normalise")(_resize(images))
    app = keras.applications.MobileNetV2(input_tensor=x, weights=None, classifier_activation=None)
    return _finish(images, app, weights=weights, name=name)


def resnet50(*, weights: str | Path, name: str = "resnet50") -> keras.Model:
    """ResNet50: Keras 'caffe' normalisation (BGR, 0-255, ImageNet mean subtracted)."""
    images = _images_input()
    x = CaffePreprocess(name="normalise")(_resize(images))
    app = keras.applications.ResNet50(input_tensor=x, weights=None, classifier_activation=None)
    return _finish(images, app, weights=weights, name=name)


def efficientnet_b0(*, weights: str | Path, name: str = "efficientnet_b0") -> keras.Model:
    """EfficientNetB0: the application normalises internally from a 0-255 input.

    The application rescales by 1/255 and applies its ``normalization`` layer, whose mean and
    variance come from the weights file. Built with ``weights=None``, Keras omits the extra
    per-channel rescaling it adds for ``weights="imagenet"`` (the published files store the
    standard deviations where variances belong), so after loading we set that layer to the exact
    ImageNet statistics, making its output ``(x - mean) / std`` as intended.
    """
    images = _images_input()
    x = keras.layers.Rescaling(scale=255.0, name="to_0_255")(_resize(images))
    app = keras.applications.EfficientNetB0(
        input_tensor=x, weights=None, classifier_activation=None
    )
    model = _finish(images, app, weights=weights, name=name)
    (normalization,) = [
        layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)
    ]
    normalization.adapt_mean.assign(np.asarray(IMAGENET_MEAN_RGB, dtype=np.float32))
    normalization.adapt_variance.assign(
        np.asarray([s * s for s in IMAGENET_STDDEV_RGB], dtype=np.float32)
    )
    normalization.finalize_state()
    return model


GRADCAM_LAYERS = {
    "mobilenet_v2": "out_relu",
    "resnet50": "conv5_block3_out",
    "efficientnet_b0": "top_activation",
}
