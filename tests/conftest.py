"""Shared test settings: quiet, deterministic TensorFlow on a small CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
