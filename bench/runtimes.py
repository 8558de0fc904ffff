"""Forward-only model calls on runtimes that are not engines of robustmap (issue 25): ONNX
Runtime (the trace converted by tf2onnx) and LiteRT (converted by TensorFlow's own TFLite
converter), for ``bench/engine.py --runtimes``.

Bench-only extras, never dependencies of the package: their packages are installed into a
separate folder put on ``PYTHONPATH`` (bench/README.md, section engine.py), and each is imported
when its runtime is first asked for. A runtime converts the very traces an engine converts:
:class:`RuntimeCall` is the TensorFlow logits call of :func:`robustmap.model_calls.compiled`
(same call shapes, zero padding and chunking) with each traced call shape replaced by its
conversion, as the OpenVINO engine does.

Settings: every runtime may use all cores (intra-op threads = ``os.cpu_count()``, as the bench
measures a runtime's best), and the deterministic choice wherever one is offered. ONNX Runtime:
CPU provider, graph optimisation at its default (all), sequential execution (no inter-op
parallelism), ``use_deterministic_compute`` on. LiteRT: its default op resolver (builtin kernels
with the XNNPACK delegate), float32 throughout (no optimisations asked of the converter).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from robustmap import model_calls

ONNXRUNTIME, LITERT = "onnxruntime", "litert"
RUNTIMES = (ONNXRUNTIME, LITERT)
PACKAGES = {
    ONNXRUNTIME: "onnxruntime==1.31.1 tf2onnx==1.17.0 onnx==1.23.2",
    LITERT: "ai-edge-litert==2.3.0 tqdm backports.strenum",
}
"""What each runtime needs beyond the package's environment (bench/README.md installs them with
``--no-deps`` so that no second numpy, protobuf or TensorFlow shadows the environment's)."""


class RuntimeCall(model_calls.BatchedCall):
    """A TensorFlow :class:`~robustmap.model_calls.BatchedCall` (fixed shapes) run on
    ``runtime``: each call shape is traced by TensorFlow as usual, then converted once.

    Built from the call it copies rather than from a body of its own, so that the converted
    function is the one the engines convert (bench-only: it reads that call's body and inputs).
    """

    def __init__(self, call: model_calls.BatchedCall, runtime: str, owner: object) -> None:
        super().__init__(call._body, call._inputs, call.rows)
        self.converter = converter(runtime)
        self.owner = owner  # what holds the function's variables (LiteRT's converter wants it)

    def _traced_for(self, shape: int | None) -> Callable:
        if shape not in self._traced:
            self._traced[shape] = self.converter(super()._traced_for(shape), self.owner)
        return self._traced[shape]


def logits(
    model, image_shape: tuple[int, ...], rows: int, runtime: str
) -> Callable[[np.ndarray], np.ndarray]:
    """``model``'s logits float32 [N, K] of images float32 [N, H, W, C] on ``runtime``, called
    as ``model_calls.compiled(model, image_shape, rows).logits`` is."""
    call = RuntimeCall(model_calls.compiled(model, image_shape, rows)._logits, runtime, model)
    return lambda x: call(x)[0]


def converter(runtime: str) -> Callable[[Callable, object], Callable[..., tuple[np.ndarray, ...]]]:
    """The conversion to ``runtime`` of a ``tf.function`` with a fixed ``input_signature`` and
    the object that holds its variables (the model): a numpy function of that signature
    returning its outputs as a tuple of arrays. Exits with what to install when the runtime's
    packages are missing."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    try:
        return {ONNXRUNTIME: _onnxruntime, LITERT: _litert}[runtime]()
    except ImportError as error:
        raise SystemExit(
            f"{runtime}: {error}. Install the bench extras into a separate folder and put it on "
            f"PYTHONPATH (bench/README.md, engine.py): pip install --no-deps --target DIR "
            f"{PACKAGES[runtime]}"
        ) from error


def _onnxruntime() -> Callable:
    import onnxruntime as ort
    import tf2onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.use_deterministic_compute = True

    def convert(function: Callable, owner: object) -> Callable[..., tuple[np.ndarray, ...]]:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature)
        session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        names = [node.name for node in session.get_inputs()]

        def call(*inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            return tuple(session.run(None, dict(zip(names, inputs, strict=True))))

        return call

    return convert


def _litert() -> Callable:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    def convert(function: Callable, owner: object) -> Callable[..., tuple[np.ndarray, ...]]:
        concrete = function.get_concrete_function()
        # Without the owner, TensorFlow warns that it takes a deprecated conversion path.
        flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([concrete], owner).convert()
        interpreter = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count() or 1)
        interpreter.allocate_tensors()
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()

        def call(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
            # In the interpreter's input order: one input for logits (several would need their
            # names matched to the signature's).
            for detail, array in zip(inputs, arrays, strict=True):
                interpreter.set_tensor(detail["index"], array)
            interpreter.invoke()
            # get_tensor copies: the interpreter reuses its buffers on the next invoke.
            return tuple(interpreter.get_tensor(detail["index"]) for detail in outputs)

        return call

    return convert
