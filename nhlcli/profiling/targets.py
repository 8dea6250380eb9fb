"""What to profile: a tree (file or shipped name) or a plain class list, and a subset of it."""

from __future__ import annotations

from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import (
    BUILTIN_SETS,
    ClassRef,
    ClassSet,
    Resolver,
    load_classes,
)
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.model.presets import Preset


def load_tree(spec: str) -> Tree:
    """A tree file, or the name of a tree shipped with nhl (`imagenette-wordnet-L3`)."""
    return resolve_tree(spec)


def flat_tree(classes: ClassSet) -> Tree:
    """A one-level tree of the classes (in their order): what PHL and shared-head presets need."""
    return Tree(
        [TreeNode(c.wnid, c.name, None) for c in classes.classes],
        (),
        {"source": "class-list", "params": {"classes": classes.name}},
    )


def model_tree(preset: Preset, tree_spec: str | None, classes_spec: str | None) -> Tree:
    """The model's tree: `--tree`, or for one-level presets a flat tree of `--classes`."""
    if tree_spec is not None:
        return load_tree(tree_spec)
    if classes_spec is None:
        raise NhlError("give --tree (a tree file or shipped tree name) or --classes (a class set)")
    if preset.num_levels > 1:
        raise NhlError(
            f"{preset.name} has {preset.num_levels} levels and needs a tree: pass --tree "
            f"(build one with: nhl build-tree --levels {preset.num_levels} ...)"
        )
    return flat_tree(load_classes(classes_spec))


def _tree_resolver(tree: Tree) -> Resolver:
    def resolve(token: str) -> list[ClassRef] | None:
        found = tree.find(token)
        if len(found) != 1:
            return None
        return [ClassRef(c, tree.node(c).name) for c in tree.leaves_under(found[0])]

    return resolve


def select_classes(tree: Tree, spec: str) -> list[str]:
    """Class ids of `tree` chosen by a class set, a class file, or comma-separated tokens.

    A token may be a class (id, name) or a tree node (id or name): a node selects every class under
    it. Classes not in the tree are an error.
    """
    resolver = _tree_resolver(tree)
    if spec in BUILTIN_SETS or Path(spec).is_file():
        chosen = load_classes(spec, extra=resolver)
    elif spec.endswith((".txt", ".tsv")) or "/" in spec:
        raise NhlError(f"class file not found: {spec}")
    else:  # inline tokens, resolved like `nhl cutout` does (duplicates dropped, first wins)
        from nhlcli.model.cutout import resolve_selection

        tokens = [t.strip() for t in spec.split(",") if t.strip()]
        return resolve_selection(tree, tokens)
    missing = [c for c in chosen.classes if c.wnid not in tree or not tree.is_class(c.wnid)]
    if missing:
        shown = ", ".join(f"{c.name} ({c.wnid})" for c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise NhlError(
            f"{len(missing)} selected class(es) are not classes of the tree: {shown}{more}"
        )
    return chosen.wnids
