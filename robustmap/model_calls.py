"""The one compiled-call layer: every model call robustmap makes is traced here.

A call runs a TensorFlow function of a batch (a model's logits, its logits with the input
gradient, or a caller's own body such as Grad-CAM) over inputs of any length, ``rows`` rows at a
time. oneDNN chooses its kernels by call shape, so a row's float32 round-off depends on the shape
of the call it runs in. Calls therefore have fixed shapes, each traced once: ``rows`` rows, and
for a partial last chunk the smallest of the buckets ``rows``, rows/4, rows/16, ... and
``MIN_ROWS`` that holds it, zero-padded (the padding rows are computed and dropped). The buckets
spare a last call of a few rows (the search's last refinement rounds) the cost of a full one.
Which shapes a row can meet is thus fixed by ``rows``: the results of a model whose rows are
computed independently of each other do not depend on ``rows`` or on how many rows a caller
passes, those of a real network only in round-off (docs/architecture.md).

:func:`compiled` serves a model's logits, and logits with the input gradient, cached per model;
its logits (forward-only calls: the search's probes) run on an engine, TensorFlow itself or a
runtime the traced function is converted to (:data:`ENGINES`, :func:`resolve_engine`), while
gradients always run in TensorFlow;
:class:`BatchedCall` runs any other tensor function, in the same shapes or (for heatmaps, whose
stored maps came from it) in one trace of any row count; :func:`margin` is the logit margin of
the predictions and the searches.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robustmap import runtime

if TYPE_CHECKING:
    import keras

# TensorFlow is imported where a call is traced, not here: :func:`margin` is numpy.

MIN_ROWS = 4
"""Calls never have fewer rows: oneDNN runs single-row convolutions through another kernel
whose float32 round-off differs, which would make results depend on the batch size."""
JIT_COMPILE = False
"""XLA for every compiled call (read when a call shape is first traced). Off: on a CPU, XLA's
code ran the search slower and its epsilons depended on the batch size (bench/README.md)."""

TENSORFLOW, OPENVINO = "tensorflow", "openvino"
ENGINES = (TENSORFLOW, OPENVINO)
"""The engines of forward-only calls: TensorFlow's own traced functions, or OpenVINO running
the same traces converted (:mod:`robustmap.openvino_calls`)."""
AUTO = "auto"
"""The engine name that stands for the fastest measured engine of this machine
(:func:`resolve_engine`)."""

InputSpec = tuple[tuple[int, ...], type]
"""The per-row shape and numpy dtype of one input of a :class:`BatchedCall`."""


def resolve_engine(name: str, devices: Path = Path("/dev")) -> str:
    """The engine ``name`` (one of :data:`ENGINES`, or :data:`AUTO`) stands for on this machine.

    ``auto``: TensorFlow where :func:`robustmap.runtime.gpu_visible` finds a GPU device node under
    ``devices`` (OpenVINO's engine here is CPU-only), else OpenVINO: of the runtimes measured
    on a CPU it ran a search job's forward calls, its conversion included, fastest or within a
    few per cent of the fastest, and it installs with the package (bench/README.md, engine.py).
    """
    if name == AUTO:
        return TENSORFLOW if runtime.gpu_visible(devices) else OPENVINO
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {AUTO}, {', '.join(ENGINES)}")
    return name


def buckets(rows: int) -> tuple[int, ...]:
    """The call shapes for ``rows`` rows per call: rows, rows/4, rows/16, ... and MIN_ROWS."""
    shapes = [max(rows, MIN_ROWS)]
    while shapes[-1] // 4 >= MIN_ROWS:
        shapes.append(shapes[-1] // 4)
    if shapes[-1] > MIN_ROWS:
        # The last search rounds often refine one or two images: pad them to MIN_ROWS, not more.
        shapes.append(MIN_ROWS)
    return tuple(shapes)


class BatchedCall:
    """``body(*inputs)``, a TensorFlow function of tensors with rows on axis 0, run over numpy
    inputs of any length, ``rows`` rows per call.

    ``inputs`` gives each input's per-row shape and numpy dtype. ``body`` returns a tensor or a
    tuple of tensors with one row per input row; the call returns them as numpy arrays, always
    as a tuple, rows in input order.

    ``fixed_shapes`` (the default): calls of the fixed shapes of the module docstring, each
    traced once. Otherwise one trace with an unknown number of rows, unpadded, and the last call
    has as many rows as are left: a static row count builds another graph, whose float32
    round-off differs, so this keeps the results of callers whose stored outputs came from such a
    trace (:mod:`robustmap.heatmaps`).

    ``engine`` (fixed shapes only): the engine that runs each traced shape, converted from its
    trace once (:data:`ENGINES`); any engine but TensorFlow runs forward-only bodies only.
    """

    def __init__(
        self,
        body: Callable,
        inputs: Sequence[InputSpec],
        rows: int,
        *,
        fixed_shapes: bool = True,
        engine: str = TENSORFLOW,
    ) -> None:
        if rows < 1:
            raise ValueError(f"rows must be positive, got {rows}")
        if engine not in ENGINES or (engine != TENSORFLOW and not fixed_shapes):
            raise ValueError(f"engine {engine!r} needs fixed shapes and one of {ENGINES}")
        self.engine = engine
        self.buckets = buckets(rows) if fixed_shapes else ()
        self.rows = self.buckets[0] if fixed_shapes else rows
        self._body = body
        self._inputs = [(tuple(shape), np.dtype(dtype)) for shape, dtype in inputs]
        self._traced: dict[int | None, Callable] = {}

    def __call__(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        arrays = tuple(
            np.asarray(array, dtype) for array, (_, dtype) in zip(arrays, self._inputs, strict=True)
        )
        parts = []
        # An empty input still makes one (padded) call, so the outputs have their shapes.
        for start in range(0, max(len(arrays[0]), 1), self.rows):
            chunk = [array[start : start + self.rows] for array in arrays]
            size = len(chunk[0])
            call_rows = self.bucket(size) if self.buckets else (size or MIN_ROWS)
            traced = self._traced_for(call_rows if self.buckets else None)
            outputs = traced(*(_pad(part, call_rows) for part in chunk))
            outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
            parts.append([np.asarray(output)[:size] for output in outputs])
        return tuple(np.concatenate(pieces) for pieces in zip(*parts, strict=True))

    def bucket(self, size: int) -> int:
        """The call shape (rows) of a chunk of ``size`` <= ``rows`` rows (fixed shapes)."""
        return min(shape for shape in self.buckets if shape >= size)

    def _traced_for(self, shape: int | None) -> Callable:
        if shape not in self._traced:
            import tensorflow as tf

            signature = [
                tf.TensorSpec([shape, *row_shape], tf.as_dtype(dtype))
                for row_shape, dtype in self._inputs
            ]
            # autograph=False: straight-line graphs, nothing for AutoGraph to convert.
            traced = tf.function(
                self._body, input_signature=signature, autograph=False, jit_compile=JIT_COMPILE
            )
            if self.engine == OPENVINO:
                from robustmap import openvino_calls

                traced = openvino_calls.converted(traced)
            self._traced[shape] = traced
        return self._traced[shape]


class CompiledCalls:
    """A model's logits, and logits with the input gradient, for images of one shape; the logits
    on ``engine`` (:data:`ENGINES`), the gradients in TensorFlow.

    Get it from :func:`compiled`. The model is held by a weak reference so that the cache does
    not keep it alive.
    """

    def __init__(
        self,
        model_ref: weakref.ref,
        image_shape: tuple[int, ...],
        rows: int,
        engine: str = TENSORFLOW,
    ) -> None:
        import tensorflow as tf

        self.image_shape, self.engine = tuple(image_shape), engine

        def logits(x):
            return tf.cast(model_ref()(x, training=False), tf.float32)

        def with_gradient(loss_of):
            def logits_and_gradient(x, y):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(x)
                    z = logits(x)
                    # Sum of per-image losses: each image's gradient is its own loss's gradient.
                    loss = tf.reduce_sum(loss_of(y, z))
                return z, tape.gradient(loss, x)

            return logits_and_gradient

        def margin_loss(y, z):
            others = tf.where(tf.one_hot(y, tf.shape(z)[1]) > 0, -np.inf, z)
            return tf.reduce_max(others, axis=1) - tf.gather(z, y, axis=1, batch_dims=1)

        images, labels = (self.image_shape, np.float32), ((), np.int32)
        self._logits = BatchedCall(logits, [images], rows, engine=engine)
        cross_entropy = with_gradient(tf.nn.sparse_softmax_cross_entropy_with_logits)
        self._logits_and_gradient = BatchedCall(cross_entropy, [images, labels], rows)
        # Traced on first use only: the FGSM search never calls it.
        self._logits_and_margin_gradient = BatchedCall(
            with_gradient(margin_loss), [images, labels], rows
        )
        self.rows, self.buckets = self._logits.rows, self._logits.buckets

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits float32 [N, K] of N images float32 [N, H, W, C]."""
        return self._logits(x)[0]

    def logits_and_gradient(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits float32 [N, K] and the gradient float32 [N, H, W, C] of the softmax
        cross-entropy of each image's logits and its label ``y`` (int [N]) by its pixels."""
        return self._logits_and_gradient(x, y)

    def logits_and_margin_gradient(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits float32 [N, K] and the gradient float32 [N, H, W, C] of the margin loss
        max_{k != y} z_k - z_y (minus :func:`margin`; ascending it moves towards a flip, as
        ascending the cross-entropy does) of each image by its pixels."""
        return self._logits_and_margin_gradient(x, y)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(
    model: keras.Model, image_shape: tuple[int, ...], rows: int, engine: str = TENSORFLOW
) -> CompiledCalls:
    """The calls of ``model`` on images of ``image_shape`` (H, W, C), ``rows`` per call (at least
    MIN_ROWS), logits on ``engine``: one object per (model, shape, rows, engine), each call shape
    traced (and converted) once and reused by later callers."""
    per_model = _COMPILED.setdefault(model, {})
    key = (tuple(image_shape), buckets(rows)[0], engine)
    if key not in per_model:
        per_model[key] = CompiledCalls(weakref.ref(model), image_shape, key[1], engine)
    return per_model[key]


def margin(
    logits: np.ndarray, labels: np.ndarray, *, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """The logit margin m = z_y - max_{k != y} z_k [N] (> 0 iff argmax z = y), computed in
    ``dtype`` (float64: exact for float32 logits), and argmax z (int64 [N]) of logits [N, K] and
    labels (int [N])."""
    logits = logits.astype(dtype)
    rows = np.arange(len(logits))
    columns = np.asarray(labels).astype(np.int64)
    others = logits.copy()
    others[rows, columns] = -np.inf
    true_logit = logits[rows, columns]
    return true_logit - others.max(axis=1, initial=-np.inf), logits.argmax(axis=1).astype(np.int64)


def _pad(array: np.ndarray, rows: int) -> np.ndarray:
    """Pad axis 0 with zeros to ``rows``."""
    missing = rows - len(array)
    if missing == 0:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), array.dtype)])
