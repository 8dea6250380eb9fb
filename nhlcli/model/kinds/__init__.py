"""Block kinds: everything one kind of node block needs, one module per kind.

A preset's specs name their kind (`BlockSpec.kind`, `StageSpec.kind`): ``bottleneck`` (ResNet
v1.5 bottleneck), ``basic`` (ResNet basic block) or ``convnextv2`` (a ConvNeXt-V2 stage node).
`get_kind(name)` imports the kind's module (torch) on first use, so `nhlcli.model.presets` stays
pure data. A kind (a `BlockKind` subclass, the module's ``KIND``) provides:

* ``params(spec)``: the parameter formula of one block (BN/LN weight and bias included);
* ``out_size(spec, h, w)``: the spatial size after the block;
* ``single(spec)``: the single-branch module (``forward(x, scale=None)``), used by the trunk,
  the per-branch reference and the profile composition (each counter runs on it);
* ``node(specs)``: one node of a level as a single-branch module whose state-dict names equal
  the grouped level's names without the leading node dimension (the per-branch reference);
* ``level(specs, wiring)``: the grouped version, ALL n nodes of a level as one computation;
  every per-node tensor has a leading node dimension (cutouts slice it);
* ``trunk(spec)`` / ``stem_params()`` / ``stem()``: the trunk of this family and its stem;
* ``attention_channels(spec)`` and ``ATTENTION``: how many channels per node the attention scale
  multiplies, and where (a sentence for the docs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nhlcli.errors import NhlError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from nhlcli.model.grouped_ops import Wiring
    from nhlcli.model.presets import BlockSpec, TrunkSpec

KIND_MODULES = {
    "bottleneck": "nhlcli.model.kinds.bottleneck",
    "basic": "nhlcli.model.kinds.basic",
    "convnextv2": "nhlcli.model.kinds.convnextv2",
}


class BlockKind:
    """The interface of a block kind (see the module doc); subclasses implement every method."""

    name = ""
    #: where top-down attention multiplies a node's features (one sentence, for the docs)
    ATTENTION = ""

    def params(self, spec: BlockSpec) -> int:
        raise NotImplementedError

    def out_size(self, spec: BlockSpec, h: int, w: int) -> tuple[int, int]:
        raise NotImplementedError

    def single(self, spec: BlockSpec) -> nn.Module:
        raise NotImplementedError

    def node(self, specs: Sequence[BlockSpec]) -> nn.Module:
        raise NotImplementedError

    def level(self, specs: Sequence[BlockSpec], wiring: Wiring) -> nn.Module:
        raise NotImplementedError

    def trunk(self, spec: TrunkSpec) -> nn.Module:
        raise NotImplementedError

    def stem_params(self) -> int:
        raise NotImplementedError

    def stem(self) -> nn.Module:
        raise NotImplementedError

    def stem_out(self, img_size: int) -> tuple[int, int]:
        """(channels, side) of the stem's output for a square image."""
        raise NotImplementedError

    def attention_channels(self, spec: BlockSpec) -> int:
        raise NotImplementedError


def get_kind(name: str) -> Any:
    """The `BlockKind` named `name` (its module is imported on first use)."""
    module = KIND_MODULES.get(name)
    if module is None:
        raise NhlError(f"unknown block kind '{name}' (known: {', '.join(KIND_MODULES)})")
    return importlib.import_module(module).KIND
