"""Cutouts (experts): a real, smaller HierNet for a subset of classes, weights sliced out.

The expert keeps the selected classes and their ancestors (`Tree.subtree`); node i of its level l
takes the parameters of the same node in the full model (``param[idx]`` along the leading node
dimension), the trunk is copied, the head rows are those of the kept classes. Because every node
only reads its parent, the expert's logits equal the full model's logits for the kept classes (to
float tolerance), in eval and train mode.

Class order: ``order="given"`` (default) keeps the order of the selection (a superclass contributes
its classes in the full model's order, at its position in the selection); ``order="tree"`` keeps the
full model's class order. Duplicates are dropped (first occurrence wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nhlcli.errors import NhlError
from nhlcli.model.attention import set_attention
from nhlcli.model.network import HierNet
from nhlcli.selection import Selection, select_classes


def cutout(
    model: HierNet,
    selection: Selection,
    order: str = "given",
    origin: str | None = None,
) -> HierNet:
    """The expert for `selection` (see the module doc); `origin` is recorded in cut_from.

    `selection` is anything `nhlcli.selection.select_classes` takes: class ids or names, tree
    nodes (every class under them), a class set or class file, or a model folder.
    """
    if order not in ("given", "tree"):
        raise NhlError(f"unknown class order '{order}' (given or tree)")
    class_ids = select_classes(model.tree, selection)
    sub = model.tree.subtree(class_ids, order=order)
    with torch.device("meta"):
        expert = HierNet(model.preset, sub, model.img_size)
        if model.fused:
            from nhlcli.model.fuse import fuse_structure

            fuse_structure(expert)

    full_state = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    level_index = []
    for lv, ids in enumerate(expert.level_ids):
        pos = {nid: i for i, nid in enumerate(model.level_ids[lv])}
        level_index.append([pos[nid] for nid in ids])
    class_idx = [model.tree.class_index(c) for c in sub.class_ids]
    for name, t in full_state.items():
        idx: list[int] | None = None
        if name.startswith("levels."):
            if t.dim() > 0:  # per-node tensors; num_batches_tracked is a scalar
                idx = level_index[int(name.split(".")[1])]
        elif name.startswith(("heads.", "fc.")):
            idx = class_idx
        if idx is None:
            new_state[name] = t.detach().clone()
        else:
            new_state[name] = t.detach().index_select(0, torch.tensor(idx, device=t.device))
    expert.load_state_dict(new_state, strict=True, assign=True)
    expert.train(model.training)
    # parameters keep requires_grad from the (meta) module; match the source model's
    for p_new, p_old in zip(expert.parameters(), model.parameters(), strict=False):
        p_new.requires_grad_(p_old.requires_grad)

    if model.attention_level is not None and model.per_class:
        kept = set(expert.level_ids[model.attention_level - 1])
        scales = {nid: s for nid, s in model.attention.items() if nid in kept}
        set_attention(expert, scales, level=model.attention_level)
    expert.cut_from = {
        "arch": model.preset.name,
        "classes": model.num_classes,
        "nodes_per_level": model.nodes_per_level(),
        "params": model.num_params(),
        "selection": [str(selection)] if isinstance(selection, str | Path) else list(selection),
        "order": order,
        "origin": origin,
        "previous": model.cut_from,
    }
    return expert


def cutout_summary(model: HierNet, expert: HierNet) -> dict[str, Any]:
    """What a cutout kept: classes, nodes per level and parameters, full vs expert."""
    full_p, exp_p = model.num_params(), expert.num_params()
    return {
        "arch": model.preset.name,
        "classes": [{"id": c.id, "name": c.name} for c in expert.tree.classes],
        "num_classes": {"full": model.num_classes, "expert": expert.num_classes},
        "nodes_per_level": {"full": model.nodes_per_level(), "expert": expert.nodes_per_level()},
        "params": {
            "full": full_p,
            "expert": exp_p,
            "reduction_pct": round(100.0 * (1 - exp_p / full_p), 2) if full_p else 0.0,
        },
        "attention": (
            {"level": expert.attention_level, "scales": dict(expert.attention)}
            if expert.attention_level is not None
            else None
        ),
    }
