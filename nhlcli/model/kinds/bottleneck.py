"""Block kind ``bottleneck``: the ResNet v1.5 bottleneck (PHL, N2HL, N3HL, N4HL, ResNet50/152/200).

1x1 (cin->mid) BN ReLU, 3x3 (mid->mid, stride, pad 1) BN ReLU, 1x1 (mid->cout) BN, + shortcut,
ReLU; convs without bias; the shortcut is a projection (1x1 conv with the stride + BN) iff
stride != 1 or cin != cout. Parameters: cin·mid + 9·mid² + mid·cout + 2·(2·mid + cout), plus
cin·cout + 2·cout with a projection.

Attention: the scale multiplies the output of the FIRST block's 3x3 convolution (after its BN
and ReLU), i.e. ``mid`` channels per node (the paper's "first per-branch conv").
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.model.grouped_ops import (
    GroupedBatchNorm,
    GroupedConv,
    NodeRange,
    Wiring,
    read_parents,
)
from nhlcli.model.kinds import register_kind
from nhlcli.model.kinds.formulas import BottleneckFormula
from nhlcli.model.kinds.resnet_common import (
    ResNetKindBase,
    grouped_projection,
    projection,
)
from nhlcli.model.presets import BlockSpec


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv); projection shortcut iff needed."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(spec.cin, spec.mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.mid)
        self.conv2 = nn.Conv2d(spec.mid, spec.mid, 3, stride=spec.stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(spec.mid)
        self.conv3 = nn.Conv2d(spec.mid, spec.cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(spec.cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(spec)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if scale is not None:  # top-down attention on the 3x3 conv's feature maps
            out = out * scale
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class GroupedBottleneck(nn.Module):
    """n ResNet v1.5 bottlenecks of one spec side by side (torchvision names, leading node dim)."""

    def __init__(self, spec: BlockSpec, n: int, wiring: Wiring | None = None) -> None:
        super().__init__()
        self.spec, self.n = spec, n
        self.wiring = wiring if wiring is not None and not wiring.aligned else None
        self.conv1 = GroupedConv(n, spec.cin, spec.mid, 1)
        self.bn1 = GroupedBatchNorm(n, spec.mid)
        self.conv2 = GroupedConv(n, spec.mid, spec.mid, 3, spec.stride)
        self.bn2 = GroupedBatchNorm(n, spec.mid)
        self.conv3 = GroupedConv(n, spec.mid, spec.cout, 1)
        self.bn3 = GroupedBatchNorm(n, spec.cout)
        self.downsample = grouped_projection(spec, n)

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        nodes: NodeRange | None = None,
    ) -> torch.Tensor:
        """x: the nodes' inputs (N, n_inputs·cin, H, W) -> (N, n·cout, H', W').

        scale: top-down attention, one factor per channel of the 3x3 conv's output (n·mid,) or
        None. nodes: the nodes to compute (None: all); a level's first block reads its input
        through ``nodes.wiring``, later blocks get exactly their nodes' inputs.
        """
        if nodes is None:
            nodes = NodeRange(0, self.n, self.wiring)
        reads = self.wiring is not None and nodes.wiring is not None and not nodes.wiring.aligned
        if self.downsample is not None:
            proj_conv = cast(GroupedConv, self.downsample[0])
            proj_bn = cast(GroupedBatchNorm, self.downsample[1])
            if reads:  # both 1x1 convs read the parents: each bucket's input is read once
                out, proj = read_parents(x, nodes, [self.conv1, proj_conv])
            else:
                out, proj = self.conv1(x, nodes), proj_conv(x, nodes)
            identity = proj_bn(proj, nodes)
        elif reads:
            assert nodes.wiring is not None
            identity = nodes.wiring.gather(x)
            out = read_parents(x, nodes, [self.conv1])[0]
        else:
            identity, out = x, self.conv1(x, nodes)
        out = F.relu(self.bn1(out, nodes), inplace=True)
        out = F.relu(self.bn2(self.conv2(out, nodes), nodes), inplace=True)
        if scale is not None:  # top-down attention on the 3x3 conv's feature maps (post-ReLU)
            out = out * scale.to(out.dtype).view(1, -1, 1, 1)
        out = self.bn3(self.conv3(out, nodes), nodes)
        return F.relu(out + identity, inplace=True)


class BottleneckKind(BottleneckFormula, ResNetKindBase):
    name = "bottleneck"
    residual_norm = "bn3"
    residual_blocks = (Bottleneck, GroupedBottleneck)
    attention = (
        "the output of the first block's 3x3 convolution, after its BN and ReLU (mid channels)"
    )

    def single(self, spec: BlockSpec) -> nn.Module:
        return Bottleneck(spec)

    def grouped_block(self, spec: BlockSpec, n: int, wiring: Wiring | None) -> nn.Module:
        return GroupedBottleneck(spec, n, wiring)


KIND = register_kind(BottleneckKind())
