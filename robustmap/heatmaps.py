"""Where does a classifier look? Grad-CAM, gradient saliency, and the weights they induce.

All maps are float32 ``[N, H, W]`` at the input image size and keep their raw magnitude; scale
them only for display (:func:`normalise_for_display`) or for the search weights
(:func:`object_weights`). Gradients are taken of LOGITS (never of softmax outputs), in inference
mode, in the fixed-shape calls of :class:`robustmap.model_calls.BatchedCall`.

Models are flat Functional Keras models mapping NHWC float32 images in [0, 1] to logits
``[N, classes]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from robustmap import model_calls
from robustmap.compactness import threshold_value

if TYPE_CHECKING:
    import keras

# TensorFlow and Keras are imported by the functions that run a model: the search weights
# (:func:`object_weights`) are numpy, and jobs that only build them start without TensorFlow.


def gradcam(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    layer: str,
    batch_size: int = 32,
) -> np.ndarray:
    """Grad-CAM of each image for its given class.

    For class ``y`` with logit ``z_y`` and layer activations ``A`` (``[h, w, K]``):
    ``w_k = mean_{i,j} dz_y / dA_ijk`` and ``cam = ReLU(sum_k w_k A_k)``, upsampled bilinearly
    to the image size. No normalisation: the magnitude is in logit units.

    Args:
        model: Functional Keras model, images -> logits.
        images: float32 ``[N, H, W, C]`` in [0, 1].
        labels: int ``[N]`` class indices (the true classes in the study).
        layer: name of the layer whose activations are weighed (the workflow asks
            :func:`robustmap.models.gradcam_layer`, the one rule for every model).
        batch_size: images per gradient evaluation.

    Returns:
        float32 ``[N, H, W]``, nonnegative.
    """
    import keras
    import tensorflow as tf

    images, labels = _checked_inputs(images, labels, batch_size)
    probe = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    image_size = images.shape[1:3]

    def cam_batch(batch: tf.Tensor, batch_labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            activations, logits = probe(batch, training=False)
            # Images do not interact in inference mode, so the gradient of the summed class
            # logits is each image's own gradient.
            class_logits = tf.gather(logits, batch_labels, axis=1, batch_dims=1)
        gradients = tape.gradient(class_logits, activations)
        channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(channel_weights * activations, axis=-1, keepdims=True))
        return tf.image.resize(cams, image_size, method="bilinear")[..., 0]

    return _batched(cam_batch, images, batch_size)(images, labels)[0]


def saliency(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    smoothgrad_samples: int = 0,
    noise_sigma: float = 0.15,
    seed: int = 0,
    batch_size: int = 32,
) -> np.ndarray:
    """Gradient saliency ``max_c |d CE(logits(x), y) / dx_c|`` per pixel, optionally SmoothGrad.

    The loss is the softmax cross-entropy on logits, the same loss whose gradient sign the FGSM
    searches follow, so the map shows where the attack's gradient is large. (``d z_y / dx`` would
    ignore the competing classes the attack pushes towards.) Confident images have small
    gradients; the compactness scores are scale invariant, so this does not bias them.

    SmoothGrad (``smoothgrad_samples > 0``) averages the map over that many noisy copies
    ``x + N(0, noise_sigma^2)`` (no clipping; ``noise_sigma`` is in image units, i.e. a fraction
    of the [0, 1] range). The noise of image ``i`` and sample ``s`` is drawn from
    ``numpy.random.default_rng([seed, i, s])``, so the result depends on the seed and on the
    image's position in ``images`` only, never on ``batch_size``.

    Args:
        model: Functional Keras model, images -> logits.
        images: float32 ``[N, H, W, C]`` in [0, 1].
        labels: int ``[N]`` class indices.
        smoothgrad_samples: number of noisy copies; 0 = plain gradient.
        noise_sigma: standard deviation of the SmoothGrad noise.
        seed: SmoothGrad noise seed.
        batch_size: images per gradient evaluation.

    Returns:
        float32 ``[N, H, W]``, nonnegative.
    """
    import tensorflow as tf

    images, labels = _checked_inputs(images, labels, batch_size)
    if smoothgrad_samples < 0 or noise_sigma < 0:
        raise ValueError("smoothgrad_samples and noise_sigma must be nonnegative")

    def saliency_batch(batch: tf.Tensor, batch_labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(batch)
            logits = model(batch, training=False)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(batch_labels, logits)
        gradients = tape.gradient(losses, batch)
        return tf.reduce_max(tf.abs(gradients), axis=-1)

    call = _batched(saliency_batch, images, batch_size)
    if smoothgrad_samples == 0:
        return call(images, labels)[0]
    total = np.zeros(images.shape[:3], dtype=np.float64)
    for sample in range(smoothgrad_samples):
        noisy = images + _smoothgrad_noise(images.shape, seed=seed, sample=sample) * noise_sigma
        total += call(noisy.astype(np.float32), labels)[0]
    return (total / smoothgrad_samples).astype(np.float32)


def object_weights(
    cam: np.ndarray,
    *,
    mode: str = "soft",
    threshold: str | float = "otsu",
) -> np.ndarray:
    """Per-pixel object weights in [0, 1] from Grad-CAM maps.

    ``soft``: each map min-max scaled to [0, 1]. ``hard``: 1 where the map is strictly above its
    threshold (scikit-image's foreground convention ``cam > t``), else 0; ``threshold`` is
    ``"otsu"``, ``"li"``, ``"yen"``, ``"mean"`` (scikit-image, per map) or a float ``f`` in
    [0, 1] meaning ``min + f (max - min)``. A flat map (all values equal, including all zero)
    carries no location, so every pixel gets weight 1 in both modes: the object search then
    equals the uniform search and the background weights are all zero.

    Args:
        cam: ``[N, H, W]`` nonnegative maps.

    Returns:
        float32 ``[N, H, W]`` in [0, 1].
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 3:
        raise ValueError(f"cam must be [N, H, W], got shape {cam.shape}")
    if mode not in ("soft", "hard"):
        raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
    weights = np.ones_like(cam)
    for index, heatmap in enumerate(cam):
        low, high = heatmap.min(), heatmap.max()
        if low == high:
            continue
        if mode == "soft":
            weights[index] = (heatmap - low) / (high - low)
        else:
            weights[index] = heatmap > threshold_value(heatmap, threshold)
    return weights


def background_weights(object_w: np.ndarray) -> np.ndarray:
    """Complement of object weights: ``1 - object_w``, float32, same shape."""
    return (1.0 - np.asarray(object_w, dtype=np.float32)).astype(np.float32)


def normalise_for_display(maps: np.ndarray, *, clip_percentile: float = 99.0) -> np.ndarray:
    """Scale each nonnegative map ``[H, W]`` or ``[N, H, W]`` to [0, 1] for plotting.

    Each map is divided by its ``clip_percentile`` percentile (its maximum if that percentile is
    zero) and clipped at 1, so a few extreme saliency pixels do not wash out the rest. All-zero
    maps stay zero. Only for figures: the stored maps keep raw magnitudes.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be [H, W] or [N, H, W], got shape {maps.shape}")
    stack = maps.reshape((-1, *maps.shape[-2:]))
    scaled = np.zeros_like(stack)
    for index, heatmap in enumerate(stack):
        scale = np.percentile(heatmap, clip_percentile)
        if scale <= 0:
            scale = heatmap.max()
        if scale > 0:
            scaled[index] = np.clip(heatmap / scale, 0.0, 1.0)
    return scaled.reshape(maps.shape)


def _checked_inputs(
    images: np.ndarray, labels: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC [N, H, W, C], got shape {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be [N] = [{len(images)}], got shape {labels.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return images, labels.astype(np.int32)


def _batched(body, images: np.ndarray, batch_size: int) -> model_calls.BatchedCall:
    """``body(images, labels) -> [b, H, W]`` over images shaped like ``images``, ``batch_size``
    per call. Not fixed shapes: every stored map came from a trace of any row count, and fixed
    shapes would change nearly all of them in float32 round-off, and every table built on them."""
    inputs = [(images.shape[1:], np.float32), ((), np.int32)]
    return model_calls.BatchedCall(body, inputs, batch_size, fixed_shapes=False)


def _smoothgrad_noise(shape: tuple[int, ...], *, seed: int, sample: int) -> np.ndarray:
    """Standard normal noise ``shape = [N, H, W, C]``, image i drawn from rng([seed, i, sample])."""
    noise = np.empty(shape, dtype=np.float32)
    for index in range(shape[0]):
        rng = np.random.default_rng([seed, index, sample])
        noise[index] = rng.standard_normal(shape[1:], dtype=np.float32)
    return noise
