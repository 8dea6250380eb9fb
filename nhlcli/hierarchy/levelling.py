"""Levelling: turn class paths (root → class through named ancestors) into an N-level tree.

The networks need a *levelled* tree: every class at the same depth N, level k holding the nodes at
depth k (level N = the classes). Sources (WordNet, BREEDS) give each class a path of ancestors of
any length; `level_tree` picks which ancestors become the groups of each level. The rule, step by
step:

1. **Restrict.** The union of the class paths is a tree over the classes (an ancestor must have the
   same parent in every path it appears in). Classes are leaves; an ancestor that is itself one of
   the classes (a user asks for `dog.n.01` and `beagle.n.01`) becomes a group holding that class
   and the classes below it (dog: dog, beagle).
2. **Collapse chains.** A node with a single child would repeat its child at its level, so it is
   replaced by that child, repeatedly. Each remaining group is therefore the lowest node of its
   chain: the lowest common ancestor of its classes, with at least two children. The common
   ancestor of all classes is the (implicit) root and is never a group.
3. **Cut level by level, top-down.** Level 1 starts as the root's children; level k+1 starts as the
   children of every group of level k, while a class that already sits at level k stays where it is
   (it is *continued*). Then, as long as replacing a group by its children brings the number of
   level-k nodes strictly closer to the target t_k, one such group is split, chosen in this order:
   a split that leaves no class alone at this level (as a continued single-class node) before one
   that does; then the group with the most classes; then the group whose first class comes first in
   the class order. Splitting the largest groups first keeps groups balanced; avoiding lone classes
   keeps the upper levels made of real categories (WordNet's flat "artifact" would otherwise
   scatter single classes over level 1); the target keeps the width of each level in a useful
   range.
4. **Targets.** `groups=[t_1, ..., t_{N-1}]` when given (the number of nodes wanted at levels
   1..N-1), otherwise t_k = round(C^(k/N)) for C classes: every level widens by the same factor
   C^(1/N). A target is a goal, not a promise: level k+1 holds at least the children of level k's
   groups.
5. **Classes.** Level N holds the classes, each under the level N-1 node above it, in the given
   class order (leaf order = logit order).
6. **Ids.** A group keeps its source id (a wnid); a class continued at level k < N gets a
   single-child node `<class id>@k` named after the class; a group whose source id is also one of
   the classes gets `<id>@k`. So ids are unique across levels.

`exact_tree` is the table variant: each class keeps exactly the path the table gives it (no
collapsing, no cuts); a shorter path is continued by `<class id>@k` nodes down to the common depth.

Everything is deterministic: no step depends on dict or set order, the clock, or the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date as _date
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.version import __version__

TODAY = "today"  # date="today" (the default) stamps today's date; date=None leaves it out (pinned)


@dataclass(frozen=True)
class ClassPath:
    """One class and its ancestors, top-down, without the (implicit) root and without the class."""

    id: str
    name: str
    ancestors: tuple[tuple[str, str], ...]  # (id, name) of each ancestor, the top one first
    attrs: Mapping[str, Any] = field(default_factory=dict, compare=False)


def provenance(
    source: str, params: Mapping[str, Any], date: str | None = TODAY, **extra: Any
) -> dict:
    """The provenance block of a built tree: source, params, extras, tool version, date."""
    out: dict[str, Any] = {"source": source, "params": dict(params), **extra}
    out["tool"] = f"nhl {__version__}"
    out["date"] = _date.today().isoformat() if date == TODAY else date
    return out


def default_targets(num_classes: int, levels: int) -> list[int]:
    """Nodes wanted at levels 1..N-1 when none are given: round(C^(k/N)), at least 1."""
    return [max(1, round(num_classes ** (k / levels))) for k in range(1, levels)]


def check_levels_and_groups(levels: int, groups: Sequence[int] | None, num_classes: int) -> None:
    if levels < 1:
        raise NhlError(f"--levels must be at least 1 (got {levels})")
    if groups is None:
        return
    if len(groups) != levels - 1:
        raise NhlError(
            f"--groups needs {levels - 1} number(s), one per level above the classes, "
            f"for --levels {levels} (got {len(groups)}: {','.join(map(str, groups))})"
        )
    bad = [g for g in groups if g < 1 or g > num_classes]
    if bad:
        raise NhlError(
            f"--groups values must be between 1 and the number of classes ({num_classes}); "
            f"got {','.join(map(str, bad))}"
        )


# --------------------------------------------------------------------------- the restricted tree
@dataclass
class _Group:
    key: str  # source id
    name: str
    parent: str | None
    children: list[tuple[str, Any]] = field(
        default_factory=list
    )  # ("g", key) or ("c", class index)
    size: int = 0  # classes below
    first: int = 0  # index of its first class


Item = tuple[str, Any]  # ("g", group key) | ("c", class index) | ("r", None) for the root


class _Restricted:
    """The union of the class paths as a tree; items are groups, classes and the root."""

    def __init__(self, paths: Sequence[ClassPath]) -> None:
        self.paths = list(paths)
        self.groups: dict[str, _Group] = {}
        self.root_children: list[Item] = []
        self._collapsed: dict[Item, list[Item]] = {}
        problems: list[str] = []
        for ci, p in enumerate(self.paths):
            parent: str | None = None
            seen: set[str] = set()
            for gid, gname in p.ancestors:
                if gid in seen:
                    problems.append(f"'{p.id}': ancestor '{gid}' appears twice in its path")
                    break
                seen.add(gid)
                g = self.groups.get(gid)
                if g is None:
                    g = self.groups[gid] = _Group(gid, gname, parent, first=ci)
                    self._children_of(parent).append(("g", gid))
                elif g.parent != parent:
                    problems.append(
                        f"'{gid}' ({gname}) has two parents: '{g.parent}' and '{parent}' "
                        f"(seen in the path of '{p.id}')"
                    )
                    break
                g.size += 1
                parent = gid
            else:
                self._children_of(parent).append(("c", ci))
        if problems:
            raise NhlError(
                f"the class paths do not form a tree ({len(problems)} problem(s))", problems
            )

    def _children_of(self, key: str | None) -> list[Item]:
        return self.root_children if key is None else self.groups[key].children

    def children(self, item: Item) -> list[Item]:
        if item[0] == "r":
            return self.root_children
        if item[0] == "g":
            return self.groups[item[1]].children
        return []

    def size(self, item: Item) -> int:
        if item[0] == "g":
            return self.groups[item[1]].size
        if item[0] == "c":
            return 1
        return len(self.paths)

    def first(self, item: Item) -> int:
        if item[0] == "g":
            return self.groups[item[1]].first
        return item[1] if item[0] == "c" else 0

    def lift(self, item: Item) -> Item:
        """Skip down single-child chains: the lowest node of the chain starting at item."""
        while item[0] != "c":
            kids = self.children(item)
            if len(kids) != 1:
                return item
            item = kids[0]
        return item

    def collapsed_children(self, item: Item) -> list[Item]:
        got = self._collapsed.get(item)
        if got is None:
            got = self._collapsed[item] = [self.lift(k) for k in self.children(item)]
        return got

    def classes_under(self, item: Item) -> list[int]:
        if item[0] == "c":
            return [item[1]]
        out: list[int] = []
        stack = [item]
        while stack:
            cur = stack.pop()
            for k in self.children(cur):
                if k[0] == "c":
                    out.append(k[1])
                else:
                    stack.append(k)
        return sorted(out)


# --------------------------------------------------------------------------- levelling
def level_tree(
    paths: Sequence[ClassPath],
    levels: int,
    groups: Sequence[int] | None = None,
    prov: Mapping[str, Any] | None = None,
) -> Tree:
    """A tree with exactly `levels` levels over the classes of `paths` (rule: module docstring)."""
    _check_classes(paths)
    check_levels_and_groups(levels, groups, len(paths))
    targets = list(groups) if groups is not None else default_targets(len(paths), levels)
    # a class that is an ancestor of other classes sits inside its own group (dog: dog, beagle, ...)
    inner = {a for p in paths for a, _ in p.ancestors} & {p.id for p in paths}
    paths = [
        replace(p, ancestors=(*p.ancestors, (p.id, p.name))) if p.id in inner else p for p in paths
    ]
    rt = _Restricted(paths)
    class_ids = {p.id for p in paths}
    top = rt.lift(("r", None))

    def order(item: Item) -> tuple[int, int]:  # largest first, then by first class
        return (-rt.size(item), rt.first(item))

    nodes: list[TreeNode] = []
    # entries of the previous level: (item, output id); level 0 is the root
    previous: list[tuple[Item, str | None]] = [(top, None)]
    for k in range(1, levels):
        current: list[tuple[Item, str | None]] = []
        for item, out_id in previous:
            if item[0] == "c":
                current.append((item, out_id))
            else:
                current.extend((kid, out_id) for kid in rt.collapsed_children(item))
        current = _split_towards(current, targets[k - 1], rt, order)
        previous = []
        for item, parent_id in current:
            if item[0] == "c":
                p = paths[item[1]]
                node_id, name = f"{p.id}@{k}", p.name
            else:
                g = rt.groups[item[1]]
                node_id = f"{g.key}@{k}" if g.key in class_ids else g.key
                name = g.name
            nodes.append(TreeNode(node_id, name, parent_id))
            previous.append((item, node_id))
    class_parent: dict[int, str | None] = {}
    for item, out_id in previous:
        for ci in rt.classes_under(item):
            class_parent[ci] = out_id
    classes = [TreeNode(p.id, p.name, class_parent[i], dict(p.attrs)) for i, p in enumerate(paths)]
    tree = Tree(classes, nodes, dict(prov or {}))
    tree.require_levels(levels)
    return tree


def _split_towards(
    entries: list[tuple[Item, str | None]], target: int, rt: _Restricted, order: Any
) -> list[tuple[Item, str | None]]:
    """Split groups while each split brings the count strictly closer to target.

    Among the splits that do, the first taken is one that leaves no class alone at this level, then
    the largest group, then the group whose first class comes first.
    """
    entries = list(entries)
    while True:
        count = len(entries)
        best: tuple[Any, int, list[Item]] | None = None
        for i, (item, _) in enumerate(entries):
            if item[0] != "g":
                continue
            kids = rt.collapsed_children(item)
            if abs(count + len(kids) - 1 - target) >= abs(count - target):
                continue
            key = (any(k[0] == "c" for k in kids), order(item))
            if best is None or key < best[0]:
                best = (key, i, kids)
        if best is None:
            return entries
        _, i, kids = best
        parent_id = entries[i][1]
        entries[i : i + 1] = [(kid, parent_id) for kid in kids]


# --------------------------------------------------------------------------- exact (tables)
def exact_tree(
    paths: Sequence[ClassPath], levels: int | None = None, prov: Mapping[str, Any] | None = None
) -> Tree:
    """Each class exactly under its given path; shorter paths are continued by `<class>@k` nodes.

    `levels` defaults to the longest path + 1; a path longer than levels - 1 is an error.
    """
    _check_classes(paths)
    deepest = max(len(p.ancestors) for p in paths)
    n = deepest + 1 if levels is None else levels
    if n < deepest + 1:
        raise NhlError(
            f"the table gives paths of {deepest} level(s) above the classes; "
            f"--levels {n} is too few (use {deepest + 1})"
        )
    rt = _Restricted(paths)  # checks that the paths form a tree
    class_ids = {p.id for p in paths}
    both = sorted(class_ids & set(rt.groups))
    if both:
        raise NhlError(f"the table uses classes as groups: {', '.join(both)}")
    nodes: list[TreeNode] = []
    done: set[str] = set()
    classes = []
    for p in paths:
        parent: str | None = None
        for gid, _ in p.ancestors:
            node_id = gid
            if node_id not in done:
                done.add(node_id)
                nodes.append(TreeNode(node_id, rt.groups[gid].name, parent))
            parent = node_id
        for k in range(len(p.ancestors) + 1, n):
            node_id = f"{p.id}@{k}"
            nodes.append(TreeNode(node_id, p.name, parent))
            parent = node_id
        classes.append(TreeNode(p.id, p.name, parent, dict(p.attrs)))
    tree = Tree(classes, nodes, dict(prov or {}))
    tree.require_levels(n)
    return tree


def _check_classes(paths: Sequence[ClassPath]) -> None:
    if not paths:
        raise NhlError("no classes to build a tree from")
    seen: set[str] = set()
    dup = [p.id for p in paths if p.id in seen or seen.add(p.id)]  # type: ignore[func-returns-value]
    if dup:
        raise NhlError(f"classes given twice: {', '.join(sorted(set(dup)))}")
    bad = [p.id for p in paths if "@" in p.id]
    if bad:
        raise NhlError(f"class ids may not contain '@': {', '.join(bad)}")
