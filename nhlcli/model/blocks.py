"""Plain ResNet building blocks (torchvision-compatible names, so ResNet state dicts load).

These are the single-branch modules: the trunk, and the per-node reference block that tests and
profiling use. The fast per-level implementation lives in `levels.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from nhlcli.model.presets import BlockSpec, TrunkSpec


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
        self.downsample: nn.Sequential | None = None
        if spec.projection:
            self.downsample = nn.Sequential(
                nn.Conv2d(spec.cin, spec.cout, 1, stride=spec.stride, bias=False),
                nn.BatchNorm2d(spec.cout),
            )

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if scale is not None:  # top-down attention on the 3x3 conv's feature maps
            out = out * scale
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Trunk(nn.Module):
    """Stem + ResNet stages, named like torchvision's ResNet (conv1, bn1, layer1, ...)."""

    def __init__(self, spec: TrunkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i, stage in enumerate(spec.stages, start=1):
            setattr(self, f"layer{i}", nn.Sequential(*(Bottleneck(b) for b in stage.block_specs())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, len(self.spec.stages) + 1):
            x = getattr(self, f"layer{i}")(x)
        return x
