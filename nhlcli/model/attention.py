"""Top-down attention: multiply chosen nodes' feature maps by a scalar.

Where: the output of the 3x3 convolution (after its BN and ReLU) of the FIRST block of each affected
node, at one level of the network (the paper: the first per-branch block; for NHL the leaf level by
default).

Which nodes: a scale is given for a tree node (a class or a superclass, by id or name). At the
attention level l, it affects every node that is on that node's path or under it:

* a node at level l or deeper (e.g. a class when l is the leaf level) affects its ancestor at level
  l (itself when it sits at level l);
* a node above level l (a superclass when l is the leaf level) affects all its descendants at level
  l.

Scales of several entries that reach the same node multiply (``cat=1.5, tabby=1.2`` gives tabby 1.8
at the leaf level). A scale of exactly 1.0 everywhere removes the multiply, so outputs are
bit-identical to a model without attention.

Attention that does nothing is said, not hidden (`attention_effect`, `inert_attention_warning`):
the scaled features pass through the rest of the block's residual branch, whose last norm a
zero-initialised residual (`network.zero_init_residual`, training's default) starts at γ = 0. Until
training has grown that γ, the branch adds ~0 and the logits do not move, whatever the scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

import torch

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.levels import Level
from nhlcli.model.network import HierNet
from nhlcli.selection import resolve_node

MAX_SCALE = 100.0  # larger scales only overflow half precision; the paper uses 1 to 2
#: attention that moves no class probability by this much is reported as doing nothing
NO_EFFECT = 1e-4
#: a residual scale |γ| up to this is "not yet trained" (trained ResNets' are around 0.1 to 1)
UNTRAINED_GAMMA = 0.01


def attention_level(model: HierNet, level: int | None = None) -> int:
    """The 1-based level attention acts on (default: the leaf level), checked against the model.

    NhlError when the model has no per-class branches or no such level.
    """
    if not model.per_class:
        raise NhlError(
            f"top-down attention needs per-class branches; {model.preset.name} shares one branch "
            "between all classes"
        )
    n_levels = len(model.levels)
    lv = n_levels if level is None else int(level)
    if not 1 <= lv <= n_levels:
        raise NhlError(
            f"attention level {lv} does not exist ({model.preset.name} has 1..{n_levels})"
        )
    return lv


def apply_attend(
    model: HierNet,
    attend: str | Mapping[str, float] | None,
    level: int | None = None,
    *,
    level_also_with: str = "",
) -> None:
    """`--attend` and `--attend-level` on a model: the one handling behind cutout, export, eval
    and predict.

    `attend` is the option's text (``"tabby=1.8,tiger_cat=1.5"``, parsed and checked against the
    model's tree) or a mapping of names to scales; empty or None sets nothing. A `level` without
    `attend` is an error; `level_also_with` names the caller's other options that take a level
    (eval's oracle options), for the message.
    """
    if attend:
        scales = parse_attend(attend, model.tree) if isinstance(attend, str) else dict(attend)
        set_attention(model, scales, level=level)
    elif level is not None:
        others = f", {level_also_with}" if level_also_with else ""
        raise NhlError(f"--attend-level needs --attend{others}")


def affected_nodes(tree: Tree, node_id: str, level: int) -> list[str]:
    """Nodes of `level` on the path of, or under, node_id (see the module doc)."""
    path = tree.path(node_id)
    if len(path) >= level:
        return [path[level - 1]]
    return [n for n in tree.level(level) if node_id in tree.path(n)]


def set_attention(model: HierNet, scales: dict[str, float], level: int | None = None) -> None:
    """Replace the model's attention settings: per-class or per-node scales at one level.

    Keys are class ids, tree node ids or names; `level` is 1-based (default: the leaf level).
    """
    lv = attention_level(model, level)
    node_scale: dict[str, float] = {}
    for token, raw in scales.items():
        s = check_scale(token, raw)
        for nid in affected_nodes(model.tree, resolve_node(model.tree, token), lv):
            node_scale[nid] = node_scale.get(nid, 1.0) * s
    ids = model.level_ids[lv - 1]
    for i, level_module in enumerate(model.levels):
        if i == lv - 1:
            level_module.set_scales([node_scale.get(nid, 1.0) for nid in ids])  # type: ignore[operator]
        else:
            level_module.set_scales(None)  # type: ignore[operator]
    model.attention_level = lv
    model.attention = node_scale


def clear_attention(model: HierNet) -> None:
    """Remove all attention: the model computes exactly as without it."""
    for level_module in model.levels:
        level_module.set_scales(None)  # type: ignore[operator]
    model.attention_level = None
    model.attention = {}


def probability_change(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest change of any class probability (softmax) between two (N, k) logit tensors."""
    return float((logits.float().softmax(1) - reference.float().softmax(1)).abs().max().item())


@torch.no_grad()
def attention_effect(
    model: HierNet, x: torch.Tensor, attended: torch.Tensor | None = None
) -> float:
    """The largest change of a class probability that the model's attention makes on images `x`
    (the model run with its attention, then without; its settings are kept). 0.0 without
    attention. `attended`: the logits `model(x)` when the caller already has them."""
    if model.attention_level is None:
        return 0.0
    if attended is None:
        attended = model(x)
    saved = [level.scales for level in model.levels]
    try:
        for level in model.levels:
            level.set_scales(None)  # type: ignore[operator]
        plain = model(x)
    finally:
        for level, scales in zip(model.levels, saved, strict=True):
            level.set_scales(scales)  # type: ignore[operator]
    return probability_change(attended, plain)


def residual_scale(
    model: HierNet, level: int, node_ids: Sequence[str] | None = None
) -> float | None:
    """The largest |γ| of the norm that ends the residual branch of the attended block (the first
    block of each node in `node_ids` at `level`, 1-based; default: all its nodes): how much of the
    scaled features can reach the block's output. None when the kind names no such norm
    (`BlockKind.residual_norm`) or it was folded (a fused model)."""
    from nhlcli.model.kinds import get_kind

    module = cast(Level, model.levels[level - 1])
    kind = get_kind(module.specs[0].kind)
    if kind.residual_norm is None:
        return None
    first = next((m for m in module.modules() if isinstance(m, kind.residual_blocks)), None)
    gamma = getattr(getattr(first, kind.residual_norm, None), "weight", None)
    if not isinstance(gamma, torch.Tensor):
        return None
    if gamma.dim() == 2 and node_ids is not None:  # grouped: one row per node
        index = {nid: i for i, nid in enumerate(model.level_ids[level - 1])}
        gamma = gamma[[index[n] for n in node_ids if n in index]]
    return float(gamma.detach().abs().max().item()) if gamma.numel() else None


def inert_attention_warning(
    model: HierNet, effect: float, level: int | None = None, node_ids: Sequence[str] | None = None
) -> str | None:
    """One line when attention at `level` (default: the model's) on `node_ids` (default: its
    attended nodes) moved no class probability by `NO_EFFECT` (`effect`: the largest change
    measured), and why; None when it did."""
    if effect >= NO_EFFECT:
        return None
    lv = level if level is not None else model.attention_level or len(model.levels)
    if node_ids is None and level is None:
        node_ids = [nid for nid, s in model.attention.items() if s != 1.0]
        if not node_ids:
            return None  # every scale is 1.0: nothing was asked to change
    what = (
        "top-down attention changed no logit"
        if effect == 0.0
        else f"top-down attention changed the class probabilities by at most {effect:.1e}"
    )
    gamma = residual_scale(model, lv, node_ids)
    if gamma is not None and gamma <= UNTRAINED_GAMMA:
        scale = "γ = 0" if gamma == 0.0 else f"|γ| ≤ {gamma:.2g}"
        why = (
            f"the attended branches' output is ~0 (their residual batch-norm scale {scale}: "
            "zero-initialised residual, not yet trained); attention works once training has "
            "grown it"
        )
    else:
        why = f"the scaled features hardly reach the logits at level {lv} (try a larger scale)"
    return f"{what}: {why}"


def parse_attend(text: str, tree: Tree | None = None) -> dict[str, float]:
    """Parse ``--attend tabby=1.8,tiger_cat=1.5``; with a tree, names are checked against it."""
    out: dict[str, float] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise NhlError(f"--attend: '{item}' is not NAME=SCALE (e.g. tabby=1.8)")
        try:
            scale = float(value)
        except ValueError:
            raise NhlError(f"--attend: '{value.strip()}' in '{item}' is not a number") from None
        scale = check_scale(name, scale)
        if name in out:
            raise NhlError(f"--attend: '{name}' is given twice")
        if tree is not None:
            resolve_node(tree, name)
        out[name] = scale
    if not out:
        raise NhlError("--attend: no NAME=SCALE given (e.g. tabby=1.8,tiger_cat=1.5)")
    return out


def check_scale(name: str, raw: object) -> float:
    """`raw` as an attention scale: a finite number in (0, MAX_SCALE]; NhlError naming `name`."""
    try:
        if isinstance(raw, bool):
            raise TypeError
        s = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise NhlError(f"attention scale for '{name}' is not a number: {raw!r}") from None
    if not math.isfinite(s) or not 0 < s <= MAX_SCALE:
        raise NhlError(
            f"attention scale for '{name}' must be a positive number (at most {MAX_SCALE:g}), "
            f"not {raw!r}"
        )
    return s
