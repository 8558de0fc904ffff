"""Process set-up shared by every workflow step: logging into the rule's log file, determinism."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import TracebackType

CHECKSUMS_LOCK = "checksums.lock"
"""The workflow's lock of verified download checksums, relative to its working directory (the
project root, where it is meant to be committed; see :func:`robustmap.fetch.fetch`)."""


GPU_DEVICE_NODES = ("nvidia[0-9]*", "kfd", "dxg")
"""Device nodes through which TensorFlow reaches a GPU: NVIDIA's, AMD ROCm's, and WSL2's."""


def gpu_visible(devices: Path = Path("/dev")) -> bool:
    """Whether TensorFlow on this machine would find a GPU, judged without importing it (the
    Snakefile asks at parse time, where an import would cost seconds): a GPU device node exists
    under ``devices`` and ``CUDA_VISIBLE_DEVICES`` does not hide every device.

    It errs towards yes: a node TensorFlow cannot use only makes model jobs run one at a time.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return any(any(devices.glob(pattern)) for pattern in GPU_DEVICE_NODES)


def setup(
    log_path: str | os.PathLike | None, *, seed: int = 0, tensorflow: bool = True
) -> logging.Logger:
    """Send robustmap's log records to ``log_path`` and make TensorFlow deterministic.

    Determinism matters because the workflow promises byte-identical outputs for identical
    inputs on one kind of machine, whether a job ran locally, on a cluster node, or after a
    restart (across core counts and instruction sets only within round-off:
    docs/architecture.md). An uncaught exception is logged too: Snakemake (and SLURM) tell the
    user to read the job's log file, so the traceback must be there, not only on the main
    output. Jobs that run no model pass ``tensorflow=False``: importing TensorFlow and Keras
    costs seconds of start-up per job, which dominated the short table jobs.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    sys.excepthook = _log_uncaught
    log = logging.getLogger("robustmap")
    if not tensorflow:
        return log
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    # Bytes are promised per kind of machine and software: the log says which software.
    log.info("TensorFlow %s, Keras %s, op determinism on", tf.__version__, keras.__version__)
    return log


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """Write an uncaught exception with its traceback to every log handler (file and stderr)."""
    logging.getLogger("robustmap").critical("uncaught exception", exc_info=(kind, error, trace))
    logging.shutdown()  # flush the file before the interpreter exits
