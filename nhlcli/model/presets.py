"""Network presets as data: a trunk, per-level node block specs, and a head.

The numbers reproduce the paper's parameter counts to the unit (see docs/ARCHITECTURE.md, "Presets",
and ../shared/ARCHITECTURES.md from which they were reconstructed). One mechanism builds every
preset:

* a **trunk** of stages (ResNet: torchvision layout, so a ResNet50 state dict loads into it;
  ConvNeXt-V2: timm layout);
* zero or more **levels**; every node of level l is the same sequence of blocks, fed by its
  parent node's output (the trunk feeds level 1);
* a **head**: either one `Linear(C, 1)` per class after global average pooling (`per_class`), or one
  shared `Linear(C, k)` (`shared`: the ResNet and ConvNeXt baselines, PHL_1branch), whose last
  level then has a single node; ConvNeXt heads put a LayerNorm(C) before the FC (`head_norm`).

Every spec names its **block kind** (`BlockSpec.kind`: bottleneck, basic, convnextv2); the kind
(`nhlcli.model.kinds.BlockKind`) holds its formula, modules, grouped level, trunk, head norm,
pretrained layouts, default baseline and attention point. This module names kinds only in the data
of the built-in presets. PHL is the one-level case (the leaves only); N2HL/N3HL/N4HL have 2/3/4
levels. `register_preset` adds a preset (a new kind's, e.g.) to the ones `get_preset` knows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.model.kinds import get_formula, kind_names


@dataclass(frozen=True)
class BlockSpec:
    """One block of a block kind (`nhlcli.model.kinds`): cin -> cout channels at a stride.

    ``bottleneck`` (default, ResNet v1.5): 1x1 cin->mid, 3x3 mid->mid (stride), 1x1 mid->cout, +
    shortcut; ``basic``: 3x3 cin->cout (stride), 3x3 cout->cout (mid = cout), + shortcut;
    ``convnextv2``: a downsample (LayerNorm2d + conv) when cin != cout or stride > 1, then one
    ConvNeXt-V2 block of dim cout with MLP width mid (= 4·cout), layer scale iff `layer_scale`.
    """

    cin: int
    mid: int
    cout: int
    stride: int = 1
    kind: str = "bottleneck"
    layer_scale: bool = False

    @property
    def projection(self) -> bool:
        """Whether the shortcut (ResNet) or the input (ConvNeXt: downsample) is projected."""
        return self.stride != 1 or self.cin != self.cout

    def params(self) -> int:
        """Parameters of the block (the kind's formula; BN/LN weight and bias included)."""
        return int(get_formula(self.kind).params(self))


@dataclass(frozen=True)
class StageSpec:
    """`blocks` blocks of a kind; the first maps cin->cout with `stride`, the rest cout->cout."""

    blocks: int
    cin: int
    mid: int
    cout: int
    stride: int
    kind: str = "bottleneck"

    def block_specs(self) -> list[BlockSpec]:
        first = BlockSpec(self.cin, self.mid, self.cout, self.stride, self.kind)
        rest = BlockSpec(self.cout, self.mid, self.cout, 1, self.kind)
        return [first] + [rest] * (self.blocks - 1)


@dataclass(frozen=True)
class TrunkSpec:
    name: str
    stages: tuple[StageSpec, ...]

    @property
    def kind(self) -> str:
        """The block kind of the trunk's stages (it also decides the stem)."""
        return self.stages[0].kind if self.stages else "bottleneck"

    @property
    def out_channels(self) -> int:
        return self.stages[-1].cout

    def params(self) -> int:
        stem = int(get_formula(self.kind).stem_params())
        return stem + sum(b.params() for s in self.stages for b in s.block_specs())


Width = tuple[int, int, int, int]  # (cin, mid, cout, stride) of a stage


def stages(kind: str, widths: tuple[Width, ...], counts: tuple[int, ...]) -> tuple[StageSpec, ...]:
    """Stages of `kind` with these widths and block counts (as many stages as counts)."""
    return tuple(StageSpec(n, *w, kind=kind) for n, w in zip(counts, widths, strict=False))


# the stage widths of the built-in trunks (data): torchvision's ResNet50/152/200 (bottleneck) and
# ResNet18 (basic block), ConvNeXt-V2-tiny (dims 96-768, MLP 4·d; stage 1 follows the stem)
RESNET_WIDTHS = ((64, 64, 256, 1), (256, 128, 512, 2), (512, 256, 1024, 2), (1024, 512, 2048, 2))
RESNET18_WIDTHS = ((64, 64, 64, 1), (64, 128, 128, 2), (128, 256, 256, 2), (256, 512, 512, 2))
CONVNEXTV2_TINY_WIDTHS = (
    (96, 384, 96, 1), (96, 768, 192, 2), (192, 1536, 384, 2), (384, 3072, 768, 2)
)  # fmt: skip


def _trunk(name: str, kind: str, widths: tuple[Width, ...], counts: tuple[int, ...]) -> TrunkSpec:
    return TrunkSpec(name, stages(kind, widths, counts))


TRUNKS: dict[str, TrunkSpec] = {
    "T3": _trunk("T3", "bottleneck", RESNET_WIDTHS, (3, 4)),
    "T4": _trunk("T4", "bottleneck", RESNET_WIDTHS, (3, 4, 6)),
    "T4-152": _trunk("T4-152", "bottleneck", RESNET_WIDTHS, (3, 8, 36)),
    "R18": _trunk("R18", "basic", RESNET18_WIDTHS, (2, 2, 2, 2)),
    "R50": _trunk("R50", "bottleneck", RESNET_WIDTHS, (3, 4, 6, 3)),
    "R152": _trunk("R152", "bottleneck", RESNET_WIDTHS, (3, 8, 36, 3)),
    "R200": _trunk("R200", "bottleneck", RESNET_WIDTHS, (3, 24, 36, 3)),
    "CNv2-T3": _trunk("CNv2-T3", "convnextv2", CONVNEXTV2_TINY_WIDTHS, (3, 3, 9)),
    "CNv2-T": _trunk("CNv2-T", "convnextv2", CONVNEXTV2_TINY_WIDTHS, (3, 3, 9, 3)),
}


@dataclass(frozen=True)
class Preset:
    name: str
    trunk: TrunkSpec
    levels: tuple[tuple[BlockSpec, ...], ...]  # per level: the blocks of one node
    head: str  # "per_class" or "shared"
    description: str
    extrapolated: bool = False
    head_norm: bool = False  # a LayerNorm(C) after the pooling, before the FC (ConvNeXt heads)
    # the comparison row of `nhl profile` (--baseline); None: the trunk kind's (BlockKind.baseline)
    baseline: str | None = None

    @property
    def num_levels(self) -> int:
        """Tree levels the preset needs (0: any class list; the tree's structure is unused)."""
        return 0 if self.head == "shared" else len(self.levels)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The block kinds the preset uses (trunk stages, then levels), each once."""
        names = [self.trunk.kind, *(s.kind for s in self.trunk.stages)]
        names += [b.kind for lvl in self.levels for b in lvl]
        return tuple(dict.fromkeys(names))

    @property
    def head_kind(self) -> str:
        """The kind of the last block before the head (it decides the head norm)."""
        return self.levels[-1][-1].kind if self.levels else self.trunk.kind

    @property
    def head_in(self) -> int:
        return self.levels[-1][-1].cout if self.levels else self.trunk.out_channels

    @property
    def head_params_each(self) -> int:
        """Parameters of one class head (per-class) or of the shared head per class (FC row)."""
        return self.head_in + 1

    @property
    def head_norm_params(self) -> int:
        return 2 * self.head_in if self.head_norm else 0

    def node_params(self, level: int) -> int:
        """Parameters of one node of a level (1-based); the last level includes its class head."""
        p = sum(b.params() for b in self.levels[level - 1])
        if self.head == "per_class" and level == len(self.levels):
            p += self.head_in + 1 + self.head_norm_params
        return p

    def params(self, nodes_per_level: list[int] | tuple[int, ...], num_classes: int) -> int:
        """Exact parameter count for a tree with these node counts (last entry = classes)."""
        if self.head == "shared":
            body = sum(b.params() for lvl in self.levels for b in lvl) + self.head_norm_params
            return self.trunk.params() + body + self.head_in * num_classes + num_classes
        if len(nodes_per_level) != len(self.levels):
            raise NhlError(f"{self.name} needs {len(self.levels)} levels of node counts")
        return self.trunk.params() + sum(
            n * self.node_params(i + 1) for i, n in enumerate(nodes_per_level)
        )

    def formula(self) -> str:
        """The parameter count as a formula: n1, n2, ... nodes per level, k classes."""
        if self.head == "shared":
            body = sum(b.params() for lvl in self.levels for b in lvl) + self.head_norm_params
            return f"{self.trunk.params() + body:,} + {self.head_in + 1:,}·k"
        terms = [f"{self.trunk.params():,}"]
        for lv in range(1, len(self.levels) + 1):
            var = "k" if lv == len(self.levels) else f"n{lv}"
            terms.append(f"{self.node_params(lv):,}·{var}")
        return " + ".join(terms)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["baseline"] is None:  # the kind's default: left out (readers default it)
            del d["baseline"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        trunk = TrunkSpec(d["trunk"]["name"], tuple(StageSpec(**s) for s in d["trunk"]["stages"]))
        levels = tuple(tuple(BlockSpec(**b) for b in lvl) for lvl in d["levels"])
        return cls(
            d["name"],
            trunk,
            levels,
            d["head"],
            d["description"],
            d.get("extrapolated", False),
            d.get("head_norm", False),
            d.get("baseline"),
        )


MAX_WIDTH = 8192  # channels of any convolution
MAX_BLOCKS = 64  # bottlenecks in one trunk stage or one node (ResNet152's conv4 has 36)
MAX_STAGES = 4
MAX_LEVELS = 8
HEADS = ("per_class", "shared")


def preset_problems(d: Any) -> list[str]:
    """Everything wrong with a preset as stored in a config (types, ranges, chained widths).

    Checked before anything is built, so a damaged or edited config never allocates, hangs or
    divides by zero.
    """
    if not isinstance(d, dict):
        return ["'preset' must be an object"]
    p: list[str] = []
    for key, kind in (("name", str), ("description", str), ("head", str)):
        if not isinstance(d.get(key), kind):
            p.append(f"preset.{key} must be a string")
    if d.get("head") not in HEADS:
        p.append(f"preset.head must be one of {', '.join(HEADS)}")
    for key in ("extrapolated", "head_norm"):
        if not isinstance(d.get(key, False), bool):
            p.append(f"preset.{key} must be true or false")
    if not isinstance(d.get("baseline"), str | None):
        p.append("preset.baseline must be a string or null")
    trunk = d.get("trunk")
    if not isinstance(trunk, dict) or not isinstance(trunk.get("name"), str):
        return [*p, "preset.trunk must be an object with a name and stages"]
    stages, levels = trunk.get("stages"), d.get("levels")
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        return [*p, f"preset.trunk.stages must be a list of 1..{MAX_STAGES} stages"]
    if not isinstance(levels, list) or len(levels) > MAX_LEVELS:
        return [*p, f"preset.levels must be a list of at most {MAX_LEVELS} levels"]
    first_kind = stages[0].get("kind", "bottleneck") if isinstance(stages[0], dict) else None
    if first_kind not in kind_names():
        return [*p, f"preset.trunk.stages[0].kind must be one of {', '.join(kind_names())}"]
    width = int(get_formula(first_kind).stem_out(224)[0])  # the stem's output channels
    for i, stage in enumerate(stages):
        where = f"preset.trunk.stages[{i}]"
        if not _spec_ok(stage, ("blocks", "cin", "mid", "cout", "stride"), ("kind",), where, p):
            return p
        if not 1 <= stage["blocks"] <= MAX_BLOCKS:
            p.append(f"{where}.blocks must be in 1..{MAX_BLOCKS}")
        if stage["cin"] != width:
            p.append(f"{where}.cin is {stage['cin']} but the layer before gives {width}")
        width = stage["cout"]
    for lv, blocks in enumerate(levels, start=1):
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= MAX_BLOCKS:
            p.append(f"preset.levels[{lv - 1}] must be a list of 1..{MAX_BLOCKS} blocks")
            return p
        for j, block in enumerate(blocks):
            where = f"preset.levels[{lv - 1}][{j}]"
            optional = ("kind", "layer_scale")
            if not _spec_ok(block, ("cin", "mid", "cout", "stride"), optional, where, p):
                return p
            if block["cin"] != width:
                p.append(f"{where}.cin is {block['cin']} but the layer before gives {width}")
            width = block["cout"]
    return p


def _spec_ok(
    spec: Any, keys: tuple[str, ...], optional: tuple[str, ...], where: str, problems: list[str]
) -> bool:
    """Whether a stage/block spec has these integer keys in range, and at most the optional
    `kind` (a known block kind) and `layer_scale` (a bool) besides (problems appended)."""
    if not isinstance(spec, dict) or not set(keys) <= set(spec) <= set(keys) | set(optional):
        problems.append(f"{where} must be an object with {', '.join(keys)}")
        return False
    if spec.get("kind", "bottleneck") not in kind_names():
        problems.append(f"{where}.kind must be one of {', '.join(kind_names())}")
        return False
    if not isinstance(spec.get("layer_scale", False), bool):
        problems.append(f"{where}.layer_scale must be true or false")
        return False
    for key in keys:
        v = spec[key]
        if isinstance(v, bool) or not isinstance(v, int):
            problems.append(f"{where}.{key} must be an integer, not {v!r}")
            return False
        if key == "stride" and v not in (1, 2):
            problems.append(f"{where}.stride must be 1 or 2, not {v}")
            return False
        if key in ("cin", "mid", "cout") and not 1 <= v <= MAX_WIDTH:
            problems.append(f"{where}.{key} must be in 1..{MAX_WIDTH}, not {v}")
            return False
    return True


B = CN = BlockSpec
_LATESP = (B(1024, 128, 512, 2), B(512, 64, 256, 2), B(256, 32, 128, 1))

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "resnet18",
            TRUNKS["R18"],
            (),
            "shared",
            "ResNet18 baseline (basic blocks) with a k-way FC",
            baseline="resnet18",
        ),
        Preset("resnet50", TRUNKS["R50"], (), "shared", "ResNet50 baseline with a k-way FC"),
        Preset(
            "resnet152",
            TRUNKS["R152"],
            (),
            "shared",
            "ResNet152 baseline with a k-way FC",
            baseline="resnet152",
        ),
        Preset(
            "resnet200",
            TRUNKS["R200"],
            (),
            "shared",
            "ResNet200 baseline with a k-way FC",
            baseline="resnet200",
        ),
        Preset(
            "convnextv2-tiny",
            TRUNKS["CNv2-T"],
            (),
            "shared",
            "ConvNeXtV2-tiny baseline (timm names) with a LayerNorm + k-way FC head",
            head_norm=True,
        ),
        Preset(
            "phl-small",
            TRUNKS["T3"],
            ((B(512, 128, 512, 2), B(512, 64, 256, 2), B(256, 32, 128, 2)),),
            "per_class",
            "PHL_small: split after conv3, one small branch per class",
        ),
        Preset(
            "phl-big",
            TRUNKS["T3"],
            ((B(512, 256, 1024, 2), B(1024, 128, 512, 2), B(512, 64, 256, 2)),),
            "per_class",
            "PHL_big: split after conv3, one wide branch per class",
        ),
        Preset(
            "phl-latesp",
            TRUNKS["T4"],
            (_LATESP,),
            "per_class",
            "PHL_lateSP: split after conv4, one branch per class",
        ),
        Preset(
            "phl-1branch",
            TRUNKS["T4"],
            (_LATESP,),
            "shared",
            "PHL_1branch: one lateSP branch shared by all classes, FC 128->k",
        ),
        Preset(
            "n2hl",
            TRUNKS["T3"],
            ((B(512, 128, 512, 2),), (B(512, 64, 256, 2), B(256, 32, 128, 2))),
            "per_class",
            "N2HL: superclass -> class, split after conv3",
        ),
        Preset(
            "n3hl",
            TRUNKS["T4"],
            ((B(1024, 128, 512, 1),), (B(512, 64, 256, 1),), (B(256, 32, 128, 2),)),
            "per_class",
            "N3HL: superclass -> sub-superclass -> class, split after conv4",
        ),
        Preset(
            "n3hl152",
            TRUNKS["T4-152"],
            ((B(1024, 128, 512, 1),), (B(512, 64, 256, 1),), (B(256, 32, 128, 2),)),
            "per_class",
            "N3HL152: N3HL on a ResNet152 trunk",
            baseline="resnet152",
        ),
        Preset(
            "convnextv2-nhl",
            TRUNKS["CNv2-T3"],
            (
                (CN(384, 1024, 256, 1, "convnextv2", True),),
                (CN(256, 512, 128, 1, "convnextv2", True),),
                (CN(128, 256, 64, 2, "convnextv2", True),),
            ),
            "per_class",
            "ConvNeXtV2-tiny NHL: 3 levels of timm ConvNeXtStage nodes on stages 1-3",
            head_norm=True,
        ),
        Preset(
            "n4hl",
            TRUNKS["T4"],
            (
                (B(1024, 128, 512, 1),),
                (B(512, 64, 256, 1),),
                (B(256, 32, 128, 1),),
                (B(128, 16, 64, 2),),
            ),
            "per_class",
            "N4HL: one level more than N3HL, widths halving (an extrapolation: the paper "
            "gives no widths)",
            extrapolated=True,
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset of this name, in any case (`N3HL` is n3hl): every `--arch`, `--baseline` and
    bench target reads its preset here."""
    preset = PRESETS.get(name) or {n.lower(): p for n, p in PRESETS.items()}.get(name.lower())
    if preset is None:
        raise NhlError(f"unknown architecture '{name}' (choose from {', '.join(PRESETS)})")
    return preset


def register_preset(preset: Preset) -> Preset:
    """Make `preset` known by name (`get_preset`, ``--arch``, a baseline); returns it.

    A name that is taken by another preset is a ValueError (`unregister_preset` first)."""
    known = PRESETS.get(preset.name)
    if known is not None and known != preset:
        raise ValueError(f"preset '{preset.name}' is already registered")
    PRESETS[preset.name] = preset
    return preset


def unregister_preset(name: str) -> None:
    """Forget a preset registered with `register_preset`."""
    PRESETS.pop(name, None)


def baseline_names() -> list[str]:
    """The presets a profile can compare with (`--baseline`): the plain networks, i.e. the
    shared-head presets without levels (resnet18/50/152/200, convnextv2-tiny, ...)."""
    return [p.name for p in PRESETS.values() if p.head == "shared" and not p.levels]
