"""`build_tree`: one entry point for every tree source (`nhl build-tree --source ...`).

A source is a function `BuildRequest -> Tree` in `SOURCES`. The LLM and hybrid sources live in
`nhlcli.hierarchy.llm` (`build_llm_tree`, `build_hybrid_tree`, each called as
`fn(classes, levels, groups, options)`); their CLI options arrive in `BuildRequest.options`, plus
`options["date"]` (the provenance date: "today", None or a string) and `options["notes"]` (a list to
append one-line notes for the user to).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nhlcli.errors import MissingWordNetError, NhlError
from nhlcli.hierarchy.classsets import ClassSet, builtin_set
from nhlcli.hierarchy.levelling import TODAY, provenance
from nhlcli.hierarchy.shipped_trees import (
    SHIPPED_LEVELS,
    SHIPPED_SETS,
    resolve_tree,
    shipped_tree_name,
)
from nhlcli.hierarchy.table_source import SUPERCLASS, build_table_tree
from nhlcli.hierarchy.tree import Tree

DEFAULT_LEVELS = 3


@dataclass
class BuildRequest:
    source: str
    classes: ClassSet
    levels: int | None = None  # None: the source's default (3; a table's own depth)
    groups: list[int] | None = None
    table: str | None = None
    allow_missing: bool = False
    date: str | None = TODAY  # "today", None (pinned: no date) or a fixed string
    options: dict[str, Any] = field(default_factory=dict)  # source-specific options (llm, hybrid)
    exact_groups: bool = False  # reach `groups` exactly (regroup.fit_node_counts)
    notes: list[str] = field(default_factory=list)  # filled by the builder: things to tell the user


Builder = Callable[[BuildRequest], Tree]


def _wordnet(req: BuildRequest) -> Tree:
    from nhlcli.hierarchy.wordnet_source import build_wordnet_tree

    _no_table(req)
    levels = DEFAULT_LEVELS if req.levels is None else req.levels
    try:
        return build_wordnet_tree(req.classes, levels, req.groups, date=req.date)
    except MissingWordNetError:
        name = req.classes.name
        if (
            req.groups is not None
            or name not in SHIPPED_SETS
            or levels not in SHIPPED_LEVELS
            or req.classes != builtin_set(name)
        ):
            raise
        shipped = shipped_tree_name(name, levels)
        req.notes.append(
            f"WordNet data is not installed: used the shipped tree {shipped} (the same tree a "
            "fresh build gives); `python -m nltk.downloader wordnet` enables every class set"
        )
        date = provenance("wordnet", {}, date=req.date)["date"]
        return resolve_tree(shipped).with_provenance(date=date)


def _superclass(req: BuildRequest) -> Tree:
    return build_table_tree(
        req.classes,
        req.table or SUPERCLASS,
        levels=req.levels,
        groups=req.groups,
        allow_missing=req.allow_missing,
        date=req.date,
    )


def _from_llm_package(function: str) -> Builder:
    def build(req: BuildRequest) -> Tree:
        _no_table(req)
        try:
            module = importlib.import_module("nhlcli.hierarchy.llm")
        except ModuleNotFoundError as e:
            if e.name and not e.name.startswith("nhlcli"):
                raise NhlError(f"--source {req.source} needs the package '{e.name}'") from None
            module = None
        fn = getattr(module, function, None)
        if fn is None:
            raise NhlError(f"--source {req.source} is not available in this version of nhl")
        options = {**req.options, "date": req.date, "notes": req.notes}
        levels = DEFAULT_LEVELS if req.levels is None else req.levels
        tree: Tree = fn(req.classes, levels, req.groups, options)
        return tree

    return build


def _no_table(req: BuildRequest) -> None:
    if req.table is not None or req.allow_missing:
        raise NhlError(
            f"--table and --allow-missing apply to --source superclass, not {req.source}"
        )


SOURCES: dict[str, Builder] = {
    "wordnet": _wordnet,
    "superclass": _superclass,
    "llm": _from_llm_package("build_llm_tree"),
    "hybrid": _from_llm_package("build_hybrid_tree"),
}


def build_tree(req: BuildRequest) -> Tree:
    builder = SOURCES.get(req.source)
    if builder is None:
        raise NhlError(f"unknown source '{req.source}' (sources: {', '.join(SOURCES)})")
    if req.exact_groups and req.groups is None:
        raise NhlError("--exact-groups needs --groups (the node counts to reach)")
    tree = builder(req)
    if req.exact_groups and req.groups is not None:
        from nhlcli.hierarchy.regroup import fit_node_counts

        tree = fit_node_counts(tree, req.groups)
    return tree
