"""The levelling rule on hand-made hierarchies (no WordNet): exact level counts, collapsed chains,
continuation nodes, targets, and invariants on random hierarchies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nhlcli.errors import NhlError
from nhlcli.hierarchy.levelling import (
    ClassPath,
    check_levels_and_groups,
    default_targets,
    exact_tree,
    level_tree,
)
from nhlcli.hierarchy.tree import Tree


def cp(cid: str, *ancestors: str) -> ClassPath:
    return ClassPath(cid, cid.upper(), tuple((a, a.capitalize()) for a in ancestors))


# entity -> animal -> {fish -> {tench, carp}, mammal -> {dog -> {beagle, pug, husky}, cat}},
#           device -> {radio, car}
PATHS = [
    cp("tench", "entity", "animal", "fish"),
    cp("carp", "entity", "animal", "fish"),
    cp("beagle", "entity", "animal", "mammal", "dog"),
    cp("pug", "entity", "animal", "mammal", "dog"),
    cp("husky", "entity", "animal", "mammal", "dog"),
    cp("cat", "entity", "animal", "mammal"),
    cp("radio", "entity", "device"),
    cp("car", "entity", "device"),
]


def check_invariants(tree: Tree, paths: list[ClassPath], levels: int) -> None:
    assert tree.class_ids == [p.id for p in paths]  # every class once, in the given order
    assert tree.levels == levels
    for node in tree.nodes:  # a real group has >= 2 children; continuations have exactly one
        kids = tree.children(node.id)
        if "@" in node.id and node.id.split("@")[0] in tree.class_ids:
            assert kids and len(tree.leaves_under(node.id)) == 1
        else:
            assert len(kids) >= 2, node.id


@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
def test_exactly_n_levels(levels: int) -> None:
    tree = level_tree(PATHS, levels)
    check_invariants(tree, PATHS, levels)


def test_one_level_is_flat_and_entity_is_never_a_group() -> None:
    tree = level_tree(PATHS, 1)
    assert tree.nodes == ()
    assert all(c.parent is None for c in tree.classes)
    assert "entity" not in level_tree(PATHS, 4)


def test_three_levels_cut_and_continuations() -> None:
    tree = level_tree(PATHS, 3, groups=[2, 4])
    assert tree.level(1) == ["animal", "device"]
    assert tree.level(2) == ["fish", "mammal", "radio@2", "car@2"]
    assert tree.node("radio@2").name == "RADIO"
    assert tree.parent("beagle") == "mammal"  # dog is below level 2: collapsed into mammal
    assert tree.parent("radio") == "radio@2"


def test_chains_collapse_to_their_lowest_node() -> None:
    # a -> b -> c -> {x, y}: the only group is c, the common ancestor with two children
    paths = [cp("x", "a", "b", "c"), cp("y", "a", "b", "c"), cp("z", "a", "q")]
    tree = level_tree(paths, 2, groups=[2])
    assert tree.level(1) == ["c", "z@1"]
    assert tree.node("c").name == "C"


def test_targets_choose_the_width_of_a_level() -> None:
    two = level_tree(PATHS, 2, groups=[2])
    assert two.level(1) == ["animal", "device"]
    # 3 nodes after splitting animal; the 4th comes from the largest group, mammal (cat left alone)
    four = level_tree(PATHS, 2, groups=[4])
    assert four.level(1) == ["fish", "dog", "cat@1", "device"]
    # 5: splitting dog (+2) would overshoot as much as stopping; fish (+1) hits the target
    five = level_tree(PATHS, 2, groups=[5])
    assert five.level(1) == ["tench@1", "carp@1", "dog", "cat@1", "device"]
    assert default_targets(1000, 3) == [10, 100]
    assert default_targets(10, 3) == [2, 5]
    assert default_targets(5, 1) == []


def test_splits_that_leave_a_class_alone_come_last() -> None:
    # big: 6 classes, its split leaves one class alone; mid: 4 classes splitting into two pairs
    paths = [cp(f"b{i}", "big", "bsub") for i in range(5)] + [cp("b5", "big")]
    paths += [
        cp("m0", "mid", "m1g"),
        cp("m1", "mid", "m1g"),
        cp("m2", "mid", "m2g"),
        cp("m3", "mid", "m2g"),
    ]
    tree = level_tree(paths, 2, groups=[3])
    assert tree.level(1) == ["big", "m1g", "m2g"]  # not: bsub, b5@1, mid


def test_a_class_that_is_also_an_ancestor() -> None:
    paths = [
        cp("dog", "animal"),
        cp("beagle", "animal", "dog"),
        cp("pug", "animal", "dog"),
        cp("cat", "animal"),
    ]
    tree = level_tree(paths, 3, groups=[2, 4])
    # the class dog sits inside the group dog, next to the breeds
    assert tree.level(1) == ["dog@1", "cat@1"]
    assert tree.level(2) == ["dog@2", "beagle@2", "pug@2", "cat@2"]
    assert tree.parent("dog@2") == "dog@1" and tree.parent("dog") == "dog@2"
    assert tree.node("dog@1").name == "DOG" and tree.node("dog@2").name == "DOG"


def test_paths_that_disagree_are_an_error() -> None:
    with pytest.raises(NhlError, match=r"'fish' .* has two parents"):
        level_tree([cp("a", "animal", "fish"), cp("b", "water", "fish")], 2)


def test_bad_levels_and_groups() -> None:
    with pytest.raises(NhlError, match="at least 1"):
        level_tree(PATHS, 0)
    with pytest.raises(NhlError, match="needs 2 number"):
        check_levels_and_groups(3, [5], 8)
    with pytest.raises(NhlError, match="between 1 and the number of classes"):
        level_tree(PATHS, 2, groups=[9])
    with pytest.raises(NhlError, match="given twice"):
        level_tree([cp("a", "x"), cp("a", "y")], 2)


def test_exact_tree_keeps_table_paths_and_continues_short_ones() -> None:
    paths = [cp("a", "g1", "s1"), cp("b", "g1", "s1"), cp("c", "g2")]
    tree = exact_tree(paths)
    assert tree.levels == 3
    assert tree.path("a") == ["g1", "s1", "a"]
    assert tree.path("c") == ["g2", "c@2", "c"]
    assert exact_tree(paths, 4).path("a") == ["g1", "s1", "a@3", "a"]
    with pytest.raises(NhlError, match="too few"):
        exact_tree(paths, 2)
    with pytest.raises(NhlError, match="uses classes as groups"):
        exact_tree([cp("a", "b"), cp("b", "x")])


def test_deterministic_output() -> None:
    one = level_tree(PATHS, 3).to_json()
    two = level_tree(list(PATHS), 3).to_json()
    assert one == two


# ---------------------------------------------------------- invariants on random hierarchies
@st.composite
def hierarchies(draw: st.DrawFn) -> list[ClassPath]:
    """Random trees: node i > 0 has a parent < i; classes hang under random nodes."""
    n_nodes = draw(st.integers(1, 25))
    parents = [None] + [draw(st.integers(0, i - 1)) for i in range(1, n_nodes)]
    n_classes = draw(st.integers(1, 30))
    homes = [draw(st.integers(0, n_nodes - 1)) for _ in range(n_classes)]
    paths = []
    for ci, home in enumerate(homes):
        chain = []
        cur: int | None = home
        while cur is not None:
            chain.append(f"g{cur}")
            cur = parents[cur]
        paths.append(cp(f"c{ci}", *reversed(chain)))
    return paths


@settings(max_examples=60, deadline=None)
@given(paths=hierarchies(), levels=st.integers(1, 5), data=st.data())
def test_random_hierarchies_level_exactly(paths: list[ClassPath], levels: int, data) -> None:
    groups = None
    if levels > 1 and data.draw(st.booleans()):
        groups = [data.draw(st.integers(1, len(paths))) for _ in range(levels - 1)]
    tree = level_tree(paths, levels, groups)
    check_invariants(tree, paths, levels)
    assert level_tree(paths, levels, groups).to_json() == tree.to_json()
