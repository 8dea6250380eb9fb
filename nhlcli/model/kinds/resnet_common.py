"""What the two ResNet kinds (basic, bottleneck) share: the stem, the trunk, a node, a level.

The trunk is named like torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so a
torchvision state dict loads into it (`TORCHVISION_RESNET`, with its ``fc`` for a baseline). A node
of a level is a chain of blocks (``blocks.0``, ...), and the grouped level
(`GroupedLevel`, built of each kind's `grouped_block`) uses the same names with
a leading node dimension. The trunk is initialised as torchvision's ResNet (`init_trunk`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nhlcli.model.grouped_ops import GroupedBatchNorm, GroupedConv, NodeRange, Wiring
from nhlcli.model.kinds import BlockKind, WeightLayout
from nhlcli.model.kinds.formulas import ResNetFormula, conv_out
from nhlcli.model.levels import Level
from nhlcli.model.presets import BlockSpec, TrunkSpec

TORCHVISION_RESNET = WeightLayout(
    "torchvision-resnet",
    "a torchvision ResNet (conv1.weight, layer1.0.conv1.weight, ...)",
    ("conv1.weight", "layer1.0.conv1.weight"),
)


def projection(spec: BlockSpec) -> nn.Sequential | None:
    """The projection shortcut (1x1 conv with the stride, BN) iff stride != 1 or cin != cout."""
    if not spec.projection:
        return None
    return nn.Sequential(
        nn.Conv2d(spec.cin, spec.cout, 1, stride=spec.stride, bias=False),
        nn.BatchNorm2d(spec.cout),
    )


def grouped_projection(spec: BlockSpec, n: int) -> nn.Sequential | None:
    """`projection` of n nodes side by side (leading node dimension)."""
    if not spec.projection:
        return None
    return nn.Sequential(
        GroupedConv(n, spec.cin, spec.cout, 1, spec.stride), GroupedBatchNorm(n, spec.cout)
    )


class Trunk(nn.Module):
    """Stem + ResNet stages, named like torchvision's ResNet (conv1, bn1, layer1, ...)."""

    def __init__(self, spec: TrunkSpec) -> None:
        from nhlcli.model.kinds import get_kind

        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i, stage in enumerate(spec.stages, start=1):
            kind = get_kind(stage.kind)
            setattr(
                self, f"layer{i}", nn.Sequential(*(kind.single(b) for b in stage.block_specs()))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, len(self.spec.stages) + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


class ResNetNode(nn.Module):
    """One node of a level: single-branch blocks (``blocks.0``, ...); the scale goes to block 0."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, scale if i == 0 else None)
        return x


class GroupedLevel(Level):
    """All nodes of one ResNet-kind level: each node is the same chain of blocks (``blocks.0``,
    ...), the first reading its parent's slice; the attention scale goes to block 0."""

    splits_nodes = True

    def __init__(self, blocks: Sequence[BlockSpec], wiring: Wiring) -> None:
        from nhlcli.model.kinds import get_kind

        super().__init__()
        self.specs = tuple(blocks)
        self.wiring = wiring
        self.n = wiring.n
        self.blocks = nn.ModuleList(
            get_kind(spec.kind).grouped_block(spec, self.n, wiring if i == 0 else None)
            for i, spec in enumerate(self.specs)
        )

    def run_nodes(
        self, x: torch.Tensor, nodes: NodeRange, scale: torch.Tensor | None
    ) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, scale if i == 0 else None, nodes)
        return x

    def images_independent(self) -> bool:
        """Batch norm in training mode needs the whole batch's statistics."""
        return not self.training

    def node_image_bytes(self, x: torch.Tensor) -> int:
        _, _, h, w = x.shape
        per_node = 0
        for spec in self.specs:
            ho, wo = conv_out(h, spec.stride), conv_out(w, spec.stride)
            per_node = max(per_node, spec.mid * h * w, max(spec.mid, spec.cout) * ho * wo)
            h, w = ho, wo
        return per_node * x.element_size()

    def extra_repr(self) -> str:
        return f"nodes={self.n}, inputs={self.wiring.n_inputs}"


class ResNetKindBase(ResNetFormula, BlockKind):
    """What both ResNet kinds share (stem, trunk, node, level, pretrained layout; formulas:
    `ResNetFormula`)."""

    baseline = "resnet50"
    weight_layouts = (TORCHVISION_RESNET,)
    head_weights = {"fc": "fc."}  # noqa: RUF012 (read-only data)

    def node(self, specs: Sequence[BlockSpec]) -> nn.Module:
        return ResNetNode([self.single(s) for s in specs])

    def level(self, specs: Sequence[BlockSpec], wiring: Wiring) -> nn.Module:
        return GroupedLevel(specs, wiring)

    def trunk(self, spec: TrunkSpec) -> nn.Module:
        return Trunk(spec)

    def init_trunk(self, trunk: nn.Module) -> None:
        """torchvision's ResNet init: kaiming normal (fan_out) convs, BN weight 1 and bias 0."""
        for m in trunk.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
