"""TensorFlow functions converted to OpenVINO and compiled for the CPU: the ``openvino`` engine of
:mod:`robustmap.model_calls`, for forward-only calls.

A function is converted from its trace of one fixed input signature (a graph, the same one
TensorFlow runs), once per call shape, and compiled with settings that make a call's results a
function of its inputs alone: float32 inference (OpenVINO would otherwise run bfloat16 where the
CPU has it), accuracy before speed, one stream, no thread pinning (model jobs share the cores).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import openvino as ov

COMPILE_CONFIG = {
    "INFERENCE_PRECISION_HINT": "f32",
    "EXECUTION_MODE_HINT": "ACCURACY",
    "PERFORMANCE_HINT": "LATENCY",
    "NUM_STREAMS": 1,
    "ENABLE_CPU_PINNING": False,
}
"""The CPU plugin's settings for every converted call (see the module docstring)."""


def converted(function: Callable) -> Callable[..., tuple[np.ndarray, ...]]:
    """``function``, a ``tf.function`` with a fixed ``input_signature``, converted and compiled
    for the CPU: called with numpy inputs of that signature, it returns its outputs as numpy
    arrays (copies, in the function's output order)."""
    ov = _openvino()
    model = _core().compile_model(ov.convert_model(function), "CPU", COMPILE_CONFIG)
    outputs = model.outputs

    def call(*inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        result = model(list(inputs))
        return tuple(result[output] for output in outputs)

    return call


@cache
def _core() -> ov.Core:
    return _openvino().Core()


def _openvino():
    """Import OpenVINO with its telemetry off.

    The converter (``openvino.tools.ovc``) sends usage events to Intel through the
    ``openvino_telemetry`` package unless a consent file under the user's home says no, or the
    environment variable ``CI`` is true; it falls back to a silent stub when that package cannot
    be imported. Blocking the import here (rather than writing the user's consent file or
    setting ``CI`` for every library in the process) keeps every conversion on this machine.
    """
    # Before the converter's first import, which binds the package or the stub for good.
    sys.modules["openvino_telemetry"] = None  # import openvino_telemetry -> ImportError
    import openvino

    return openvino
