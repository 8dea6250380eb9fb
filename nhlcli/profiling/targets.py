"""The tree a model is built for: `--tree` (a `Tree`, file or shipped name), or a flat tree of
`--classes`."""

from __future__ import annotations

from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet, load_classes
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.model.presets import Preset


def flat_tree(classes: ClassSet) -> Tree:
    """A one-level tree of the classes (in their order): what PHL and shared-head presets need."""
    return Tree(
        [TreeNode(c.wnid, c.name, None) for c in classes.classes],
        (),
        {"source": "class-list", "params": {"classes": classes.name}},
    )


def tree_for_preset(
    preset: Preset, tree_spec: Tree | str | Path | None, classes_spec: str | None
) -> Tree:
    """The model's tree: `--tree`, or for one-level presets a flat tree of `--classes`."""
    if tree_spec is not None:
        return resolve_tree(tree_spec)
    if classes_spec is None:
        raise NhlError("give --tree (a tree file or shipped tree name) or --classes (a class set)")
    if preset.num_levels > 1:
        raise NhlError(
            f"{preset.name} has {preset.num_levels} levels and needs a tree: pass --tree "
            f"(build one with: nhl build-tree --levels {preset.num_levels} ...)"
        )
    return flat_tree(load_classes(classes_spec))
