"""The category tree: ordered classes (leaf order = logit order), internal nodes, provenance.

File format `nhl-tree/1` (JSON)::

    {
      "format": "nhl-tree/1",
      "levels": 3,                       # depth of every class, or null when leaves differ in depth
      "classes": [{"id": "n01440764", "name": "tench", "parent": "n02512053"}, ...],
      "nodes":   [{"id": "n02512053", "name": "fish", "parent": "n01471682"}, ...],
      "provenance": {"source": "wordnet", "params": {...}, "tool": "nhl 0.1.0", "date": "..."}
    }

`parent: null` means a child of the (implicit) root. Level 1 holds the nodes whose parent is null;
the classes sit at level `levels`. A node may carry extra JSON fields in `attrs` (e.g. which source
placed a class). Internal nodes are kept in a canonical order: by level, then by the position of
their first class. That order is the order of a level's nodes in the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.fileio import write_text_atomic
from nhlcli.hierarchy.classsets import normalize_name
from nhlcli.textio import parse_json, read_text

FORMAT = "nhl-tree/1"
MAX_DEPTH = 100  # deeper trees are refused (WordNet's longest hypernym chains are about 20)
MAX_NODES = 1_000_000


class TreeError(NhlError):
    """A tree that is not valid (all problems listed)."""


@dataclass(frozen=True)
class TreeNode:
    id: str
    name: str
    parent: str | None
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "name": self.name, "parent": self.parent}
        if self.attrs:
            d["attrs"] = self.attrs
        return d


class Tree:
    """A validated category tree. Immutable by convention: derive new trees, do not edit."""

    def __init__(
        self,
        classes: Sequence[TreeNode],
        nodes: Sequence[TreeNode] = (),
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.classes: tuple[TreeNode, ...] = tuple(classes)
        self.provenance: dict[str, Any] = dict(provenance or {})
        problems, depth = _structural_problems(self.classes, tuple(nodes))
        if problems:
            raise TreeError(f"invalid tree ({len(problems)} problem(s))", problems)
        self._by_id: dict[str, TreeNode] = {n.id: n for n in (*self.classes, *nodes)}
        self._class_pos = {c.id: i for i, c in enumerate(self.classes)}
        self._depth: dict[str, int] = depth
        first_leaf: dict[str, int] = {}
        for i, c in enumerate(self.classes):
            p = c.parent
            while p is not None and p not in first_leaf:
                first_leaf[p] = i
                p = self._by_id[p].parent
        self.nodes: tuple[TreeNode, ...] = tuple(
            sorted(nodes, key=lambda n: (self._depth[n.id], first_leaf[n.id]))
        )
        self._children: dict[str | None, list[str]] = {}
        for n in (*self.nodes, *self.classes):
            self._children.setdefault(n.parent, []).append(n.id)

    # ----------------------------------------------------------------- structure
    @property
    def class_ids(self) -> list[str]:
        return [c.id for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def node(self, node_id: str) -> TreeNode:
        try:
            return self._by_id[node_id]
        except KeyError:
            raise NhlError(f"no node '{node_id}' in the tree") from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def is_class(self, node_id: str) -> bool:
        return node_id in self._class_pos

    def class_index(self, class_id: str) -> int:
        return self._class_pos[class_id]

    def children(self, node_id: str | None) -> list[str]:
        """Child ids of a node (None = the root), internal nodes first in canonical order."""
        return list(self._children.get(node_id, []))

    def parent(self, node_id: str) -> str | None:
        return self.node(node_id).parent

    def depth(self, node_id: str) -> int:
        return self._depth[node_id]

    @property
    def levels(self) -> int | None:
        """The common depth of all classes, or None when classes sit at different depths."""
        depths = {self._depth[c.id] for c in self.classes}
        return depths.pop() if len(depths) == 1 else None

    def require_levels(self, n: int, hint: str = "") -> None:
        """Raise unless every class sits at depth n (the tree is levelled with n levels).

        `hint`, what to do about it, leads the message; the offending classes follow.
        """
        off = [c for c in self.classes if self._depth[c.id] != n]
        if off:
            shown = ", ".join(f"{c.name} (depth {self._depth[c.id]})" for c in off[:5])
            more = f" and {len(off) - 5} more" if len(off) > 5 else ""
            depth = self.levels
            what = f"has {depth} levels" if depth is not None else "is not levelled"
            lead = f"{hint}; " if hint else ""
            raise TreeError(f"{lead}the tree {what} but {n} are required: {shown}{more}")

    def level(self, n: int) -> list[str]:
        """Ids of the nodes at depth n, in network order (classes: logit order)."""
        internal = [x.id for x in self.nodes if self._depth[x.id] == n]
        return internal + [c.id for c in self.classes if self._depth[c.id] == n]

    def path(self, node_id: str) -> list[str]:
        """Ids from the level-1 ancestor down to node_id (inclusive)."""
        out = []
        cur: str | None = node_id
        while cur is not None:
            out.append(cur)
            cur = self._by_id[cur].parent
        return out[::-1]

    def leaves_under(self, node_id: str) -> list[str]:
        """Class ids under a node (itself if it is a class), in class order."""
        if self.is_class(node_id):
            return [node_id]
        return [c.id for c in self.classes if node_id in self.path(c.id)[:-1]]

    def find(self, token: str) -> list[str]:
        """Node ids whose id equals token or whose name matches it (case/separator-insensitive)."""
        if token in self._by_id:
            return [token]
        key = normalize_name(token)
        return [n.id for n in (*self.nodes, *self.classes) if normalize_name(n.name) == key]

    # ----------------------------------------------------------------- derived trees
    def subtree(self, class_ids: Iterable[str], order: str = "given") -> Tree:
        """The tree restricted to some classes and their ancestors.

        order="given" keeps the order of class_ids (it becomes the logit order); order="tree"
        keeps the full tree's class order.
        """
        wanted = list(dict.fromkeys(class_ids))
        unknown = [c for c in wanted if not self.is_class(c)]
        if unknown:
            raise NhlError(f"not classes of this tree: {', '.join(unknown)}")
        if not wanted:
            raise NhlError("a sub-tree needs at least one class")
        if order == "tree":
            wanted.sort(key=self.class_index)
        keep: set[str] = set()
        for c in wanted:
            keep.update(self.path(c)[:-1])
        nodes = [n for n in self.nodes if n.id in keep]
        prov = dict(self.provenance)
        return Tree([self._by_id[c] for c in wanted], nodes, prov)

    def with_provenance(self, **changes: Any) -> Tree:
        prov = {**self.provenance, **changes}
        return Tree(self.classes, self.nodes, prov)

    # ----------------------------------------------------------------- statistics
    def stats(self) -> dict[str, Any]:
        depth = max(self._depth.values())
        per_level = [len(self.level(i)) for i in range(1, depth + 1)]
        groups = [(n.id, len(self.children(n.id))) for n in self.nodes]
        top = len(self.children(None))
        singletons = [nid for nid, k in groups if k == 1]
        largest = max(groups, key=lambda g: g[1], default=(None, top))
        return {
            "classes": self.num_classes,
            "levels": self.levels,
            "depth": depth,
            "nodes_per_level": per_level,
            "top_level_groups": top,
            "singleton_groups": len(singletons),
            "singleton_group_ids": singletons,
            "largest_group": {
                "id": largest[0],
                "name": self._by_id[largest[0]].name if largest[0] else "(root)",
                "children": largest[1],
            },
        }

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "levels": self.levels,
            "classes": [c.to_dict() for c in self.classes],
            "nodes": [n.to_dict() for n in self.nodes],
            "provenance": self.provenance,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<tree>") -> Tree:
        if not isinstance(data, dict):
            raise TreeError(f"{origin}: not an nhl tree (expected a JSON object)")
        fmt = data.get("format")
        if fmt != FORMAT:
            raise TreeError(f"{origin}: unknown tree format {fmt!r} (this nhl reads {FORMAT!r})")
        problems: list[str] = []
        classes = _read_nodes(data.get("classes"), "classes", problems)
        nodes = _read_nodes(data.get("nodes", []), "nodes", problems)
        prov = data.get("provenance", {})
        if not isinstance(prov, dict):
            problems.append("'provenance' must be an object")
            prov = {}
        if problems:
            raise TreeError(f"{origin}: invalid tree", problems)
        try:
            tree = cls(classes, nodes, prov)
        except TreeError as e:
            raise TreeError(f"{origin}: invalid tree", e.problems) from None
        declared = data.get("levels")
        if declared is not None and declared != tree.levels:
            raise TreeError(
                f"{origin}: invalid tree",
                [
                    f"'levels' says {declared} but the classes sit at depth(s) "
                    f"{sorted({tree.depth(c) for c in tree.class_ids})}"
                ],
            )
        return tree

    @classmethod
    def load(cls, path: str | Path) -> Tree:
        p = Path(path)
        text = read_text(p, "tree file")
        try:
            data = parse_json(text, str(p), "tree")
        except NhlError as e:
            raise TreeError(str(e)) from None
        return cls.from_dict(data, origin=str(p))

    def save(self, path: str | Path) -> None:
        write_text_atomic(Path(path), self.to_json())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Tree({self.num_classes} classes, {len(self.nodes)} nodes, levels={self.levels})"

    def to_networkx(self) -> Any:
        """A networkx DiGraph with a synthetic root node 'root' (edges parent -> child)."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_node("root", name="root", kind="root")
        for n in self.nodes:
            g.add_node(n.id, name=n.name, kind="group", level=self._depth[n.id])
        for i, c in enumerate(self.classes):
            g.add_node(c.id, name=c.name, kind="class", level=self._depth[c.id], index=i)
        for n in (*self.nodes, *self.classes):
            g.add_edge(n.parent or "root", n.id)
        return g


def _read_nodes(raw: Any, key: str, problems: list[str]) -> list[TreeNode]:
    if not isinstance(raw, list):
        problems.append(f"'{key}' must be a list")
        return []
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            problems.append(f"{key}[{i}] needs a string 'id'")
            continue
        parent = item.get("parent")
        if parent is not None and not isinstance(parent, str):
            problems.append(f"{key}[{i}] ({item['id']}): 'parent' must be a string or null")
            continue
        attrs = item.get("attrs", {})
        out.append(
            TreeNode(
                item["id"],
                str(item.get("name", item["id"])),
                parent,
                attrs if isinstance(attrs, dict) else {},
            )
        )
    return out


def _structural_problems(
    classes: tuple[TreeNode, ...], nodes: tuple[TreeNode, ...]
) -> tuple[list[str], dict[str, int]]:
    """Every problem of the structure, and (when there is none) the depth of every node."""
    problems: list[str] = []
    if not classes:
        problems.append("the tree has no classes")
    if len(classes) + len(nodes) > MAX_NODES:
        total = len(classes) + len(nodes)
        return [f"the tree has {total:,} nodes; nhl reads at most {MAX_NODES:,}"], {}
    seen: dict[str, str] = {}
    for kind, group in (("class", classes), ("node", nodes)):
        for n in group:
            if n.id in seen:
                what = "class" if kind == seen[n.id] == "class" else "id"
                problems.append(f"{what} '{n.id}' appears twice")
            else:
                seen[n.id] = kind
    class_ids = {c.id for c in classes}
    node_ids = {n.id for n in nodes}
    for n in (*classes, *nodes):
        if n.parent is None:
            continue
        if n.parent in class_ids:
            problems.append(f"'{n.id}' has a class as parent ('{n.parent}')")
        elif n.parent not in node_ids:
            problems.append(f"'{n.id}' has a parent '{n.parent}' that is not in the tree")
    if problems:
        return problems, {}
    depth, problems = _depths({n.id: n.parent for n in (*classes, *nodes)})
    if problems:
        return problems, {}
    has_child = {n.parent for n in (*classes, *nodes)}
    for n in nodes:
        if n.id not in has_child:
            problems.append(f"empty group '{n.id}' ({n.name}) has no classes under it")
    return problems, depth


def _depths(parent: dict[str, str | None]) -> tuple[dict[str, int], list[str]]:
    """Depth of every node (level-1 nodes: 1), found in one pass; cycles and depths beyond
    MAX_DEPTH are problems. Each node is walked once, so this is linear in the tree's size."""
    depth: dict[str, int] = {}
    on_walk: set[str] = set()
    failed: set[str] = set()
    problems: list[str] = []
    too_deep = 0
    for start in parent:
        walk: list[str] = []
        cur: str | None = start
        while cur is not None and cur not in depth and cur not in failed and cur not in on_walk:
            on_walk.add(cur)
            walk.append(cur)
            cur = parent[cur]
        on_walk.difference_update(walk)
        if cur is not None and cur not in depth:  # back on this walk (a cycle) or a failed node
            if cur in walk:
                cycle = walk[walk.index(cur) :]
                shown = cycle if len(cycle) <= 8 else [*cycle[:4], "…", *cycle[-3:]]
                problems.append("cycle: " + " -> ".join([*shown, cur]) + f" ({len(cycle)} nodes)")
            failed.update(walk)
            continue
        base = 0 if cur is None else depth[cur]
        if base + len(walk) > MAX_DEPTH:
            too_deep = max(too_deep, base + len(walk))
            failed.update(walk)
            continue
        for i, node in enumerate(reversed(walk), start=1):
            depth[node] = base + i
    if too_deep:
        problems.append(
            f"the tree is at least {too_deep} levels deep; nhl accepts at most {MAX_DEPTH}"
        )
    return depth, problems
