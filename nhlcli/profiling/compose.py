"""Profile a network by composition, without allocating it.

A network is a trunk, then levels of identical nodes (every node of level l is the same sequence of
bottleneck blocks, fed by its parent's output), then the class heads. Parameters and fvcore MACs of
the whole network are therefore

    trunk + Σ_l n_l · node_l + head-part,

where n_l is the number of nodes on level l. fvcore runs once per *distinct* module and input shape:
the stem at the image size, each distinct bottleneck block (the plain `Bottleneck` module) at its
input size (the trunk's stages and every level's node are chains of them; the repeated blocks of a
stage are one run), and one class head (global average pooling + `Linear(C, 1)`; for shared-head
presets one `Linear(C, k)`). A 2.6 G-parameter PHL_big at k = 1000 is profiled from a dozen small
modules.

The grouped implementation (a level = one tensor of n·c channels, grouped convolutions, per-channel
BN) has the same parameters and the same fvcore MACs as n separate branches: a grouped convolution's
MACs are the sum over its groups, BN and pooling are counted per element. The tests check the
composed figures against fvcore on whole (small) models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from torch import nn

from nhlcli.errors import NhlError
from nhlcli.model.blocks import Bottleneck, Trunk
from nhlcli.model.presets import BlockSpec, Preset, TrunkSpec, get_preset
from nhlcli.profiling.fvcore_count import Count, SkippedOps, count_module

MIN_IMG_SIZE = 16
MAX_IMG_SIZE = 1024


@dataclass(frozen=True)
class PartProfile:
    """One part of a network: `count` copies of a module with `params_each`/`macs_each`."""

    name: str  # "trunk", "level 1", ..., "heads" / "head"
    count: int
    params_each: int
    macs_each: int
    input_shape: tuple[int, ...]  # (C, H, W) of one copy's input

    @property
    def params(self) -> int:
        return self.count * self.params_each

    @property
    def macs(self) -> int:
        return self.count * self.macs_each

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.name,
            "nodes": self.count,
            "input": list(self.input_shape),
            "params_each": self.params_each,
            "macs_each": self.macs_each,
            "params": self.params,
            "macs": self.macs,
            "gmacs": self.macs / 1e9,
        }


@dataclass(frozen=True)
class ModelProfile:
    """Parameters and MACs (batch 1) of one network, part by part."""

    arch: str
    img_size: int
    num_classes: int
    nodes_per_level: tuple[int, ...]
    parts: tuple[PartProfile, ...]
    skipped: SkippedOps = field(compare=False)

    @property
    def params(self) -> int:
        return sum(p.params for p in self.parts)

    @property
    def macs(self) -> int:
        return sum(p.macs for p in self.parts)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "img_size": self.img_size,
            "classes": self.num_classes,
            "nodes_per_level": list(self.nodes_per_level),
            "params": self.params,
            "macs": self.macs,
            "gmacs": self.gmacs,
            "parts": [p.to_dict() for p in self.parts],
        }


class _ClassHead(nn.Module):
    """Global average pooling, flatten, Linear(C, outputs): one class head (or the shared FC)."""

    def __init__(self, channels: int, outputs: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, outputs)

    def forward(self, x: Any) -> Any:
        return self.fc(self.pool(x).flatten(1))


Shape = tuple[int, int, int]  # (C, H, W) of one module's input


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a stride-s layer of this family (3x3 pad 1, 1x1 pad 0, 7x7 pad 3, max pool
    3 pad 1): ceil(size / stride)."""
    return (size - 1) // stride + 1


# fvcore runs once per distinct (module, input shape): the stem, each distinct bottleneck block (the
# repeated blocks of a ResNet stage share one run), one class head. The caches make the three rows
# of a report (ResNet50, the full model, its cutout) share most runs.
@lru_cache(maxsize=512)
def _stem_count(img_size: int) -> Count:
    return count_module(Trunk(TrunkSpec("stem", ())), (1, 3, img_size, img_size))


@lru_cache(maxsize=512)
def _block_count(spec: BlockSpec, h: int, w: int) -> Count:
    return count_module(Bottleneck(spec), (1, spec.cin, h, w))


@lru_cache(maxsize=512)
def _head_count(shape: Shape, outputs: int) -> Count:
    return count_module(_ClassHead(shape[0], outputs), (1, *shape))


def _blocks_count(blocks: Sequence[BlockSpec], shape: Shape) -> tuple[Count, Shape]:
    """A chain of blocks on an input shape: summed counts and the output shape."""
    params = macs = 0
    skipped = SkippedOps()
    _, h, w = shape
    for b in blocks:
        c = _block_count(b, h, w)
        params, macs = params + c.params, macs + c.macs
        skipped.merge(c.skipped)
        h, w = conv_out(h, b.stride), conv_out(w, b.stride)
    return Count(params, macs, skipped), (blocks[-1].cout, h, w)


def trunk_count(spec: TrunkSpec, img_size: int) -> tuple[Count, Shape]:
    """The trunk (stem + stages) at an image size: counts and the output shape."""
    stem = _stem_count(img_size)
    side = conv_out(conv_out(img_size, 2), 2)
    blocks = [b for stage in spec.stages for b in stage.block_specs()]
    body, out = _blocks_count(blocks, (64, side, side))
    skipped = SkippedOps()
    skipped.merge(stem.skipped)
    skipped.merge(body.skipped)
    return Count(stem.params + body.params, stem.macs + body.macs, skipped), out


def check_img_size(img_size: int) -> None:
    if not MIN_IMG_SIZE <= img_size <= MAX_IMG_SIZE:
        raise NhlError(
            f"--img-size {img_size} is out of range ({MIN_IMG_SIZE}..{MAX_IMG_SIZE} pixels)"
        )


def level_node_counts(
    preset: Preset, nodes_per_level: Sequence[int], num_classes: int
) -> list[int]:
    """Node counts actually built per level (shared-head presets: one node per level)."""
    if preset.head == "shared":
        return [1] * len(preset.levels)
    counts = list(nodes_per_level)
    if len(counts) != len(preset.levels):
        raise NhlError(
            f"{preset.name} has {len(preset.levels)} level(s) but {len(counts)} node count(s) "
            "were given"
        )
    if counts[-1] != num_classes:
        raise NhlError(
            f"the last level of {preset.name} holds the classes: {counts[-1]} nodes for "
            f"{num_classes} classes"
        )
    if any(n < 1 for n in counts):
        raise NhlError("every level needs at least one node")
    return counts


def compose_profile(
    preset: Preset | str,
    nodes_per_level: Sequence[int],
    num_classes: int,
    img_size: int = 224,
) -> ModelProfile:
    """Parameters and fvcore MACs of `preset` with these node counts, composed per distinct shape.

    `nodes_per_level` lists the nodes of each level (the last entry is the number of classes); it is
    ignored for shared-head presets (ResNet50, PHL_1branch), which have one node per level.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_img_size(img_size)
    if num_classes < 1:
        raise NhlError("a network needs at least one class")
    counts = level_node_counts(p, nodes_per_level, num_classes)
    skipped = SkippedOps()

    trunk, shape = trunk_count(p.trunk, img_size)
    skipped.merge(trunk.skipped)
    parts = [PartProfile("trunk", 1, trunk.params, trunk.macs, (3, img_size, img_size))]
    for i, (blocks, n) in enumerate(zip(p.levels, counts, strict=True), start=1):
        node, out = _blocks_count(blocks, shape)
        skipped.merge(node.skipped, times=n)
        parts.append(PartProfile(f"level {i}", n, node.params, node.macs, shape))
        shape = out
    if p.head == "shared":
        head = _head_count(shape, num_classes)
        parts.append(PartProfile("head", 1, head.params, head.macs, shape))
    else:
        head = _head_count(shape, 1)
        parts.append(PartProfile("heads", num_classes, head.params, head.macs, shape))
    skipped.merge(head.skipped, times=parts[-1].count)
    return ModelProfile(p.name, img_size, num_classes, tuple(counts), tuple(parts), skipped)
