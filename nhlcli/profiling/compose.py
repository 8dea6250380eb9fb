"""Profile a network by composition, without allocating it.

A network is a trunk, then levels of identical nodes (every node of level l is the same sequence of
blocks, fed by its parent's output), then the class heads. Parameters and MACs of the whole network
are therefore

    trunk + Σ_l n_l · node_l + head-part,

where n_l is the number of nodes on level l. The counter (fvcore, torch, thop or ptflops,
`counters.py`) runs once per *distinct* module and input shape: the kind's stem at the image size,
each distinct block (the kind's single-branch module, `BlockKind.single`) at its input size (the
trunk's stages and every level's node are chains of them; the repeated blocks of a stage are one
run; the kind's `out_size` gives the next shape), and one class head (`ClassHead`: pooling,
[LayerNorm,] `Linear(C, 1)`; for shared-head presets one `Linear(C, k)`). A 2.6 G-parameter PHL_big
at k = 1000 is profiled from a dozen small modules.

For the ResNet kinds the grouped implementation (a level = one tensor of n·c channels, grouped
convolutions, per-channel BN) has the same parameters and the same fvcore MACs as n separate
branches; the tests check the composed figures against fvcore on whole (small) models. For
ConvNeXt the composition counts timm's module structure, which is what the paper counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.model.config import check_img_size
from nhlcli.model.kinds import get_kind
from nhlcli.model.network import ClassHead
from nhlcli.model.presets import BlockSpec, Preset, TrunkSpec, get_preset
from nhlcli.profiling.counters import DEFAULT_COUNTER, check_counter, count_with
from nhlcli.profiling.fvcore_count import Count, SkippedOps


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
    counter: str = DEFAULT_COUNTER

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
            "counter": self.counter,
            "params": self.params,
            "macs": self.macs,
            "gmacs": self.gmacs,
            "parts": [p.to_dict() for p in self.parts],
        }


Shape = tuple[int, int, int]  # (C, H, W) of one module's input


# A counter runs once per distinct (module, input shape): the stem, each distinct block (the
# repeated blocks of a stage share one run), one class head. The caches make the three rows of a
# report (the baseline, the full model, its cutout) share most runs.
@lru_cache(maxsize=512)
def _stem_count(kind: str, img_size: int, counter: str) -> Count:
    return count_with(counter, get_kind(kind).stem(), (1, 3, img_size, img_size))


@lru_cache(maxsize=512)
def _block_count(spec: BlockSpec, h: int, w: int, counter: str) -> Count:
    return count_with(counter, get_kind(spec.kind).single(spec), (1, spec.cin, h, w))


@lru_cache(maxsize=512)
def _head_count(shape: Shape, outputs: int, norm_kind: str | None, counter: str) -> Count:
    """One class head; `norm_kind`: the block kind whose head norm it has (None: no norm)."""
    norm = None if norm_kind is None else get_kind(norm_kind).head_norm(shape[0])
    return count_with(counter, ClassHead(shape[0], outputs, norm), (1, *shape))


def _blocks_count(blocks: Sequence[BlockSpec], shape: Shape, counter: str) -> tuple[Count, Shape]:
    """A chain of blocks on an input shape: summed counts and the output shape."""
    params = macs = 0
    skipped = SkippedOps(tool=counter)
    _, h, w = shape
    for b in blocks:
        c = _block_count(b, h, w, counter)
        params, macs = params + c.params, macs + c.macs
        skipped.merge(c.skipped)
        h, w = get_kind(b.kind).out_size(b, h, w)
    return Count(params, macs, skipped), (blocks[-1].cout, h, w)


def trunk_count(spec: TrunkSpec, img_size: int, counter: str = "fvcore") -> tuple[Count, Shape]:
    """The trunk (stem + stages) at an image size: counts and the output shape."""
    stem = _stem_count(spec.kind, img_size, counter)
    c, side = get_kind(spec.kind).stem_out(img_size)
    blocks = [b for stage in spec.stages for b in stage.block_specs()]
    body, out = _blocks_count(blocks, (c, side, side), counter)
    skipped = SkippedOps(tool=counter)
    skipped.merge(stem.skipped)
    skipped.merge(body.skipped)
    return Count(stem.params + body.params, stem.macs + body.macs, skipped), out


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
    counter: str = DEFAULT_COUNTER,
) -> ModelProfile:
    """Parameters and MACs of `preset` with these node counts, composed per distinct shape.

    `nodes_per_level` lists the nodes of each level (the last entry is the number of classes); it is
    ignored for shared-head presets (the baselines, PHL_1branch), which have one node per level.
    `counter`: fvcore (default), torch, thop, ptflops or any registered (`profiling.counters`).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_img_size(img_size)
    check_counter(counter)
    if num_classes < 1:
        raise NhlError("a network needs at least one class")
    counts = level_node_counts(p, nodes_per_level, num_classes)
    skipped = SkippedOps(tool=counter)

    trunk, shape = trunk_count(p.trunk, img_size, counter)
    skipped.merge(trunk.skipped)
    parts = [PartProfile("trunk", 1, trunk.params, trunk.macs, (3, img_size, img_size))]
    for i, (blocks, n) in enumerate(zip(p.levels, counts, strict=True), start=1):
        node, out = _blocks_count(blocks, shape, counter)
        skipped.merge(node.skipped, times=n)
        parts.append(PartProfile(f"level {i}", n, node.params, node.macs, shape))
        shape = out
    norm_kind = p.head_kind if p.head_norm else None
    if p.head == "shared":
        head = _head_count(shape, num_classes, norm_kind, counter)
        parts.append(PartProfile("head", 1, head.params, head.macs, shape))
    else:
        head = _head_count(shape, 1, norm_kind, counter)
        parts.append(PartProfile("heads", num_classes, head.params, head.macs, shape))
    skipped.merge(head.skipped, times=parts[-1].count)
    return ModelProfile(
        p.name, img_size, num_classes, tuple(counts), tuple(parts), skipped, counter
    )
