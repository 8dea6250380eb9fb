"""Which network a state dict is: the layouts the block kinds read, and common other networks.

Each block kind declares the pretrained layouts its trunk reads (`BlockKind.weight_layouts`: a
name, a description, the keys that identify it, and a key conversion into the kind's own names,
e.g. the official ConvNeXt-V2 checkpoints' keys into timm's, `official_to_timm`).
`detect_layout(keys)` names the layout of a file's keys among every known kind's
(``torchvision-resnet``, ``timm-convnextv2``, ``official-convnextv2``, ...), or returns None;
`describe_keys` then says what the file looks like instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from nhlcli.model.kinds import WeightLayout, all_weight_layouts

__all__ = ["OTHER_NETWORKS", "describe_keys", "detect_layout"]

# what other common networks' keys start with (for the one-line error)
OTHER_NETWORKS = (
    ("patch_embed.", "a vision transformer (patch_embed.*, blocks.*)"),
    ("features.0.0.weight", "a torchvision ConvNeXt/EfficientNet/MobileNet (features.*)"),
    ("features.conv0.weight", "a torchvision DenseNet (features.denseblock*)"),
    ("conv_stem.weight", "a timm EfficientNet/MobileNet (conv_stem.*, blocks.*)"),
    ("features.0.weight", "a torchvision VGG/AlexNet (features.*, classifier.*)"),
    ("encoder.layer.", "a BERT-style transformer (encoder.layer.*)"),
)


def detect_layout(keys: Iterable[str]) -> WeightLayout | None:
    """The layout (of any known block kind) whose signature keys are all present, or None."""
    present = set(keys)
    for layout in all_weight_layouts():
        if all(k in present for k in layout.signature):
            return layout
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
