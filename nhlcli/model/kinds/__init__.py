"""Block kinds: everything one kind of node block is, as data and factories, one module per kind.

A preset's specs name their kind (`BlockSpec.kind`, `StageSpec.kind`): ``bottleneck`` (ResNet
v1.5 bottleneck), ``basic`` (ResNet basic block) or ``convnextv2`` (a ConvNeXt-V2 stage node). A
kind is a `BlockKind` object that declares every piece of itself (the table in docs/ARCHITECTURE.md,
"Block kinds"), in the way timm's ``pretrained_cfg`` carries a model's weights, head and defaults:
its formula, modules, grouped level, trunk, head norm, residual norm, pretrained-weight layouts,
default baseline and attention point. The network, the presets, the profiler and the trunk-weight
loader ask the kind; none of them names a kind.

A kind's module ends with one line, ``KIND = register_kind(MyKind())``. The built-in kinds are
listed in `BUILTIN_KINDS` and imported on first use (`get_kind`), so `nhlcli.model.presets` stays
pure data; `get_formula(name)` answers a kind's formulas (`params`, `out_size`, `stem_params`,
`stem_out`, `attention_channels`) without torch for the built-in kinds (`formulas.py`, which their
modules subclass), so parameter counts never import torch; a kind defined elsewhere (a plugin, a
test) is usable once registered, and `unregister_kind` removes it again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nhlcli.errors import NhlError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from nhlcli.model.grouped_ops import Wiring
    from nhlcli.model.presets import BlockSpec, TrunkSpec

#: the kinds that ship with nhl: name -> the module that registers it (imported on first use)
BUILTIN_KINDS = {
    "bottleneck": "nhlcli.model.kinds.bottleneck",
    "basic": "nhlcli.model.kinds.basic",
    "convnextv2": "nhlcli.model.kinds.convnextv2",
}

_REGISTRY: dict[str, BlockKind] = {}

HEAD_NORM_EPS = 1e-6  # the default head norm's epsilon (timm's NormMlpClassifierHead)


@dataclass(frozen=True)
class WeightLayout:
    """A pretrained state-dict layout that a kind's trunk reads (`BlockKind.weight_layouts`).

    ``signature``: keys every file of this layout has (how `detect_layout` recognises it);
    ``convert``: one key and tensor of such a file -> the kind's own names (None: already them).
    """

    name: str  # e.g. "torchvision-resnet"
    description: str  # for messages: "a torchvision ResNet (conv1.weight, ...)"
    signature: tuple[str, ...]
    convert: Callable[[str, Any], tuple[str, Any]] | None = None


class BlockKind:
    """Everything about one kind of block (module doc); a kind's module subclasses it.

    Data fields (class attributes) and factories (methods). Methods without a default raise
    NotImplementedError: every kind implements them.
    """

    #: the name specs use (`BlockSpec.kind`)
    name = ""
    #: where top-down attention multiplies a node's features (one sentence, for the docs)
    attention = ""
    #: the preset `nhl profile` compares with by default (`Preset.baseline` overrides it)
    baseline = ""
    #: the last norm of a block's residual branch, zero-initialised by `zero_init_residual`
    #: (torchvision's ``zero_init_residual``), an attribute of every `residual_blocks` module;
    #: None: the kind has none (ConvNeXt: its blocks end in a layer scale or an MLP)
    residual_norm: str | None = None
    #: the module types (single and grouped blocks) that carry `residual_norm`
    residual_blocks: tuple[type, ...] = ()
    #: the pretrained-weight layouts the kind's trunk reads (`nhl train --trunk-weights`)
    weight_layouts: tuple[WeightLayout, ...] = ()
    #: where a pretrained file keeps a shared-head preset's head, per HierNet attribute
    #: (``fc``, ``head_norm``) in the kind's own names: loaded when the shapes agree
    head_weights: dict[str, str] = {}  # noqa: RUF012 (read-only data)

    # ------------------------------------------------------------------ formulas (no torch)
    def params(self, spec: BlockSpec) -> int:
        """Parameters of one block (norm weights and biases included)."""
        raise NotImplementedError

    def out_size(self, spec: BlockSpec, h: int, w: int) -> tuple[int, int]:
        """The spatial size after one block."""
        raise NotImplementedError

    def attention_channels(self, spec: BlockSpec) -> int:
        """Channels per node that the attention scale multiplies (at `attention`)."""
        raise NotImplementedError

    def stem_params(self) -> int:
        raise NotImplementedError

    def stem_out(self, img_size: int) -> tuple[int, int]:
        """(channels, side) of the stem's output for a square image."""
        raise NotImplementedError

    # ------------------------------------------------------------------ modules
    def single(self, spec: BlockSpec) -> nn.Module:
        """The single-branch block, ``forward(x, scale=None)``: the trunk, the per-branch
        reference and the profile composition (every counter runs on it) use it."""
        raise NotImplementedError

    def node(self, specs: Sequence[BlockSpec]) -> nn.Module:
        """One node of a level as single-branch modules; its state names equal the grouped
        level's without the leading node dimension (the per-branch reference)."""
        raise NotImplementedError

    def level(self, specs: Sequence[BlockSpec], wiring: Wiring) -> nn.Module:
        """The grouped level: ALL n nodes of a level as one computation (a `levels.Level`),
        every per-node tensor with a leading node dimension (cutouts slice it)."""
        raise NotImplementedError

    def grouped_block(self, spec: BlockSpec, n: int, wiring: Wiring | None) -> nn.Module:
        """n blocks of one spec side by side, for a level built of blocks (the ResNet kinds'
        `GroupedLevel` calls it for each block of a node); kinds whose `level` builds its
        blocks itself leave it out."""
        raise NotImplementedError(f"block kind '{self.name}' has no grouped block")

    def trunk(self, spec: TrunkSpec) -> nn.Module:
        """The trunk (stem and stages) of a trunk spec whose stages are of this kind."""
        raise NotImplementedError

    def stem(self) -> nn.Module:
        """The stem alone (profile composition): default, the trunk of a spec without stages."""
        from nhlcli.model.presets import TrunkSpec

        return self.trunk(TrunkSpec("stem", ()))

    def init_trunk(self, trunk: nn.Module) -> None:
        """Initialise a built network's trunk (called once the heads are built); default:
        nothing (the trunk initialised itself)."""

    def head_norm(self, channels: int) -> nn.LayerNorm:
        """The norm on the pooled features before a head's FC, for presets with ``head_norm``:
        a LayerNorm over the channels, of the kind's module type and eps (per-class heads apply
        the same norm with each class's own affine). Default: ``nn.LayerNorm(C, eps=1e-6)``."""
        from torch import nn

        return nn.LayerNorm(channels, eps=HEAD_NORM_EPS)


def register_kind(kind: BlockKind) -> BlockKind:
    """Make `kind` known under ``kind.name`` (specs name it); returns it.

    A kind's module ends with ``KIND = register_kind(MyKind())``. Registering another kind under
    a name that is taken is a ValueError (`unregister_kind` first).
    """
    if not kind.name:
        raise ValueError("a block kind needs a name")
    known = _REGISTRY.get(kind.name)
    if known is not None and known is not kind:
        raise ValueError(f"block kind '{kind.name}' is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a registered kind (a built-in kind registers itself again on its next use)."""
    _REGISTRY.pop(name, None)


def kind_names() -> list[str]:
    """The names of the kinds specs may use: the built-in ones, then those registered."""
    return [*BUILTIN_KINDS, *(n for n in _REGISTRY if n not in BUILTIN_KINDS)]


def get_formula(name: str) -> Any:
    """The formulas of kind `name` (parameters, sizes, stem, attention channels): a registered
    kind itself, a built-in kind's torch-free formula (`formulas.py`) before its module is
    imported."""
    from nhlcli.model.kinds.formulas import FORMULAS

    kind = _REGISTRY.get(name)
    if kind is not None:
        return kind
    formula = FORMULAS.get(name)
    return formula if formula is not None else get_kind(name)


def get_kind(name: str) -> Any:
    """The `BlockKind` named `name` (a built-in kind's module is imported on first use)."""
    kind = _REGISTRY.get(name)
    if kind is not None:
        return kind
    module = BUILTIN_KINDS.get(name)
    if module is None:
        raise NhlError(f"unknown block kind '{name}' (known: {', '.join(kind_names())})")
    kind = importlib.import_module(module).KIND
    return register_kind(kind)


def all_weight_layouts() -> list[WeightLayout]:
    """Every known kind's pretrained-weight layouts, each once (kinds may share one)."""
    seen: dict[str, WeightLayout] = {}
    for name in kind_names():
        for layout in get_kind(name).weight_layouts:
            seen.setdefault(layout.name, layout)
    return list(seen.values())
