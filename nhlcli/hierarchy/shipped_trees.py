"""The WordNet trees shipped in `hierarchies/trees/`; `resolve_tree` for every tree argument.

Shipped trees are named `<class set>-wordnet-L<levels>` (e.g. `imagenette-wordnet-L3`) and are
built by nhl itself with a pinned (null) date: `python -m nhlcli.hierarchy.regenerate` rewrites
them, and `tests/test_wordnet_source.py` checks that they are current.
"""

from __future__ import annotations

from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.resources import shipped

SHIPPED_SETS = ("imagenette", "imagewoof", "imagenet100", "imagenet100-cmc", "imagenet1k")
SHIPPED_LEVELS = (1, 2, 3)


def shipped_tree_name(class_set: str, levels: int) -> str:
    return f"{class_set}-wordnet-L{levels}"


def shipped_tree_names() -> list[str]:
    return [shipped_tree_name(s, n) for s in SHIPPED_SETS for n in SHIPPED_LEVELS]


def shipped_tree_path(name: str) -> Path:
    if name not in shipped_tree_names():
        raise NhlError(f"no shipped tree '{name}' (shipped: {', '.join(shipped_tree_names())})")
    return shipped("trees", f"{name}.json")


def resolve_tree(spec: Tree | str | Path) -> Tree:
    """A `Tree` as given, a tree from a file path, or a shipped tree by name
    (`imagenette-wordnet-L3`): the one resolver of every tree argument, CLI and Python API.

    An existing file wins over a shipped name; anything else is an error naming both options.
    """
    if isinstance(spec, Tree):
        return spec
    if not isinstance(spec, str | Path):
        raise NhlError(f"a tree must be a Tree, a tree file or a shipped tree name, not {spec!r}")
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return Tree.load(path)
    if text in shipped_tree_names():
        return Tree.load(shipped_tree_path(text))
    if path.is_dir():
        raise NhlError(f"{text} is a folder, not a tree file")
    if text.endswith(".json") or path.parent != Path("."):
        raise NhlError(f"tree file not found: {text}")
    raise NhlError(
        f"'{text}' is neither a tree file nor a shipped tree "
        f"(shipped: <set>-wordnet-L<1|2|3> for {', '.join(SHIPPED_SETS)})"
    )
