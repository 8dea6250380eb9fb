"""Which network a state dict is, and ConvNeXt-V2 keys from the official layout to timm's.

`detect_layout(keys)` names the layout of a file's keys: ``torchvision-resnet``
(``conv1.weight``, ``layer1.0.conv1.weight``), ``timm-convnextv2`` (``stem.0.weight``,
``stages.0.blocks.0.conv_dw.weight``), ``official-convnextv2`` (``downsample_layers.0.0.weight``,
``stages.0.0.dwconv.weight``), or ``None`` with a description of what it looks like instead.

The official ConvNeXt-V2 checkpoints (facebookresearch/ConvNeXt-V2) name the same tensors as
timm's ``convnextv2_*`` models differently: ``downsample_layers.0`` is timm's ``stem``,
``downsample_layers.i`` (i >= 1) is ``stages.i.downsample``, ``stages.i.j.{dwconv, pwconv1,
pwconv2}`` are ``stages.i.blocks.j.{conv_dw, mlp.fc1, mlp.fc2}``, ``grn.gamma``/``grn.beta``
(shape 1x1x1xC) are ``mlp.grn.weight``/``bias`` (C), and the final ``norm``/``head`` are
``head.norm``/``head.fc``. `official_to_timm` converts one key and tensor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

LAYOUTS = {
    "torchvision-resnet": "a torchvision ResNet (conv1.weight, layer1.0.conv1.weight, ...)",
    "timm-convnextv2": "a timm ConvNeXt-V2 (stem.0.weight, stages.0.blocks.0.conv_dw.weight, ...)",
    "official-convnextv2": "an official ConvNeXt-V2 checkpoint (downsample_layers.0.0.weight, "
    "stages.0.0.dwconv.weight, ...)",
}
SIGNATURES = {
    "torchvision-resnet": ("conv1.weight", "layer1.0.conv1.weight"),
    "timm-convnextv2": ("stem.0.weight", "stages.0.blocks.0.conv_dw.weight"),
    "official-convnextv2": ("downsample_layers.0.0.weight", "stages.0.0.dwconv.weight"),
}
# what other common networks' keys start with (for the one-line error)
OTHER_NETWORKS = (
    ("patch_embed.", "a vision transformer (patch_embed.*, blocks.*)"),
    ("features.0.0.weight", "a torchvision ConvNeXt/EfficientNet/MobileNet (features.*)"),
    ("features.conv0.weight", "a torchvision DenseNet (features.denseblock*)"),
    ("conv_stem.weight", "a timm EfficientNet/MobileNet (conv_stem.*, blocks.*)"),
    ("features.0.weight", "a torchvision VGG/AlexNet (features.*, classifier.*)"),
    ("encoder.layer.", "a BERT-style transformer (encoder.layer.*)"),
)
FAMILY = {
    "torchvision-resnet": "resnet",
    "timm-convnextv2": "convnextv2",
    "official-convnextv2": "convnextv2",
}


def detect_layout(keys: Iterable[str]) -> str | None:
    """The layout name (a key of LAYOUTS) of these keys, or None."""
    present = set(keys)
    for name, needed in SIGNATURES.items():
        if all(k in present for k in needed):
            return name
    return None


def describe_keys(keys: Iterable[str]) -> str:
    """What a state dict that matches no layout looks like (a known network, or its key groups)."""
    names = list(keys)
    for marker, what in OTHER_NETWORKS:
        if any(k.startswith(marker) for k in names):
            return what
    counts: dict[str, int] = {}
    for k in names:
        head = k.split(".")[0]
        counts[head] = counts.get(head, 0) + 1
    shown = ", ".join(f"{h}.* ({n})" for h, n in list(counts.items())[:5])
    return f"an unknown network ({shown})"


_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.(.+)$")
_BLOCK_NAMES = {"dwconv": "conv_dw", "pwconv1": "mlp.fc1", "pwconv2": "mlp.fc2", "norm": "norm"}


def official_to_timm(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """One official ConvNeXt-V2 key and tensor in timm's naming and shape (unknown keys kept)."""
    if key.startswith("downsample_layers."):
        _, i, rest = key.split(".", 2)
        prefix = "stem." if i == "0" else f"stages.{i}.downsample."
        return prefix + rest, value
    m = _BLOCK.match(key)
    if m:
        stage, block, rest = m.groups()
        layer, _, param = rest.rpartition(".")
        if layer == "grn":
            name = {"gamma": "weight", "beta": "bias"}.get(param, param)
            return f"stages.{stage}.blocks.{block}.mlp.grn.{name}", value.reshape(-1)
        if layer in _BLOCK_NAMES:
            return f"stages.{stage}.blocks.{block}.{_BLOCK_NAMES[layer]}.{param}", value
        return key, value
    if key.startswith("norm."):
        return "head." + key, value
    if key.startswith("head."):
        return "head.fc." + key[len("head.") :], value
    return key, value
