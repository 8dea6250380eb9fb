"""The tree model and its file format: round trips, queries, and every validation error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nhlcli.errors import NhlError
from nhlcli.hierarchy.shipped_trees import resolve_tree, shipped_tree_names, shipped_tree_path
from nhlcli.hierarchy.tree import Tree, TreeError, TreeNode


def small() -> Tree:
    """animal -> {fish -> tench, goldfish; dog -> beagle}, device -> {radio@2 -> radio}."""
    classes = [
        TreeNode("tench", "tench", "fish"),
        TreeNode("beagle", "beagle", "dog", {"placed_by": "wordnet"}),
        TreeNode("radio", "radio", "radio@2"),
        TreeNode("goldfish", "goldfish", "fish"),
    ]
    nodes = [
        TreeNode("device", "device", None),
        TreeNode("dog", "dog", "animal"),
        TreeNode("radio@2", "radio", "device"),
        TreeNode("fish", "fish", "animal"),
        TreeNode("animal", "animal", None),
    ]
    return Tree(classes, nodes, {"source": "test", "date": None})


def test_queries_on_a_small_tree() -> None:
    t = small()
    assert t.levels == 3
    assert t.level(1) == ["animal", "device"]
    assert t.level(2) == ["fish", "dog", "radio@2"]  # canonical: by depth, then first class
    assert t.level(3) == ["tench", "beagle", "radio", "goldfish"]  # logit order
    assert t.path("goldfish") == ["animal", "fish", "goldfish"]
    assert t.leaves_under("animal") == ["tench", "beagle", "goldfish"]
    assert t.children(None) == ["animal", "device"]
    assert t.find("GOLDFISH") == ["goldfish"]
    assert t.find("Radio") == ["radio@2", "radio"]
    stats = t.stats()
    assert stats["nodes_per_level"] == [2, 3, 4]
    assert stats["singleton_groups"] == 3  # device, dog and radio@2 have one child each
    assert stats["largest_group"]["id"] in ("animal", "fish")
    assert stats["largest_group"]["children"] == 2
    sub = t.subtree(["goldfish", "radio"])
    assert sub.class_ids == ["goldfish", "radio"] and sub.level(1) == ["animal", "device"]
    assert [n.id for n in sub.nodes] == ["animal", "device", "fish", "radio@2"]


def test_round_trip_is_byte_identical(tmp_path: Path) -> None:
    t = small()
    p = tmp_path / "t.json"
    t.save(p)
    back = Tree.load(p)
    assert back == t
    assert back.to_json() == p.read_text(encoding="utf-8")
    assert back.node("beagle").attrs == {"placed_by": "wordnet"}
    back.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == p.read_bytes()


def test_shipped_trees_round_trip_and_resolve() -> None:
    names = shipped_tree_names()
    assert len(names) == 15 and "imagenette-wordnet-L3" in names
    for name in ("imagenette-wordnet-L1", "imagenet100-wordnet-L3"):
        text = shipped_tree_path(name).read_text(encoding="utf-8")
        tree = resolve_tree(name)
        assert tree.to_json() == text
        assert tree.levels == int(name[-1])


def test_resolve_tree_prefers_files_and_explains_unknown_names(tmp_path: Path) -> None:
    p = tmp_path / "imagenette-wordnet-L3"  # a file that shadows the shipped name
    small().save(p)
    assert resolve_tree(str(p)).num_classes == 4
    with pytest.raises(NhlError, match="neither a tree file nor a shipped tree"):
        resolve_tree("imagenette-wordnet-L9")
    with pytest.raises(NhlError, match="tree file not found"):
        resolve_tree(str(tmp_path / "nope.json"))


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "t.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    return p


def base_dict() -> dict:
    return small().to_dict()


def test_unknown_format_version(tmp_path: Path) -> None:
    d = base_dict()
    d["format"] = "nhl-tree/9"
    with pytest.raises(TreeError, match=r"unknown tree format 'nhl-tree/9'"):
        Tree.load(write(tmp_path, d))


def test_cycle_is_reported(tmp_path: Path) -> None:
    d = base_dict()
    for n in d["nodes"]:
        if n["id"] == "animal":
            n["parent"] = "fish"  # animal -> fish -> animal
    with pytest.raises(TreeError) as e:
        Tree.load(write(tmp_path, d))
    assert any(p.startswith("cycle:") and "animal" in p and "fish" in p for p in e.value.problems)


def test_class_twice_and_node_without_parent_are_both_reported(tmp_path: Path) -> None:
    d = base_dict()
    d["classes"].append({"id": "tench", "name": "tench", "parent": "fish"})
    d["classes"].append({"id": "carp", "name": "carp", "parent": "cyprinid"})
    with pytest.raises(TreeError) as e:
        Tree.load(write(tmp_path, d))
    probs = e.value.problems
    assert "class 'tench' appears twice" in probs
    assert "'carp' has a parent 'cyprinid' that is not in the tree" in probs
    assert str(tmp_path / "t.json") in str(e.value)


def test_empty_group(tmp_path: Path) -> None:
    d = base_dict()
    d["nodes"].append({"id": "plant", "name": "plant", "parent": None})
    with pytest.raises(TreeError, match=r"empty group 'plant'"):
        Tree.load(write(tmp_path, d))


def test_levels_mismatch(tmp_path: Path) -> None:
    d = base_dict()
    d["levels"] = 2
    with pytest.raises(TreeError, match=r"'levels' says 2 but the classes sit at depth\(s\) \[3\]"):
        Tree.load(write(tmp_path, d))
    uneven = Tree([TreeNode("a", "a", None), TreeNode("b", "b", "g")], [TreeNode("g", "g", None)])
    assert uneven.levels is None
    with pytest.raises(TreeError, match="is not levelled but 3 are required"):
        uneven.require_levels(3)
    with pytest.raises(TreeError, match="has 3 levels but 2 are required"):
        small().require_levels(2)


def test_unreadable_files(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text("{not json", encoding="utf-8")
    with pytest.raises(TreeError, match="not a readable JSON tree"):
        Tree.load(p)
    with pytest.raises(TreeError, match="expected a JSON object"):
        Tree.load(write(tmp_path, [1, 2]))
    with pytest.raises(NhlError, match="tree file not found"):
        Tree.load(tmp_path / "absent.json")
