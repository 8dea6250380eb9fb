"""Block kind ``basic``: the ResNet basic block (ResNet18).

3x3 (cin->cout, stride, pad 1) BN ReLU, 3x3 (cout->cout) BN, + shortcut, ReLU; convs without
bias; projection shortcut (1x1 conv with the stride + BN) iff stride != 1 or cin != cout.
Parameters: 9·cin·cout + 9·cout² + 4·cout, plus cin·cout + 2·cout with a projection. The spec's
``mid`` equals ``cout`` (unused).

Attention: the scale multiplies the output of the first block's first 3x3 convolution (after its
BN and ReLU), ``cout`` channels per node.

The grouped level gathers each node's parent slice once (a copy) and then runs grouped
convolutions: no preset has basic-block levels yet (ResNet18 is a baseline).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.model.grouped_ops import GroupedBatchNorm, GroupedConv, NodeRange, Wiring
from nhlcli.model.kinds import register_kind
from nhlcli.model.kinds.formulas import BasicFormula
from nhlcli.model.kinds.resnet_common import (
    ResNetKindBase,
    grouped_projection,
    projection,
)
from nhlcli.model.presets import BlockSpec


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision names: conv1, bn1, conv2, bn2, downsample)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(spec.cin, spec.cout, 3, stride=spec.stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.cout)
        self.conv2 = nn.Conv2d(spec.cout, spec.cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(spec.cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(spec)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if scale is not None:
            out = out * scale
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class GroupedBasicBlock(nn.Module):
    """n basic blocks of one spec side by side (leading node dimension, torchvision names)."""

    def __init__(self, spec: BlockSpec, n: int, wiring: Wiring | None = None) -> None:
        super().__init__()
        self.spec, self.n = spec, n
        self.wiring = wiring if wiring is not None and not wiring.aligned else None
        self.conv1 = GroupedConv(n, spec.cin, spec.cout, 3, spec.stride)
        self.bn1 = GroupedBatchNorm(n, spec.cout)
        self.conv2 = GroupedConv(n, spec.cout, spec.cout, 3)
        self.bn2 = GroupedBatchNorm(n, spec.cout)
        self.downsample = grouped_projection(spec, n)

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        nodes: NodeRange | None = None,
    ) -> torch.Tensor:
        """x: (N, n_inputs·cin, H, W) -> (N, n·cout, H', W'); as `GroupedBottleneck.forward`."""
        if nodes is None:
            nodes = NodeRange(0, self.n, self.wiring)
        if self.wiring is not None and nodes.wiring is not None and not nodes.wiring.aligned:
            x = nodes.wiring.gather(x)
        if self.downsample is None:
            identity = x
        else:
            conv = cast(GroupedConv, self.downsample[0])
            identity = cast(GroupedBatchNorm, self.downsample[1])(conv(x, nodes), nodes)
        out = F.relu(self.bn1(self.conv1(x, nodes), nodes), inplace=True)
        if scale is not None:
            out = out * scale.to(out.dtype).view(1, -1, 1, 1)
        out = self.bn2(self.conv2(out, nodes), nodes)
        return F.relu(out + identity, inplace=True)


class BasicKind(BasicFormula, ResNetKindBase):
    name = "basic"
    residual_norm = "bn2"
    residual_blocks = (BasicBlock, GroupedBasicBlock)
    attention = "the output of the first block's first 3x3 convolution, after BN and ReLU"

    def single(self, spec: BlockSpec) -> nn.Module:
        return BasicBlock(spec)

    def grouped_block(self, spec: BlockSpec, n: int, wiring: Wiring | None) -> nn.Module:
        return GroupedBasicBlock(spec, n, wiring)


KIND = register_kind(BasicKind())
