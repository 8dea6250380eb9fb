"""Block kind ``convnextv2``: ConvNeXt-V2 stages and NHL nodes, named and typed like timm's.

A spec (cin, mid, cout=d, stride) is one timm ``ConvNeXtStage(cin -> d, stride, depth=1,
use_grn=True)``: a downsample (LayerNorm2d(cin) + conv, 1x1 at stride 1, 2x2/2 at stride 2, bias)
when cin != d or stride > 1, then ONE ConvNeXt-V2 block of dim d: depthwise conv 7x7 (pad 3, bias)
-> LayerNorm (eps 1e-6) -> Linear(d, mid) -> GELU -> GRN(mid) -> Linear(mid, d) [-> layer scale
gamma(d) when ``layer_scale``] -> + input. Parameters: 8·d² + 65·d for mid = 4·d (+ d with layer
scale), plus 2·cin + cin·d·s² + d for the downsample.

Module types mirror timm's, so that counters that only know exact module types (thop) count the
same as on timm's modules: `LayerNorm2d` and `LayerNorm` are subclasses of ``nn.LayerNorm``,
`GlobalResponseNorm` is its own module, the layer scale is a parameter of the block.

The trunk (``convnextv2-tiny`` and the NHL's stages 1-3) has timm's state-dict names (``stem.0``,
``stem.1``, ``stages.i.downsample.{0,1}``, ``stages.i.blocks.j.{conv_dw,norm,mlp.fc1,mlp.grn,
mlp.fc2}``), so a timm ``convnextv2_tiny`` state dict loads directly (`TIMM_CONVNEXTV2`). The
official checkpoints (facebookresearch/ConvNeXt-V2, `OFFICIAL_CONVNEXTV2`) name the same tensors
differently: ``downsample_layers.0`` is timm's ``stem``, ``downsample_layers.i`` (i >= 1) is
``stages.i.downsample``, ``stages.i.j.{dwconv, pwconv1, pwconv2}`` are ``stages.i.blocks.j.{conv_dw,
mlp.fc1, mlp.fc2}``, ``grn.gamma``/``grn.beta`` (shape 1x1x1xC) are ``mlp.grn.weight``/``bias``
(C), and the final ``norm``/``head`` are ``head.norm``/``head.fc``; `official_to_timm` converts one
key and tensor.

Grouped level (`ConvNeXtLevel`): n nodes as one computation. The depthwise 7x7 runs over n·d
channels (groups = n·d); LayerNorm and GRN are per node over each node's own channels; the
pointwise layers are grouped convolutions (groups = n). The downsample normalises each PARENT
slice once (without affine), folds each child's LayerNorm affine into its conv weights and bias
(exact: the conv is linear and unpadded), and convolves the parent slices per fanout bucket
(`grouped_ops.parent_convs`), so no parent slice is copied per child. Its nodes always run
together; on the CPU a large batch runs in groups of images (`execution.CpuChunks`, in training
too: every op of a node is per image), which keeps the n·mid-channel hidden tensors as small as
one group of images.

Attention: the scale multiplies the first block's LayerNorm output (d channels per node, the input
of the pointwise MLP). It is the counterpart of the ResNet kinds' "after the first per-branch
conv": the first point after the depthwise conv where a scale survives (the LayerNorm right after
the conv would remove any factor applied earlier), and the shortcut is not scaled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.model.grouped_ops import (
    NodeRange,
    Wiring,
    apply_as_conv_weight,
    bucket_rows,
    parent_convs,
)
from nhlcli.model.kinds import BlockKind, WeightLayout, register_kind
from nhlcli.model.kinds.formulas import CONVNEXT_STEM_CHANNELS, ConvNeXtV2Formula
from nhlcli.model.levels import Level
from nhlcli.model.presets import BlockSpec, TrunkSpec

EPS = 1e-6  # LayerNorm and GRN epsilon (timm's ConvNeXt)
STEM_CHANNELS = CONVNEXT_STEM_CHANNELS


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor (timm's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerNorm(nn.LayerNorm):
    """LayerNorm over the last dimension (timm's LayerNorm subclass: thop does not count it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class GlobalResponseNorm(nn.Module):
    """GRN on channels-last (N, H, W, C): x + weight·(x·Nx) + bias, Nx = Gx / mean_c(Gx)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + EPS)
        return x + torch.addcmul(self.bias, self.weight, x * nx)


class GrnMlp(nn.Module):
    """Linear(d, mid) -> GELU -> GRN(mid) -> Linear(mid, d) (timm's GlobalResponseNormMlp)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.grn(self.act(self.fc1(x))))


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt-V2 block of dim d (timm names: conv_dw, norm, mlp, gamma)."""

    def __init__(self, dim: int, hidden: int, layer_scale: bool) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=EPS)
        self.mlp = GrnMlp(dim, hidden)
        self.gamma: nn.Parameter | None = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        h = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        if scale is not None:  # top-down attention on the normalised depthwise features
            h = h * scale
        h = self.mlp(h).permute(0, 3, 1, 2)
        if self.gamma is not None:
            h = h * self.gamma.reshape(1, -1, 1, 1)
        return h + x


def _downsample(cin: int, cout: int, stride: int) -> nn.Module:
    if cin == cout and stride == 1:
        return nn.Identity()
    return nn.Sequential(LayerNorm2d(cin, eps=EPS), nn.Conv2d(cin, cout, max(stride, 1), stride))


class ConvNeXtStage(nn.Module):
    """timm's ConvNeXtStage: downsample, then `depth` blocks (a tree node: depth 1)."""

    def __init__(
        self, cin: int, cout: int, stride: int, depth: int, hidden: int, layer_scale: bool
    ) -> None:
        super().__init__()
        self.downsample = _downsample(cin, cout, stride)
        self.blocks = nn.Sequential(
            *(ConvNeXtBlock(cout, hidden, layer_scale) for _ in range(depth))
        )

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        x = self.downsample(x)
        for i, block in enumerate(self.blocks):
            x = block(x, scale if i == 0 else None)
        return x


def init_weights(module: nn.Module) -> None:
    """timm's ConvNeXt init: truncated normal (std 0.02) conv/linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvNeXtTrunk(nn.Module):
    """Stem (conv 4x4/4 + LayerNorm2d) and stages, with timm's names (``stem``, ``stages``)."""

    def __init__(self, spec: TrunkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Sequential(
            nn.Conv2d(3, STEM_CHANNELS, 4, stride=4), LayerNorm2d(STEM_CHANNELS, eps=EPS)
        )
        self.stages = nn.Sequential(
            *(
                ConvNeXtStage(s.cin, s.cout, s.stride, s.blocks, s.mid, layer_scale=False)
                for s in spec.stages
            )
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


# ------------------------------------------------------------------------------ grouped level
class NodeParams(nn.Module):
    """Per-node parameters with a leading node dimension, under timm's names (weight, bias)."""

    def __init__(self, n: int, weight: tuple[int, ...], bias: int | None, fill: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((n, *weight), fill))
        self.bias = nn.Parameter(torch.zeros(n, bias)) if bias is not None else None

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        return apply_as_conv_weight(self, super()._apply, fn, recurse)  # 5-D conv weights


class GroupedMlp(nn.Module):
    def __init__(self, n: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = NodeParams(n, (hidden, dim), hidden, 0.0)
        self.grn = NodeParams(n, (hidden,), hidden, 0.0)
        self.fc2 = NodeParams(n, (dim, hidden), dim, 0.0)


def _node_layer_norm(
    x: torch.Tensor, n: int, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """LayerNorm over each node's own c channels of (N, n·c, H, W); affine (n, c) if given."""
    n_, ch, h, w = x.shape
    v = x.view(n_, n, ch // n, h, w)
    var, mean = torch.var_mean(v, dim=2, unbiased=False, keepdim=True)
    v = (v - mean) * torch.rsqrt(var + EPS)
    if weight is not None and bias is not None:
        v = v * weight.view(1, n, -1, 1, 1) + bias.view(1, n, -1, 1, 1)
    return v.reshape(n_, ch, h, w)


class GroupedConvNeXtBlock(nn.Module):
    """n ConvNeXt-V2 blocks side by side (timm names with a leading node dimension)."""

    def __init__(self, n: int, dim: int, hidden: int, layer_scale: bool) -> None:
        super().__init__()
        self.n, self.dim, self.hidden = n, dim, hidden
        self.conv_dw = NodeParams(n, (dim, 1, 7, 7), dim, 0.0)
        self.norm = NodeParams(n, (dim,), dim, 1.0)
        self.mlp = GroupedMlp(n, dim, hidden)
        self.gamma: nn.Parameter | None = nn.Parameter(torch.ones(n, dim)) if layer_scale else None

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        n, d, hid = self.n, self.dim, self.hidden
        assert self.conv_dw.bias is not None and self.norm.bias is not None
        h = F.conv2d(
            x, self.conv_dw.weight.reshape(n * d, 1, 7, 7), self.conv_dw.bias.reshape(-1),
            padding=3, groups=n * d,
        )  # fmt: skip
        h = _node_layer_norm(h, n, self.norm.weight, self.norm.bias)
        if scale is not None:
            h = h * scale.to(h.dtype).view(1, -1, 1, 1)
        fc1, grn, fc2 = self.mlp.fc1, self.mlp.grn, self.mlp.fc2
        assert fc1.bias is not None and grn.bias is not None and fc2.bias is not None
        h = F.conv2d(h, fc1.weight.reshape(n * hid, d, 1, 1), fc1.bias.reshape(-1), groups=n)
        h = F.gelu(h)
        # GRN per node: L2 norm over space per channel, divided by its node's channel mean
        gx = torch.linalg.vector_norm(h, dim=(2, 3), keepdim=True)  # (N, n·hid, 1, 1)
        mean = gx.view(gx.shape[0], n, hid).mean(2, keepdim=True)
        nx = (gx.view(gx.shape[0], n, hid) / (mean + EPS)).view_as(gx)
        h = h + torch.addcmul(
            grn.bias.reshape(1, -1, 1, 1), grn.weight.reshape(1, -1, 1, 1), h * nx
        )
        h = F.conv2d(h, fc2.weight.reshape(n * d, hid, 1, 1), fc2.bias.reshape(-1), groups=n)
        if self.gamma is not None:
            h = h * self.gamma.reshape(1, -1, 1, 1)
        return h + x


class ConvNeXtLevel(Level):
    """All n nodes of a level (each a `ConvNeXtStage` of the level's specs) as one computation.

    State names equal `ConvNeXtStage`'s (``downsample.0.weight`` = the LayerNorm2d, ``.1`` = the
    conv, ``blocks.j.*``) with a leading node dimension; see the module doc for the computation.
    """

    def __init__(self, specs: Sequence[BlockSpec], wiring: Wiring) -> None:
        super().__init__()
        first = specs[0]
        if any(s.cin != s.cout or s.stride != 1 for s in specs[1:]):
            raise ValueError("a ConvNeXt node downsamples in its first block only")
        self.specs = tuple(specs)
        self.wiring = wiring
        self.n = n = wiring.n
        self.cin, self.dim, self.stride = first.cin, first.cout, first.stride
        self.downsample: nn.ModuleList | None = None
        if first.projection:
            k = max(first.stride, 1)
            self.downsample = nn.ModuleList(
                [
                    NodeParams(n, (first.cin,), first.cin, 1.0),
                    NodeParams(n, (first.cout, first.cin, k, k), first.cout, 0.0),
                ]
            )
        self.blocks = nn.ModuleList(
            GroupedConvNeXtBlock(n, first.cout, first.mid, first.layer_scale) for _ in specs
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's init per node: truncated normal (std 0.02) conv/linear weights, zero biases."""
        weights: list[torch.Tensor] = []
        for block in self.blocks:
            b = cast(GroupedConvNeXtBlock, block)
            weights += [b.conv_dw.weight, b.mlp.fc1.weight, b.mlp.fc2.weight]
        if self.downsample is not None:
            weights.append(cast(NodeParams, self.downsample[1]).weight)
        for w in weights:
            if not w.is_meta:
                nn.init.trunc_normal_(w, std=0.02)

    def run_nodes(
        self, x: torch.Tensor, nodes: NodeRange, scale: torch.Tensor | None
    ) -> torch.Tensor:
        h = self._downsample(x, nodes)
        for i, block in enumerate(self.blocks):
            h = block(h, scale if i == 0 else None)
        return h

    def _downsample(self, x: torch.Tensor, nodes: NodeRange) -> torch.Tensor:
        """Each node's LayerNorm2d + conv of its parent slice (parents read once, not copied)."""
        if self.downsample is None:
            return x if self.wiring.aligned else self.wiring.gather(x)
        xhat = _node_layer_norm(x, self.wiring.n_inputs, None, None)
        w, b = nodes.derived("folded", self._folded)
        return parent_convs(xhat, self.wiring, [w], [max(self.stride, 1)], [b])[0]

    def _folded(self) -> tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]:
        """Each child's LayerNorm affine folded into its conv, W·(g⊙x̂ + b) = (W·g)x̂ + W·b, in
        fanout-bucket order (`bucket_rows`)."""
        assert self.downsample is not None
        norm, conv = cast(NodeParams, self.downsample[0]), cast(NodeParams, self.downsample[1])
        assert norm.bias is not None and conv.bias is not None
        w = conv.weight * norm.weight.view(self.n, 1, self.cin, 1, 1)
        b = conv.bias + (conv.weight * norm.bias.view(self.n, 1, self.cin, 1, 1)).sum((2, 3, 4))
        return bucket_rows(self.wiring, w), bucket_rows(self.wiring, b)

    def node_image_bytes(self, x: torch.Tensor) -> int:
        """One image's largest tensor of one node (its hidden layer, after the downsample)."""
        s = max(self.stride, 1)
        h, w = (x.shape[2] - 1) // s + 1, (x.shape[3] - 1) // s + 1
        first = self.specs[0]
        return max(first.mid, first.cout) * h * w * x.element_size()

    def extra_repr(self) -> str:
        return f"nodes={self.n}, inputs={self.wiring.n_inputs}, {self.cin}->{self.dim}"


# ------------------------------------------------------------------------------ the kind
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


TIMM_CONVNEXTV2 = WeightLayout(
    "timm-convnextv2",
    "a timm ConvNeXt-V2 (stem.0.weight, stages.0.blocks.0.conv_dw.weight, ...)",
    ("stem.0.weight", "stages.0.blocks.0.conv_dw.weight"),
)
OFFICIAL_CONVNEXTV2 = WeightLayout(
    "official-convnextv2",
    "an official ConvNeXt-V2 checkpoint (downsample_layers.0.0.weight, stages.0.0.dwconv.weight, "
    "...)",
    ("downsample_layers.0.0.weight", "stages.0.0.dwconv.weight"),
    official_to_timm,
)


class ConvNeXtV2Kind(ConvNeXtV2Formula, BlockKind):
    name = "convnextv2"
    attention = (
        "the output of the first block's LayerNorm (after the depthwise 7x7 conv, before the "
        "pointwise MLP), d channels"
    )
    baseline = "convnextv2-tiny"
    weight_layouts = (TIMM_CONVNEXTV2, OFFICIAL_CONVNEXTV2)
    head_weights = {"fc": "head.fc.", "head_norm": "head.norm."}  # noqa: RUF012 (read-only data)

    def single(self, spec: BlockSpec) -> nn.Module:
        stage = ConvNeXtStage(spec.cin, spec.cout, spec.stride, 1, spec.mid, spec.layer_scale)
        init_weights(stage)
        return stage

    def node(self, specs: Sequence[BlockSpec]) -> nn.Module:
        first = specs[0]
        stage = ConvNeXtStage(
            first.cin, first.cout, first.stride, len(specs), first.mid, first.layer_scale
        )
        init_weights(stage)
        return stage

    def level(self, specs: Sequence[BlockSpec], wiring: Wiring) -> nn.Module:
        return ConvNeXtLevel(specs, wiring)

    def trunk(self, spec: TrunkSpec) -> nn.Module:
        return ConvNeXtTrunk(spec)

    def head_norm(self, channels: int) -> nn.LayerNorm:
        """timm's NormMlpClassifierHead norm (its LayerNorm subclass: thop does not count it)."""
        return LayerNorm(channels, eps=EPS)


KIND = register_kind(ConvNeXtV2Kind())

__all__ = [
    "KIND",
    "ConvNeXtLevel",
    "ConvNeXtStage",
    "ConvNeXtTrunk",
    "LayerNorm",
    "LayerNorm2d",
    "official_to_timm",
]
