"""Which classes a user means: the one resolver behind every `--classes`, `--attend`, `--highlight`.

A selection is any of:

* a built-in class set (`imagenette`) or a class file (one class per line),
* a model, expert or training-run folder (its config.json lists its classes),
* comma-separated tokens, or a list of them: a class (id or name) or a tree node (id or name),
  where a node stands for every class under it.

The result is the tree's class ids in the order named (duplicates dropped, first wins); a class
that is not in the tree is one NhlError listing every such class. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, partial
from pathlib import Path

from nhlcli.checkpoint_dirs import read_config_json
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import (
    BUILTIN_SETS,
    ClassRef,
    Resolver,
    imagenet,
    load_classes,
    names_a_file,
)
from nhlcli.hierarchy.names import (
    SUGGESTIONS,
    Candidate,
    Candidates,
    did_you_mean,
    sense_label,
    suggest,
)
from nhlcli.hierarchy.tree import Tree

Selection = str | Path | Sequence[str]


def tree_candidates(tree: Tree) -> list[Candidate]:
    """The tree's classes, then its groups, each with its names: the tree's name, and for a WordNet
    id its synonyms (the ImageNet catalogue's, else WordNet's when its data is installed)."""
    from nhlcli.hierarchy.wordnet_data import lemma_names

    catalog = imagenet()
    out = []
    for node in (*tree.classes, *tree.nodes):
        synonyms = catalog.synonyms(node.id) or lemma_names(node.id)
        out.append(Candidate(node.name, (node.name, *synonyms)))
    return out


def similar_names(tree: Tree, text: str, n: int = SUGGESTIONS) -> list[str]:
    """Names of the tree's classes and groups that look like `text`, best first."""
    return suggest(text, tree_candidates(tree), n)


def resolve_node(tree: Tree, token: str, candidates: Candidates | None = None) -> str:
    """The one node (class or group) a token names (id or name); NhlError if none or several.

    Several nodes with the same name that stand for the same classes (a class continued upwards by
    single-child nodes of its own name, as levelled WordNet trees have) count as one: the deepest.
    An unknown token's message offers close names of `candidates` (default: the tree's).
    """
    found = tree.find(token)
    if not found:
        hint = did_you_mean(token, tree_candidates(tree) if candidates is None else candidates())
        raise NhlError(f"'{token}' is not a class or node of this model's tree{hint}")
    if len(found) > 1 and len({tuple(tree.leaves_under(f)) for f in found}) == 1:
        return max(found, key=tree.depth)
    if len(found) > 1:
        shown = ", ".join(sense_label(f, tree.node(f).name) for f in found[:5])
        raise NhlError(f"'{token}' is ambiguous in this tree: {shown}; use the id")
    return found[0]


def resolve_tokens(tree: Tree, tokens: Sequence[str]) -> list[str]:
    """Class ids for tokens: class ids/names, or node ids/names (all classes under them)."""
    out: list[str] = []
    problems: list[str] = []
    candidates = cache(partial(tree_candidates, tree))  # built on the first unknown token
    for token in tokens:
        try:
            node = resolve_node(tree, token, candidates)
        except NhlError as e:
            problems.append(str(e))
            continue
        out.extend(tree.leaves_under(node))
    if problems:
        raise NhlError(f"cannot select {len(problems)} item(s)", problems)
    if not out:
        raise NhlError("the selection is empty")
    return list(dict.fromkeys(out))


def saved_model_tree(folder: str | Path) -> Tree:
    """The tree of a model, expert or run folder, read from its config.json (no weights)."""
    config = read_config_json(folder)
    try:
        return Tree.from_dict(config["tree"], origin=f"{folder}: tree")
    except (KeyError, TypeError) as e:
        raise NhlError(f"{folder}: not a readable nhl model config ({type(e).__name__})") from None


def model_classes(folder: str | Path) -> list[str]:
    """The class ids of a model, expert or run folder, read from its config.json (no weights)."""
    return saved_model_tree(folder).class_ids


def _tree_resolver(tree: Tree) -> Resolver:
    def resolve(token: str) -> list[ClassRef] | None:
        found = tree.find(token)
        if len(found) != 1:
            return None
        return [ClassRef(c, tree.node(c).name) for c in tree.leaves_under(found[0])]

    return resolve


def _not_in_tree(tree: Tree, ids: Sequence[str], names: dict[str, str], origin: str) -> None:
    missing = [c for c in ids if not tree.is_class(c)]
    if missing:
        shown = ", ".join(
            f"{names[c]} ({c})" if names.get(c, c) != c else c for c in missing[:5]
        ) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise NhlError(
            f"{origin}{len(missing)} selected class(es) are not classes of the tree: {shown}"
        )


def select_classes(tree: Tree, selection: Selection) -> list[str]:
    """Class ids of `tree` named by `selection` (see the module docstring)."""
    if not isinstance(selection, str | Path):
        return resolve_tokens(tree, [str(t) for t in selection])
    spec = str(selection)
    path = Path(spec)
    if path.is_dir():
        ids = model_classes(path)
        _not_in_tree(tree, ids, {}, f"{spec}: ")
        return ids
    if spec in BUILTIN_SETS or path.is_file():
        chosen = load_classes(spec, _tree_resolver(tree), cache(partial(tree_candidates, tree)))
        _not_in_tree(tree, chosen.wnids, {c.wnid: c.name for c in chosen.classes}, "")
        return chosen.wnids
    if names_a_file(spec):
        raise NhlError(f"class file not found: {spec}")
    return resolve_tokens(tree, [t.strip() for t in spec.split(",") if t.strip()])


def trees_fitting(class_ids: Sequence[str], levels: int) -> list[str]:
    """Names of shipped trees with exactly these classes (any order) and `levels` levels."""
    from nhlcli.hierarchy.classsets import builtin_set
    from nhlcli.hierarchy.shipped_trees import SHIPPED_SETS, shipped_tree_name

    wanted = set(class_ids)
    return [
        shipped_tree_name(name, levels)
        for name in SHIPPED_SETS
        if set(builtin_set(name).wnids) == wanted
    ]
