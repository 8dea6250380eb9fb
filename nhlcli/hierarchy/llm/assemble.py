"""Turning validated groups into a levelled `Tree` (group ids, unique names per level)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassRef, normalize_name
from nhlcli.hierarchy.llm.validate import Group
from nhlcli.hierarchy.tree import Tree, TreeNode

AttrsFn = Callable[[str], dict[str, Any]]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "group"


def unique_level_names(groups: Sequence[Group]) -> None:
    """Group names are unique within one answer; across answers (sub-problems) a repeated name at a
    level gets its parent's name added: `other (dogs)`, then a number if still needed."""
    level: list[tuple[Group, str | None]] = [(g, None) for g in groups]
    while level:
        seen: dict[str, int] = {}
        for g, _ in level:
            seen[normalize_name(g.name)] = seen.get(normalize_name(g.name), 0) + 1
        taken: set[str] = set()
        for g, parent in level:
            if seen[normalize_name(g.name)] > 1 and parent is not None:
                g.name = f"{g.name} ({parent})"
            base, k = g.name, 2
            while normalize_name(g.name) in taken:
                g.name, k = f"{base} {k}", k + 1
            taken.add(normalize_name(g.name))
        level = [(c, g.name) for g, _ in level for c in g.groups]


def groups_to_tree(
    classes: Sequence[ClassRef],
    groups: Sequence[Group],
    provenance: dict[str, Any],
    attrs: AttrsFn | None = None,
) -> Tree:
    """The tree with `groups` as internal nodes; classes keep their order (the logit order)."""
    unique_level_names(groups)
    class_ids = {c.wnid for c in classes}
    used: set[str] = set()
    nodes: list[TreeNode] = []
    parent_of: dict[str, str] = {}

    def new_id(name: str) -> str:
        base = slug(name)
        cand, k = base, 2
        while cand in used or cand in class_ids:
            cand, k = f"{base}-{k}", k + 1
        used.add(cand)
        return cand

    def add(group: Group, parent: str | None) -> None:
        gid = new_id(group.name)
        nodes.append(TreeNode(gid, group.name, parent))
        for sub in group.groups:
            add(sub, gid)
        for wnid in group.classes:
            parent_of[wnid] = gid

    for g in groups:
        add(g, None)
    missing = [c.wnid for c in classes if c.wnid not in parent_of]
    if missing:  # the validators make this impossible; a guard against a builder bug
        raise NhlError(f"internal error: classes left without a group: {', '.join(missing[:5])}")
    leaves = [
        TreeNode(c.wnid, c.name, parent_of[c.wnid], attrs(c.wnid) if attrs else {}) for c in classes
    ]
    return Tree(leaves, nodes, provenance)
