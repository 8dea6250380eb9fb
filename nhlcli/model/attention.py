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
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.network import HierNet
from nhlcli.selection import resolve_node

MAX_SCALE = 100.0  # larger scales only overflow half precision; the paper uses 1 to 2


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
