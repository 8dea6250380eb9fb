"""The random control tree of `nhl tree compare`: same shape, classes shuffled, seeded."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from cli_helpers import run_cli

from nhlcli.hierarchy.random_tree import random_tree_like
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree


def shape(tree: Tree) -> list[list[int]]:
    """Per level, the sorted numbers of children of its nodes (and the classes per level)."""
    depth = max(tree.depth(c) for c in tree.class_ids)
    return [
        [*sorted(len(tree.children(n)) for n in tree.level(d)), len(tree.level(d))]
        for d in range(1, depth + 1)
    ]


def test_random_tree_keeps_the_shape_and_moves_classes() -> None:
    tree = resolve_tree("imagenette-wordnet-L3")
    rnd = random_tree_like(tree, seed=0)
    assert rnd.class_ids == tree.class_ids and shape(rnd) == shape(tree)
    assert Counter(c.parent for c in rnd.classes) == Counter(c.parent for c in tree.classes)
    assert [c.parent for c in rnd.classes] != [c.parent for c in tree.classes]
    again = random_tree_like(tree, seed=0)
    assert [c.parent for c in again.classes] == [c.parent for c in rnd.classes]
    other = [random_tree_like(tree, seed=s) for s in range(1, 4)]
    assert any([c.parent for c in o.classes] != [c.parent for c in rnd.classes] for o in other)


def test_tree_compare_adds_the_random_control(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tree", "compare", "imagenette-wordnet-L3", "--json"]
    code, out, _ = run_cli([*args, "--random-control", "--seed", "3"], capsys)
    assert code == 0
    trees = json.loads(out)["trees"]
    assert [t["tree"] for t in trees] == [
        "imagenette-wordnet-L3",
        "random (shape of imagenette-wordnet-L3, seed 3)",
    ]
    assert [r["nodes"] for r in trees[0]["rows"]] == [r["nodes"] for r in trees[1]["rows"]]
    assert [r["balance"] for r in trees[0]["rows"]] == [r["balance"] for r in trees[1]["rows"]]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and len(json.loads(out)["trees"]) == 1
