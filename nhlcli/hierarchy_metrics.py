"""Metrics that speak hierarchy: accuracy at each tree level, and where the errors land.

Classes are given by their position in an evaluated class list (0..k-1), with the tree they come
from. The ancestor of a class at level d is the node at depth d on its path from the root (level 1
is the top); a class shallower than d is its own ancestor at the deeper levels, so trees that are
not levelled are measured too. At the deepest level the ancestor is the class itself, and that
level's accuracy is top-1.

* **level accuracy** (level d): the share of images whose predicted class has the true class's
  ancestor at level d;
* **errors within** (level d): of the misclassified images (predicted class != true class), the
  share whose prediction still lies under the true class's ancestor at level d: an error "inside
  the true superclass". Not defined at the deepest level (an error never stays inside a class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nhlcli.hierarchy.tree import Tree


@dataclass(frozen=True)
class LevelAccuracy:
    level: int  # 1 = top of the tree
    nodes: int  # distinct ancestors of the evaluated classes at this level
    top1: float  # % of images whose prediction has the true ancestor at this level
    errors: int  # misclassified images (predicted class != true class)
    errors_within: float | None  # % of those errors inside the true ancestor (None: leaf level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "nodes": self.nodes,
            "top1": self.top1,
            "errors": self.errors,
            "errors_within": self.errors_within,
        }


def ancestors_by_level(tree: Tree, class_ids: Sequence[str]) -> list[list[str]]:
    """[level d-1][i]: the ancestor of class_ids[i] at depth d, for d = 1 .. deepest class."""
    paths = [tree.path(c) for c in class_ids]
    depth = max((len(p) for p in paths), default=0)
    return [[p[min(d, len(p)) - 1] for p in paths] for d in range(1, depth + 1)]


def tree_order(tree: Tree, class_ids: Sequence[str]) -> list[int]:
    """Positions in class_ids in depth-first tree order, so classes of one group sit together."""
    wanted = {c: i for i, c in enumerate(class_ids)}
    out: list[int] = []
    stack: list[str | None] = [None]
    while stack:
        node = stack.pop()
        if node is not None and node in wanted:
            out.append(wanted[node])
        stack.extend(reversed(tree.children(node)))
    return out


def level_metrics(
    preds: torch.Tensor, labels: torch.Tensor, ancestors: Sequence[Sequence[str]]
) -> list[LevelAccuracy]:
    """Per-level accuracy and errors within the true ancestor (preds, labels: positions 0..k-1).

    >>> a = [["A", "A", "B"], ["a1", "a2", "b1"]]
    >>> [r.top1 for r in level_metrics(torch.tensor([1, 2]), torch.tensor([0, 0]), a)]
    [50.0, 0.0]
    """
    n = labels.numel()
    wrong = preds != labels
    errors = int(wrong.sum())
    out = []
    for d, row in enumerate(ancestors, start=1):
        ids = {a: i for i, a in enumerate(dict.fromkeys(row))}
        code = torch.tensor([ids[a] for a in row], dtype=torch.long)
        same = code[preds] == code[labels] if n else torch.zeros(0, dtype=torch.bool)
        leaf = d == len(ancestors)
        within = None
        if not leaf:
            within = 100.0 * int((same & wrong).sum()) / errors if errors else 0.0
        out.append(
            LevelAccuracy(
                level=d,
                nodes=len(ids),
                top1=100.0 * int(same.sum()) / n if n else 0.0,
                errors=errors,
                errors_within=within,
            )
        )
    return out
