"""Port fidelity: logits of robustmap's Keras EfficientNet-Lite vs a PyTorch reference.

Method. The reference is the ``efficientnet-lite-pytorch`` package (the lukemelas-derived
``tf_`` implementation: static TF-'same' padding, BN eps 1e-3, ReLU6, no SE), loaded with the
very same ``.pth`` files. PyTorch is *not* a robustmap dependency, so it lives in its own venv::

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch numpy

This script runs under the project venv. For each model it draws a fixed batch of images at the
model's native size (uniform noise, seed 0, plus a real photo, ``skimage.data.chelsea``, centre
cropped and bicubically resized with the *same* Keras resize on both sides), saves them as
``.npy``, and runs a small torch program (below) in the torch venv through ``subprocess``; that
program normalises ``(x - 0.5) / 0.5``, runs the reference in eval mode and saves its logits.
The Keras side is the full robustmap model, whose resize is an exact identity at the native size
(asserted here), so both nets see the same normalised input. The report is the maximum absolute
logit difference per model, plus agreement of the arg-max.

Usage::

    python bench/port_fidelity.py [--torch-python /work/torchvenv/bin/python]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

TORCH_REFERENCE = r"""
import sys
import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

model_name, weights, images_npy, logits_npy = sys.argv[1:5]
net = EfficientNet.from_name(model_name)
net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
net.eval()
images = torch.from_numpy(np.load(images_npy)).permute(0, 3, 1, 2)  # NHWC -> NCHW
with torch.no_grad():
    logits = net((images - 0.5) / 0.5)
np.save(logits_npy, logits.numpy())
"""


def fidelity_inputs(native_size: int) -> np.ndarray:
    """Float32 [5, S, S, 3] in [0, 1]: four noise images (seed 0) and one centre-cropped photo."""
    import skimage.data
    import tensorflow as tf

    noise = np.random.default_rng(0).random((4, native_size, native_size, 3), dtype=np.float32)
    photo = skimage.data.chelsea().astype(np.float32) / 255.0
    side = min(photo.shape[:2])
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    crop = photo[top : top + side, left : left + side]
    resized = tf.image.resize(crop, (native_size, native_size), method="bicubic").numpy()
    return np.concatenate([noise, np.clip(resized, 0.0, 1.0)[None]]).astype(np.float32)


def compare(name: str, *, torch_python: str, workdir: Path) -> dict[str, float]:
    """Max abs logit difference (and arg-max agreement) of robustmap's model vs the reference."""
    from robustmap import models

    entry = models.ZOO[name]
    images = fidelity_inputs(entry.native_size)
    model = models.load(name)
    resize = model.get_layer("resize")
    resized = resize(images).numpy()
    assert np.array_equal(resized, images), "resize is not the identity at the native size"
    keras_logits = model.predict(images, verbose=0)

    images_npy, logits_npy = workdir / f"{name}_images.npy", workdir / f"{name}_torch.npy"
    np.save(images_npy, images)
    torch_name = name.replace("_", "-")  # efficientnet_lite0 -> efficientnet-lite0
    subprocess.run(
        [torch_python, "-c", TORCH_REFERENCE, torch_name, str(entry.weights_file()),
         str(images_npy), str(logits_npy)],
        check=True,
    )  # fmt: skip
    torch_logits = np.load(logits_npy)
    return {
        "max_abs_logit_diff": float(np.abs(keras_logits - torch_logits).max()),
        "max_abs_logit": float(np.abs(torch_logits).max()),
        "argmax_agreement": float(np.mean(keras_logits.argmax(1) == torch_logits.argmax(1))),
        "photo_top1": int(torch_logits[-1].argmax()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch-python", default="/work/torchvenv/bin/python")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            result = compare(name, torch_python=args.torch_python, workdir=Path(tmp))
            print(name, " ".join(f"{k}={v:.3g}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
