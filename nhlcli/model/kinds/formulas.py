"""The built-in block kinds' formulas, without torch: parameters, output sizes, stems, attention.

A preset's parameter count (`Preset.params`, `Preset.formula`, `nhl archs`) and the checks of a
saved preset need only these, so they run without importing torch (`get_formula`); each kind's
module (with its modules and grouped level) subclasses its formula here, so the kind answers the
same. A kind registered from elsewhere carries its formulas itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nhlcli.model.presets import BlockSpec

RESNET_STEM_CHANNELS = 64
RESNET_STEM_PARAMS = 3 * 64 * 49 + 2 * 64  # conv 7x7/2 3->64 (no bias) + BN
CONVNEXT_STEM_CHANNELS = 96
CONVNEXT_STEM_PARAMS = 3 * 96 * 16 + 96 + 2 * 96  # conv 4x4/4 (with bias) + LayerNorm2d


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a padded stride-s ResNet layer (3x3 pad 1, 1x1, 7x7 pad 3, max pool)."""
    return (size - 1) // stride + 1


def projection_params(spec: BlockSpec) -> int:
    """Parameters of a ResNet projection shortcut (1x1 conv + BN; 0 without one)."""
    return spec.cin * spec.cout + 2 * spec.cout if spec.projection else 0


class ResNetFormula:
    """What both ResNet kinds share: padded strided convolutions, the 7x7 stem and max pool."""

    def out_size(self, spec: BlockSpec, h: int, w: int) -> tuple[int, int]:
        return conv_out(h, spec.stride), conv_out(w, spec.stride)

    def stem_params(self) -> int:
        return RESNET_STEM_PARAMS

    def stem_out(self, img_size: int) -> tuple[int, int]:
        return RESNET_STEM_CHANNELS, conv_out(conv_out(img_size, 2), 2)


class BottleneckFormula(ResNetFormula):
    """Kind ``bottleneck``: 1x1 cin->mid, 3x3 mid->mid, 1x1 mid->cout, BNs, projection."""

    def params(self, spec: BlockSpec) -> int:
        p = spec.cin * spec.mid + 9 * spec.mid**2 + spec.mid * spec.cout
        p += 2 * (2 * spec.mid + spec.cout)  # BN weight + bias
        return p + projection_params(spec)

    def attention_channels(self, spec: BlockSpec) -> int:
        return spec.mid


class BasicFormula(ResNetFormula):
    """Kind ``basic``: 3x3 cin->cout, 3x3 cout->cout, BNs, projection."""

    def params(self, spec: BlockSpec) -> int:
        return 9 * spec.cin * spec.cout + 9 * spec.cout**2 + 4 * spec.cout + projection_params(spec)

    def attention_channels(self, spec: BlockSpec) -> int:
        return spec.cout


class ConvNeXtV2Formula:
    """Kind ``convnextv2``: [LayerNorm2d + s x s conv] + depthwise 7x7, LN, GRN MLP, layer scale."""

    def params(self, spec: BlockSpec) -> int:
        d, hid = spec.cout, spec.mid
        p = 49 * d + d + 2 * d + d * hid + hid + 2 * hid + hid * d + d
        if spec.layer_scale:
            p += d
        if spec.projection:
            k = max(spec.stride, 1)
            p += 2 * spec.cin + spec.cin * d * k * k + d
        return p

    def out_size(self, spec: BlockSpec, h: int, w: int) -> tuple[int, int]:
        s = max(spec.stride, 1)  # unpadded s x s conv at stride s
        return h // s, w // s

    def stem_params(self) -> int:
        return CONVNEXT_STEM_PARAMS

    def stem_out(self, img_size: int) -> tuple[int, int]:
        return CONVNEXT_STEM_CHANNELS, img_size // 4

    def attention_channels(self, spec: BlockSpec) -> int:
        return spec.cout


FORMULAS = {
    "bottleneck": BottleneckFormula(),
    "basic": BasicFormula(),
    "convnextv2": ConvNeXtV2Formula(),
}
