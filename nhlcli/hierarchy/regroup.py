"""Trees with exactly the wanted number of nodes per level (`nhl build-tree --exact-groups`).

The papers' trees are unknown; only their node counts are (e.g. 17 / 161 / 1000 for the
ImageNet-1k NHLs of the main paper's Tables 2 and 4). A source's levelling gets close (WordNet
gives 16 or 18 top groups for ImageNet-1k, not 17); `fit_node_counts` then reaches the counts
exactly, level by level:

* too few nodes at a level: the node with the most children is split in two (the second half of
  its children, in tree order, move to a new sibling ``<id>~2`` named ``<name> (2)``);
* too many: the two siblings (same parent) with the fewest children together are merged (the
  second one's children move to the first, which keeps its id and name).

A split or merge at level l moves children between nodes of level l only, so the counts of the
other levels stay as they are. The classes (and their order) are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree, TreeNode


def fit_node_counts(tree: Tree, groups: Sequence[int]) -> Tree:
    """The tree with groups[i] internal nodes at level i+1 (its classes being the last level)."""
    levels = tree.levels
    if levels is None or len(groups) != levels - 1:
        raise NhlError(f"--exact-groups needs one count per level above the classes ({groups})")
    names = {n.id: n.name for n in tree.nodes}
    parent: dict[str, str | None] = {n.id: n.parent for n in (*tree.nodes, *tree.classes)}
    order = [n.id for n in (*tree.nodes, *tree.classes)]  # canonical order: children stay sorted
    for lv, target in enumerate(groups, start=1):
        ids = [i for i in order if i in names and _depth(i, parent) == lv]
        while len(ids) != target:
            kids = {i: [c for c in order if parent[c] == i] for i in ids}
            if len(ids) < target:
                big = max(ids, key=lambda i: len(kids[i]))
                if len(kids[big]) < 2:
                    raise NhlError(f"level {lv}: no node has two children to split")
                new = _new_id(big, names)
                names[new] = f"{names[big]} ({new.rsplit('~', 1)[1]})"
                parent[new] = parent[big]
                order.insert(order.index(big) + 1, new)
                for c in kids[big][len(kids[big]) // 2 :]:
                    parent[c] = new
            else:
                pairs = [
                    (len(kids[a]) + len(kids[b]), a, b)
                    for x, a in enumerate(ids)
                    for b in ids[x + 1 :]
                    if parent[a] == parent[b]
                ]
                if not pairs:
                    raise NhlError(f"level {lv}: no two sibling nodes to merge")
                _, keep, gone = min(pairs)
                for c in kids[gone]:
                    parent[c] = keep
                order.remove(gone)
                del names[gone], parent[gone]
            ids = [i for i in order if i in names and _depth(i, parent) == lv]
    nodes = [TreeNode(i, names[i], parent[i]) for i in order if i in names]
    classes = [TreeNode(c.id, c.name, parent[c.id], c.attrs) for c in tree.classes]
    prov = dict(tree.provenance)
    prov["params"] = {**prov.get("params", {}), "exact_groups": list(groups)}
    return Tree(classes, nodes, prov)


def _depth(node_id: str, parent: dict[str, str | None]) -> int:
    d, cur = 1, parent[node_id]
    while cur is not None:
        d, cur = d + 1, parent[cur]
    return d


def _new_id(base: str, taken: dict[str, str]) -> str:
    j = 2
    while f"{base}~{j}" in taken:
        j += 1
    return f"{base}~{j}"
