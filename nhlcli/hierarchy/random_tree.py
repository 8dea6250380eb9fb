"""A random tree of the same shape as a given one: the control row of `nhl tree compare`.

The internal nodes and every class's slot under them are kept (same nodes per level, same group
sizes, same class order = logit order); only which class sits in which slot is drawn at random,
with a seeded generator. A tree score means something only against what such a tree gets.
"""

from __future__ import annotations

import random

from nhlcli.hierarchy.tree import Tree, TreeNode


def random_tree_like(tree: Tree, seed: int = 0) -> Tree:
    """`tree` with its classes shuffled over its class slots (seeded; reproducible)."""
    parents = [c.parent for c in tree.classes]
    random.Random(seed).shuffle(parents)
    classes = [TreeNode(c.id, c.name, p) for c, p in zip(tree.classes, parents, strict=True)]
    prov = {
        **tree.provenance,
        "source": "random",
        "params": {"shape_of": tree.provenance.get("source"), "seed": seed},
    }
    return Tree(classes, tree.nodes, prov)
