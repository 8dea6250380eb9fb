"""The plain per-branch implementation: one single-branch module per node, a loop over nodes.

Slow by design. It is the test oracle for the grouped levels (`PerBranchNet.from_model` copies a
HierNet's weights node by node) and the baseline of benchmarks/bench_grouped_vs_branches.py.
`synthetic_tree` makes levelled trees of any shape for tests and benchmarks.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.model.kinds import get_kind
from nhlcli.model.levels import Level
from nhlcli.model.network import ClassHead, HierNet, head_norm_module
from nhlcli.model.presets import Preset


class PerBranchNet(nn.Module):
    """Same function as HierNet, computed branch by branch (nodes as separate modules)."""

    def __init__(self, preset: Preset, tree: Tree) -> None:
        super().__init__()
        self.preset = preset
        self.trunk = get_kind(preset.trunk.kind).trunk(preset.trunk)
        if preset.head == "per_class":
            ids = [tree.level(lv) for lv in range(1, len(preset.levels) + 1)]
            self.parents: list[list[int]] = [[0] * len(ids[0])] if ids else []
            for lv in range(1, len(ids)):
                pos = {nid: i for i, nid in enumerate(ids[lv - 1])}
                self.parents.append([pos[tree.node(n).parent] for n in ids[lv]])  # type: ignore[index]
        else:
            self.parents = [[0] for _ in preset.levels]
        self.nodes = nn.ModuleList(
            nn.ModuleList(get_kind(blocks[0].kind).node(blocks) for _ in self.parents[lv])
            for lv, blocks in enumerate(preset.levels)
        )
        c = preset.head_in
        k = tree.num_classes
        self.per_class = preset.head == "per_class"
        self.heads = (
            nn.ModuleList(ClassHead(c, 1, head_norm_module(preset, c)) for _ in range(k))
            if self.per_class
            else None
        )
        self.head = None if self.per_class else ClassHead(c, k, head_norm_module(preset, c))
        self.scales: list[list[float] | None] = [None] * len(preset.levels)

    @classmethod
    def from_model(cls, model: HierNet, share: bool = False) -> PerBranchNet:
        """A per-branch copy of a HierNet (weights, BN statistics and attention scales).

        share=True makes every tensor a view of the HierNet's (no extra memory; for benchmarks).
        """
        state: dict[str, torch.Tensor] = {
            f"trunk.{k}": v for k, v in model.trunk.state_dict().items()
        }
        # a grouped level's state names are its single-branch node's, with a node dimension
        for lv, level in enumerate(model.levels):
            n = cast(Level, level).n
            for name, t in level.state_dict().items():
                for i in range(n):
                    state[f"nodes.{lv}.{i}.{name}"] = t if t.dim() == 0 else t[i]
        if model.heads is not None:
            heads = model.heads
            for j in range(model.num_classes):
                state[f"heads.{j}.fc.weight"] = heads.weight.detach()[j : j + 1]
                state[f"heads.{j}.fc.bias"] = heads.bias.detach()[j : j + 1]
                if heads.norm_weight is not None and heads.norm_bias is not None:
                    state[f"heads.{j}.norm.weight"] = heads.norm_weight.detach()[j]
                    state[f"heads.{j}.norm.bias"] = heads.norm_bias.detach()[j]
        else:
            assert model.fc is not None
            state.update({f"head.fc.{k}": v for k, v in model.fc.state_dict().items()})
            if model.head_norm is not None:
                norm = model.head_norm.state_dict().items()
                state.update({f"head.norm.{k}": v for k, v in norm})
        if share:
            with torch.device("meta"):
                ref = cls(model.preset, model.tree)
            ref.load_state_dict(state, strict=True, assign=True)
        else:
            ref = cls(model.preset, model.tree)
            ref.load_state_dict(state, strict=True)
        for lv, level in enumerate(model.levels):
            scales = cast(Level, level).scales
            ref.scales[lv] = list(scales) if scales is not None else None
        ref.train(model.training)
        return ref

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.trunk(x)]
        for lv, level_nodes in enumerate(self.nodes):
            scales = self.scales[lv]
            new = []
            for i, node in enumerate(cast(nn.ModuleList, level_nodes)):
                h = outs[self.parents[lv][i]]
                new.append(node(h, scales[i] if scales is not None else None))
            outs = new
        if self.heads is not None:
            return torch.cat([head(h) for head, h in zip(self.heads, outs, strict=True)], 1)
        assert self.head is not None
        return self.head(outs[0])


def synthetic_tree(nodes_per_level: Sequence[int], seed: int = 0, shuffle: bool = True) -> Tree:
    """A levelled tree with the given node counts (last = classes); every group has >= 1 child.

    Children are spread unevenly over their parents (the first child of each parent is fixed, the
    rest random), and with `shuffle` the class order is shuffled so that siblings are not adjacent.
    """
    counts = list(nodes_per_level)
    if not counts or any(b < a for a, b in itertools.pairwise(counts)) or counts[0] < 1:
        raise ValueError("node counts must be positive and non-decreasing")
    rng = random.Random(seed)
    levels: list[list[TreeNode]] = []
    for lv, n in enumerate(counts):
        last = lv == len(counts) - 1
        if lv == 0:
            parents: list[str | None] = [None] * n
        else:
            above = [p.id for p in levels[-1]]
            parents = [*above, *(rng.choice(above) for _ in range(n - len(above)))]
            rng.shuffle(parents)
        prefix = "c" if last else f"g{lv + 1}_"
        levels.append(
            [
                TreeNode(f"{prefix}{i}", f"{'class' if last else 'group'} {prefix}{i}", parents[i])
                for i in range(n)
            ]
        )
    classes = levels[-1]
    if shuffle:
        classes = list(classes)
        rng.shuffle(classes)
    internal = [n for lvl in levels[:-1] for n in lvl]
    return Tree(
        classes, internal, {"source": "synthetic", "params": {"nodes": counts, "seed": seed}}
    )
