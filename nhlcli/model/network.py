"""HierNet: trunk -> grouped levels (one per tree level) -> head, built from a preset and a tree.

* ``trunk``: the trunk of the preset's block kind: ResNet stem + stages with torchvision names
  (``trunk.conv1``, ``trunk.layer3.5.bn2`` ...), or ConvNeXt-V2 with timm's names
  (``trunk.stem.0``, ``trunk.stages.2.blocks.8.mlp.grn``), so those state dicts load after
  prefixing their keys with ``trunk.``.
* ``levels[l-1]``: the nodes of tree level l (the kind's grouped level), in the tree's network order
  (`Tree.level(l)`); node i of level l reads the output slice of its parent in level l-1.
* head, per-class presets (PHL, NHL): global average pooling of each leaf's map, then one
  ``Linear(C, 1)`` per class, stored together as ``heads.weight`` (k, C) and ``heads.bias`` (k,).
  The paper pools with "avg 3x3" on the 4x4 map at 224 px; global average pooling has the same
  parameters, nearly the same MACs, and adapts to any input size.
* head, shared presets (the ResNet/ConvNeXt baselines, ``phl-1branch``): the levels (if any) have
  ONE node each and a ``fc = Linear(C, k)`` follows global average pooling (torchvision's name),
  after a ``head_norm = LayerNorm(C)`` for presets with ``head_norm`` (ConvNeXt). The tree is used
  for its class list only.
* per-class heads of presets with ``head_norm`` add a LayerNorm(C) per class before its
  Linear(C, 1) (``heads.norm_*``). The norm's type and eps are the head kind's
  (`BlockKind.head_norm`: the kind of the last block before the head).

Everything kind-specific (trunk, levels, trunk init, head norm, residual norms) is asked of the
block kinds (`nhlcli.model.kinds`); this module names none.

Logits are (N, k) in ``tree.class_ids`` order.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.config import MODEL_FORMAT, check_img_size, level_node_ids
from nhlcli.model.grouped_ops import Wiring
from nhlcli.model.kinds import get_kind
from nhlcli.model.presets import Preset, get_preset


def require_finite_logits(logits: torch.Tensor, model: str) -> None:
    """NhlError naming `model` when `logits` hold NaN or inf (damaged or diverged weights).

    Prediction and evaluation call it on every batch, fusing and export on their check batch, so
    such a model is refused at its first batch instead of reporting probabilities of nan.
    """
    if not bool(torch.isfinite(logits).all()):
        raise NhlError(
            f"the outputs of {model} are not finite (NaN or inf logits; NaN/inf weights?)"
        )


class PerClassHead(nn.Module):
    """k heads Linear(C, 1), one per class, each on its own leaf's pooled features.

    With `norm_eps` (presets with ``head_norm``, e.g. ConvNeXt) each class first applies its own
    LayerNorm(C) to the pooled features (``norm_weight``, ``norm_bias``: (k, C)), as timm's
    NormMlpClassifierHead.
    """

    def __init__(self, k: int, c: int, norm_eps: float | None = None) -> None:
        super().__init__()
        self.k, self.c = k, c
        self.norm_eps = norm_eps
        self.weight = nn.Parameter(torch.empty(k, c))
        self.bias = nn.Parameter(torch.empty(k))
        self.norm_weight: nn.Parameter | None = None
        self.norm_bias: nn.Parameter | None = None
        if norm_eps is not None:
            self.norm_weight = nn.Parameter(torch.ones(k, c))
            self.norm_bias = nn.Parameter(torch.zeros(k, c))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.c)  # nn.Linear's default init for each Linear(C, 1)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # global average pooling per leaf, then each leaf's Linear(C, 1); written with ops fvcore
        # counts (adaptive pooling, einsum), so whole-model profiles equal the composed ones
        z = F.adaptive_avg_pool2d(x, 1).view(x.shape[0], self.k, self.c)
        if self.norm_weight is not None and self.norm_bias is not None:
            assert self.norm_eps is not None
            z = F.layer_norm(z, (self.c,), eps=self.norm_eps) * self.norm_weight + self.norm_bias
        return torch.einsum("nkc,kc->nk", z, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"classes={self.k}, in_features={self.c}"


class ClassHead(nn.Module):
    """One single-branch head: pool -> flatten -> [LayerNorm(C)] -> Linear(C, outputs).

    The per-branch reference and the profile composition use it (module types as in torchvision's
    ResNet and timm's NormMlpClassifierHead, so every counter counts it as on those). `norm`: the
    norm module (`head_norm_module`: the head kind's `BlockKind.head_norm`), or None for none.
    """

    def __init__(self, channels: int, outputs: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = norm
        self.fc = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pool(x).flatten(1)
        if self.norm is not None:
            z = self.norm(z)
        return self.fc(z)


def head_norm_module(preset: Preset, channels: int) -> nn.LayerNorm | None:
    """The head norm of `preset` on `channels` (its head kind's, `BlockKind.head_norm`), or None
    when the preset has none."""
    return get_kind(preset.head_kind).head_norm(channels) if preset.head_norm else None


class HierNet(nn.Module):
    """A PHL/NHL network (or the ResNet50 baseline) for one preset and one category tree."""

    def __init__(self, preset: Preset, tree: Tree, img_size: int = 224) -> None:
        super().__init__()
        check_img_size(img_size)
        self.preset = preset
        self.tree = tree
        self.img_size = int(img_size)
        self.cut_from: dict[str, Any] | None = None
        self.fused = False  # batch norms folded into the convolutions (`nhlcli.model.fuse`)
        self.attention_level: int | None = None
        self.attention: dict[str, float] = {}  # node id -> scale at attention_level

        self.level_ids = level_node_ids(preset, tree)  # checks the tree's depth

        self.trunk = get_kind(preset.trunk.kind).trunk(preset.trunk)
        levels = []
        for lv, blocks in enumerate(preset.levels, start=1):
            ids = self.level_ids[lv - 1]
            if lv == 1:
                wiring = Wiring([0] * len(ids), 1)
            else:
                pos = {nid: i for i, nid in enumerate(self.level_ids[lv - 2])}
                if preset.head == "per_class":
                    wiring = Wiring([pos[tree.node(nid).parent] for nid in ids], len(pos))  # type: ignore[index]
                else:
                    wiring = Wiring([0], 1)
            levels.append(get_kind(blocks[0].kind).level(blocks, wiring))
        self.levels = nn.ModuleList(levels)
        c = preset.head_in
        self.heads: PerClassHead | None = None
        self.fc: nn.Linear | None = None
        self.head_norm: nn.Module | None = None
        norm = head_norm_module(preset, c)
        if preset.head == "per_class":
            eps = None if norm is None else float(norm.eps)
            self.heads = PerClassHead(tree.num_classes, c, norm_eps=eps)
        else:
            self.head_norm = norm
            self.fc = nn.Linear(c, tree.num_classes)
        get_kind(preset.trunk.kind).init_trunk(self.trunk)

    # ----------------------------------------------------------------- running
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        for level in self.levels:
            h = level(h)
        if self.heads is not None:
            return self.heads(h)
        assert self.fc is not None
        z = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        if self.head_norm is not None:
            z = self.head_norm(z)
        return self.fc(z)

    def prepare_inference(self) -> HierNet:
        """Eval mode, and every level keeps the weights it derives from its parameters (bucket
        order, folded norms) instead of making them on every forward; returns the model.

        Like `nhlcli.model.fuse` and timm's reparameterisation, one explicit step before serving.
        The kept weights are used in eval mode without gradients only, and dropped by
        construction: `train()` ends the preparation, `load_state_dict`, `.to()` and any forward
        with gradients drop what was kept, copies start unprepared. After writing weights in
        place without gradients (``.data``, ``copy_`` under ``no_grad``) call it again.
        `eval()` on a prepared model keeps the preparation. See `nhlcli.model.levels`.
        """
        self.eval()
        for level in self.levels:
            level.prepare()  # type: ignore[operator]
        return self

    # ----------------------------------------------------------------- description
    @property
    def num_classes(self) -> int:
        return self.tree.num_classes

    @property
    def class_ids(self) -> list[str]:
        return self.tree.class_ids

    @property
    def per_class(self) -> bool:
        return self.preset.head == "per_class"

    def nodes_per_level(self) -> list[int]:
        """Nodes of each level (per-class presets: the last entry is the number of classes)."""
        return [len(ids) for ids in self.level_ids]

    def num_params(self) -> int:
        """Parameters (BN weight and bias included, running statistics not), as in the paper."""
        return sum(p.numel() for p in self.parameters())

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this network (JSON-able); weights excluded."""
        att = None
        if self.attention_level is not None:
            att = {"level": self.attention_level, "scales": dict(self.attention)}
        return {
            "format": MODEL_FORMAT,
            "arch": self.preset.name,
            "preset": self.preset.to_dict(),
            "tree": self.tree.to_dict(),
            "img_size": self.img_size,
            "nodes_per_level": self.nodes_per_level(),
            "params": self.num_params(),
            "attention": att,
            "cut_from": self.cut_from,
            "fused": self.fused,
        }

    def extra_repr(self) -> str:
        return f"arch={self.preset.name}, classes={self.num_classes}, img_size={self.img_size}"


def zero_init_residual(model: HierNet) -> int:
    """Zero the last norm scale (γ) of every residual block, trunk and levels (torchvision's
    `zero_init_residual`): each residual branch starts as the identity. Each block kind of the
    preset names that norm (`BlockKind.residual_norm`: ResNet bottleneck bn3, basic block bn2;
    ConvNeXt none) and the module types that carry it (`residual_blocks`).
    Returns the number of blocks set."""
    kinds = [get_kind(name) for name in model.preset.kinds]
    n = 0
    for m in model.modules():
        for kind in kinds:
            if kind.residual_norm is not None and isinstance(m, kind.residual_blocks):
                nn.init.zeros_(getattr(m, kind.residual_norm).weight)
                n += 1
    return n


def build_model(
    arch: str | Preset,
    tree: Tree,
    img_size: int = 224,
    device: str | torch.device | None = None,
    meta: bool = False,
) -> HierNet:
    """A randomly initialised network (meta=True: parameters on the meta device, for counting).

    Raises NhlError when the tree's number of levels does not fit the preset.
    """
    preset = arch if isinstance(arch, Preset) else get_preset(arch)
    dev = torch.device("meta") if meta else (torch.device(device) if device is not None else None)
    with dev if dev is not None else contextlib.nullcontext():
        return HierNet(preset, tree, img_size)
