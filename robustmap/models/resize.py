"""``tf.image.resize`` (bilinear, bicubic; half-pixel centres, no antialiasing) as matrices.

For fixed input and output sizes, both methods are linear and separable: resizing an
``[H, W]`` plane to ``[P, Q]`` is ``R @ plane @ C.T`` with ``R`` [P, H] and ``C`` [Q, W]. Applied
as two matrix products, the resize runs on any device and under XLA, whereas TensorFlow's
``ResizeBicubic`` forward and gradient kernels exist only on the CPU. The matrices reproduce the
kernels' own arithmetic (``tensorflow/core/kernels/image/resize_bicubic_op.cc`` and
``resize_bilinear_op.cc``), float32 where they compute in float32:

* source coordinate ``(out + 0.5) * (in / out) - 0.5`` (half-pixel centres);
* bilinear: weights ``1 - t`` and ``t`` on ``floor`` and ``ceil``, both clamped into the image;
* bicubic: Keys' cubic convolution with a = -0.5, evaluated at the fraction ``t`` rounded to a
  1/1024 table (as TensorFlow's coefficient table does); taps outside the image get weight 0 and
  the four weights are renormalised to sum to 1.
"""

from __future__ import annotations

import functools

import numpy as np

KEYS_A = -0.5
TABLE_SIZE = 1024
METHODS = ("bilinear", "bicubic")


@functools.lru_cache(maxsize=64)
def resize_matrix(in_size: int, out_size: int, method: str) -> np.ndarray:
    """The float32 [out_size, in_size] matrix resizing one axis like ``tf.image.resize``."""
    if method not in METHODS:
        raise ValueError(f"resize method {method!r}: expected one of {METHODS}")
    if in_size == out_size:  # scale 1: both kernels sample every pixel exactly
        matrix = np.eye(out_size, dtype=np.float32)
    elif method == "bilinear":
        matrix = _bilinear(in_size, out_size)
    else:
        matrix = _bicubic(in_size, out_size)
    matrix.setflags(write=False)  # cached and shared: nobody may change it
    return matrix


def _source(in_size: int, out_size: int) -> np.ndarray:
    """Source coordinate of each output pixel, float32, as the kernels compute it."""
    scale = np.float32(in_size) / np.float32(out_size)
    out = np.arange(out_size, dtype=np.float32)
    return (out + np.float32(0.5)) * scale - np.float32(0.5)


def _bilinear(in_size: int, out_size: int) -> np.ndarray:
    source = _source(in_size, out_size)
    floor = np.floor(source)
    lerp = source - floor
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(source).astype(np.int64), in_size - 1)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), np.float32(1.0) - lerp)
    np.add.at(matrix, (rows, upper), lerp)
    return matrix


def _keys_table() -> np.ndarray:
    """TensorFlow's table: [TABLE_SIZE + 1, 2] float32, the cubic at x and at x + 1, x = i/1024."""
    a = np.float32(KEYS_A)
    x = np.arange(TABLE_SIZE + 1, dtype=np.float32) / np.float32(TABLE_SIZE)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    x1 = x + 1
    far = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


def _bicubic(in_size: int, out_size: int) -> np.ndarray:
    table = _keys_table()
    source = _source(in_size, out_size)
    floor = np.floor(source)
    offset = np.rint((source - floor) * np.float32(TABLE_SIZE)).astype(np.int64)  # lrintf
    weights = np.stack(
        [
            table[offset, 1],
            table[offset, 0],
            table[TABLE_SIZE - offset, 0],
            table[TABLE_SIZE - offset, 1],
        ],
        axis=1,
    )
    taps = floor.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    inside = (taps >= 0) & (taps < in_size)
    weights = np.where(inside, weights, np.float32(0.0))
    total = weights.sum(axis=1, dtype=np.float32, keepdims=True)
    weights = weights * (np.float32(1.0) / total)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.repeat(np.arange(out_size), 4)
    np.add.at(matrix, (rows, np.clip(taps, 0, in_size - 1).ravel()), weights.ravel())
    return matrix


def resize_images(images, size: tuple[int, int], method: str):
    """NHWC ``images`` (a Keras/TF tensor with static H and W) resized to ``size`` by matrices."""
    import keras

    if tuple(images.shape[1:3]) == tuple(size):
        return images  # both kernels are the identity at scale 1
    rows = resize_matrix(int(images.shape[1]), size[0], method)
    cols = resize_matrix(int(images.shape[2]), size[1], method)
    x = keras.ops.einsum("ph,nhwc->npwc", keras.ops.convert_to_tensor(rows, images.dtype), images)
    return keras.ops.einsum("qw,npwc->npqc", keras.ops.convert_to_tensor(cols, images.dtype), x)
