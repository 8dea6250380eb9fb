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
  after a ``head_norm = LayerNorm(C)`` for ConvNeXt. The tree is used for its class list only.
* ConvNeXt per-class heads add a LayerNorm(C) per class before its Linear(C, 1) (``heads.norm_*``).

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
from nhlcli.model.grouped_ops import Wiring
from nhlcli.model.kinds import get_kind
from nhlcli.model.presets import Preset, get_preset, preset_problems

MODEL_FORMAT = "nhl-model/1"
MIN_IMG_SIZE = 32
MAX_IMG_SIZE = 1024
MAX_PARAMS = 4_000_000_000  # a config asking for more is refused before anything is built


def check_img_size(size: Any, what: str = "image size") -> int:
    """`size` if it is an integer within MIN_IMG_SIZE..MAX_IMG_SIZE; NhlError otherwise."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise NhlError(f"{what} must be an integer number of pixels, not {size!r}")
    if size < MIN_IMG_SIZE:
        raise NhlError(f"{what} {size} is too small (at least {MIN_IMG_SIZE} px)")
    if size > MAX_IMG_SIZE:
        raise NhlError(f"{what} {size} is too large (at most {MAX_IMG_SIZE} px)")
    return size


HEAD_NORM_EPS = 1e-6  # the LayerNorm of ConvNeXt heads (timm's NormMlpClassifierHead)


class PerClassHead(nn.Module):
    """k heads Linear(C, 1), one per class, each on its own leaf's pooled features.

    With `norm` (ConvNeXt presets) each class first applies its own LayerNorm(C) to the pooled
    features (``norm_weight``, ``norm_bias``: (k, C)), as timm's NormMlpClassifierHead.
    """

    def __init__(self, k: int, c: int, norm: bool = False) -> None:
        super().__init__()
        self.k, self.c = k, c
        self.weight = nn.Parameter(torch.empty(k, c))
        self.bias = nn.Parameter(torch.empty(k))
        self.norm_weight: nn.Parameter | None = None
        self.norm_bias: nn.Parameter | None = None
        if norm:
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
            z = F.layer_norm(z, (self.c,), eps=HEAD_NORM_EPS) * self.norm_weight + self.norm_bias
        return torch.einsum("nkc,kc->nk", z, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"classes={self.k}, in_features={self.c}"


class ClassHead(nn.Module):
    """One single-branch head: pool -> flatten -> [LayerNorm(C)] -> Linear(C, outputs).

    The per-branch reference and the profile composition use it (module types as in torchvision's
    ResNet and timm's NormMlpClassifierHead, so every counter counts it as on those).
    """

    def __init__(self, channels: int, outputs: int, norm: bool = False) -> None:
        super().__init__()
        from nhlcli.model.kinds.convnextv2 import LayerNorm

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm: nn.Module | None = LayerNorm(channels, eps=HEAD_NORM_EPS) if norm else None
        self.fc = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pool(x).flatten(1)
        if self.norm is not None:
            z = self.norm(z)
        return self.fc(z)


def levels_hint(preset: Preset) -> str:
    """What to do when a tree's depth does not fit the preset (leads the error message)."""
    n = preset.num_levels
    if n == 1:
        return (
            f"{preset.name} is a one-level preset: give it a class set (--classes imagenette) or "
            "a 1-level tree (nhl build-tree --levels 1)"
        )
    return f"{preset.name} nests {n} levels: use a {n}-level tree (nhl build-tree --levels {n})"


class HierNet(nn.Module):
    """A PHL/NHL network (or the ResNet50 baseline) for one preset and one category tree."""

    def __init__(self, preset: Preset, tree: Tree, img_size: int = 224) -> None:
        super().__init__()
        check_img_size(img_size)
        if preset.num_levels:
            tree.require_levels(preset.num_levels, hint=levels_hint(preset))
        self.preset = preset
        self.tree = tree
        self.img_size = int(img_size)
        self.cut_from: dict[str, Any] | None = None
        self.fused = False  # batch norms folded into the convolutions (`nhlcli.model.fuse`)
        self.attention_level: int | None = None
        self.attention: dict[str, float] = {}  # node id -> scale at attention_level

        if preset.head == "per_class":
            self.level_ids: list[list[str]] = [
                tree.level(lv) for lv in range(1, preset.num_levels + 1)
            ]
        else:  # one shared node per level
            self.level_ids = [[f"shared{lv}"] for lv in range(1, len(preset.levels) + 1)]

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
        if preset.head == "per_class":
            self.heads = PerClassHead(tree.num_classes, c, norm=preset.head_norm)
        else:
            if preset.head_norm:
                from nhlcli.model.kinds.convnextv2 import LayerNorm

                self.head_norm = LayerNorm(c, eps=HEAD_NORM_EPS)
            self.fc = nn.Linear(c, tree.num_classes)
        self._init_trunk()

    def _init_trunk(self) -> None:
        if hasattr(self.trunk, "reset_parameters"):  # the kind initialises its own trunk
            return
        for m in self.trunk.modules():  # torchvision's ResNet init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

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

    @classmethod
    def from_config(cls, config: Any, meta: bool = False, origin: str = "config") -> HierNet:
        """Rebuild a network (uninitialised if meta=True) from `config()`; NhlError if unusable."""
        if not isinstance(config, dict):
            raise NhlError(f"{origin}: not an nhl model config (expected a JSON object)")
        fmt = config.get("format")
        if fmt != MODEL_FORMAT:
            raise NhlError(
                f"{origin}: unknown model format {fmt!r} (this nhl reads {MODEL_FORMAT!r})"
            )
        problems = preset_problems(config.get("preset"))
        if problems:
            raise NhlError(f"{origin}: invalid model config", problems)
        preset = Preset.from_dict(config["preset"])
        tree = Tree.from_dict(config["tree"], origin=f"{origin}: tree")
        try:
            img_size = check_img_size(config.get("img_size", 224), "img_size")
        except NhlError as e:
            raise NhlError(f"{origin}: invalid model config: {e}") from None
        if "arch" in config and config["arch"] != preset.name:
            raise NhlError(
                f"{origin}: invalid model config: arch {config['arch']!r} but the preset is "
                f"{preset.name!r}"
            )
        if preset.num_levels:
            tree.require_levels(preset.num_levels, hint=f" ({origin})")
            counts = [len(tree.level(lv)) for lv in range(1, preset.num_levels + 1)]
        else:
            counts = [1] * len(preset.levels)
        total = preset.params(counts, tree.num_classes)
        if total > MAX_PARAMS:
            raise NhlError(
                f"{origin}: invalid model config: {total:,} parameters (nhl builds at most "
                f"{MAX_PARAMS:,})"
            )
        ctx = torch.device("meta") if meta else contextlib.nullcontext()
        with ctx:
            model = cls(preset, tree, img_size)
            fused = config.get("fused", False)
            if not isinstance(fused, bool):
                raise NhlError(f"{origin}: invalid model config: 'fused' must be true or false")
            if fused:
                from nhlcli.model.fuse import fuse_structure

                fuse_structure(model)
        stated = {"nodes_per_level": model.nodes_per_level(), "params": model.num_params()}
        wrong = [
            f"'{k}' says {config[k]!r}, the preset and tree give {v!r}"
            for k, v in stated.items()
            if k in config and config[k] != v
        ]
        if wrong:
            raise NhlError(f"{origin}: invalid model config", wrong)
        cut_from = config.get("cut_from")
        if cut_from is not None and not isinstance(cut_from, dict):
            raise NhlError(f"{origin}: invalid model config: 'cut_from' must be an object or null")
        model.cut_from = cut_from
        att = config.get("attention")
        if att:
            from nhlcli.model.attention import set_attention

            if not isinstance(att, dict) or not isinstance(att.get("scales"), dict):
                raise NhlError(f"{origin}: invalid attention settings (expected level and scales)")
            level = att.get("level")
            if isinstance(level, bool) or not isinstance(level, int):
                raise NhlError(f"{origin}: invalid attention settings (level {level!r})")
            set_attention(model, dict(att["scales"]), level=level)
        return model

    def extra_repr(self) -> str:
        return f"arch={self.preset.name}, classes={self.num_classes}, img_size={self.img_size}"


def zero_init_residual(model: nn.Module) -> int:
    """Zero the last batch-norm scale (γ) of every residual block, trunk and levels (torchvision's
    `zero_init_residual`): each residual branch starts as the identity. Blocks name that norm in
    `residual_norm` (ResNet bottleneck: bn3, basic block: bn2; ConvNeXt blocks have none).
    Returns the number of blocks set."""
    n = 0
    for m in model.modules():
        norm = getattr(type(m), "residual_norm", None)
        if norm is not None:
            nn.init.zeros_(getattr(m, norm).weight)
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
