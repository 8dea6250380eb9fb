"""The tree sources: a typed registry behind `nhl build-tree --source NAME` and `nhl.build_tree`.

A source is one `TreeSource` entry: a name, a one-line description, a dataclass of its own typed
options, and a build function `(classes, levels, groups, options, context) -> Tree`. `context`
carries what every build has: the provenance date, a progress callback, and a list for one-line
notes to the user. Adding a source is one module that calls `register(TreeSource(...))` plus its
name in `PLUGIN_MODULES` below; `nhl build-tree` then accepts it and its options by field name.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nhlcli.errors import MissingWordNetError, NhlError
from nhlcli.hierarchy.classsets import ClassSet, builtin_set
from nhlcli.hierarchy.levelling import TODAY, provenance
from nhlcli.hierarchy.llm.builder import LLMOptions
from nhlcli.hierarchy.shipped_trees import (
    SHIPPED_LEVELS,
    SHIPPED_SETS,
    resolve_tree,
    shipped_tree_name,
)
from nhlcli.hierarchy.tree import Tree

DEFAULT_LEVELS = 3
MAX_LEVELS = 32  # deeper than any WordNet path to an ImageNet class
ProgressFn = Callable[[int, int, str], None]


@dataclass
class SourceContext:
    """What every build gets besides its options."""

    date: str | None = TODAY  # "today", None (pinned: no date) or a fixed string
    progress: ProgressFn | None = None
    notes: list[str] = field(default_factory=list)  # filled by the builder
    report: Any = None  # the llm sources' BuildReport (request counts), when the caller wants it


@dataclass(frozen=True)
class TreeSource:
    name: str
    description: str
    options: type  # a dataclass; every field has a default
    build: Callable[[ClassSet, int | None, list[int] | None, Any, SourceContext], Tree]


SOURCES: dict[str, TreeSource] = {}


def register(source: TreeSource) -> TreeSource:
    SOURCES[source.name] = source
    return source


# ------------------------------------------------------------------------------ built-in sources
@dataclass
class WordNetOptions:
    """WordNet has no options: its hypernyms and the levelling rule decide."""


def _wordnet(
    classes: ClassSet, levels: int | None, groups: list[int] | None, _: WordNetOptions,
    ctx: SourceContext,
) -> Tree:  # fmt: skip
    from nhlcli.hierarchy.wordnet_source import build_wordnet_tree

    n = DEFAULT_LEVELS if levels is None else levels
    try:
        return build_wordnet_tree(classes, n, groups, date=ctx.date)
    except MissingWordNetError:
        name = classes.name
        if (
            groups is not None
            or name not in SHIPPED_SETS
            or n not in SHIPPED_LEVELS
            or classes != builtin_set(name)
        ):
            raise
        shipped = shipped_tree_name(name, n)
        ctx.notes.append(
            f"WordNet data is not installed: used the shipped tree {shipped} (the same tree a "
            "fresh build gives); `python -m nltk.downloader wordnet` enables every class set"
        )
        date = provenance("wordnet", {}, date=ctx.date)["date"]
        return resolve_tree(shipped).with_provenance(date=date)


@dataclass
class TableOptions:
    table: str | None = None  # None: the built-in imagenet-superclass table
    allow_missing: bool = False  # classes the table lacks get a group of their own


def _table(
    classes: ClassSet, levels: int | None, groups: list[int] | None, opts: TableOptions,
    ctx: SourceContext,
) -> Tree:  # fmt: skip
    from nhlcli.hierarchy.table_source import SUPERCLASS, build_table_tree

    return build_table_tree(
        classes,
        opts.table or SUPERCLASS,
        levels=levels,
        groups=groups,
        allow_missing=opts.allow_missing,
        date=ctx.date,
        notes=ctx.notes,
    )


def _llm_source(function: str) -> Callable[..., Tree]:
    """The llm and hybrid builds (the openai package is imported only when one runs)."""

    def build(
        classes: ClassSet, levels: int | None, groups: list[int] | None, opts: Any,
        ctx: SourceContext,
    ) -> Tree:  # fmt: skip
        from nhlcli.hierarchy import llm
        from nhlcli.hierarchy.llm.session import BuildReport

        report = ctx.report if ctx.report is not None else BuildReport()
        opts = dataclasses.replace(opts, date=ctx.date)
        n = DEFAULT_LEVELS if levels is None else levels
        try:
            tree: Tree = getattr(llm, function)(classes, n, groups, opts, ctx.progress, report)
        finally:
            ctx.notes.extend(report.notes)
        return tree

    return build


register(TreeSource("wordnet", "WordNet hypernyms, levelled", WordNetOptions, _wordnet))
register(TreeSource("superclass", "a superclass table (CSV/TSV, BREEDS)", TableOptions, _table))
register(TreeSource("llm", "a chat model (OpenAI API)", LLMOptions, _llm_source("build_llm_tree")))
register(
    TreeSource(
        "hybrid", "WordNet where clear, a chat model where ambiguous", LLMOptions,
        _llm_source("build_hybrid_tree"),
    )
)  # fmt: skip


def get_source(name: str) -> TreeSource:
    source = SOURCES.get(name)
    if source is None:
        names = list(SOURCES)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise NhlError(f"unknown source '{name}'{hint}; sources: {', '.join(names)}")
    return source


def make_options(source: TreeSource, given: Mapping[str, Any] | Any) -> Any:
    """The source's options dataclass from a mapping of field names (None = default)."""
    if isinstance(given, source.options):
        return given
    known = {f.name for f in dataclasses.fields(source.options)}
    values = {k: v for k, v in dict(given).items() if v is not None}
    unknown = sorted(set(values) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise NhlError(
            f"--source {source.name} does not take {', '.join(unknown)} (its options: {allowed})"
        )
    return source.options(**values)


def build_from_source(
    name: str,
    classes: ClassSet,
    levels: int | None = None,
    groups: Sequence[int] | None = None,
    options: Mapping[str, Any] | Any = (),
    context: SourceContext | None = None,
    exact_groups: bool = False,
) -> tuple[Tree, list[str]]:
    """Build a tree with source `name`; returns (tree, notes for the user).

    `exact_groups`: reach the `groups` counts exactly (`regroup.fit_node_counts`), e.g. the
    paper's 17 / 161 nodes, which the levelling of a source only approaches.
    """
    source = get_source(name)
    opts = make_options(source, options if options != () else {})
    ctx = context if context is not None else SourceContext()
    if levels is not None and not 1 <= levels <= MAX_LEVELS:
        raise NhlError(f"--levels must be between 1 and {MAX_LEVELS} (got {levels})")
    if exact_groups and not groups:
        raise NhlError("--exact-groups needs --groups (the node counts to reach)")
    tree = source.build(classes, levels, list(groups) if groups else None, opts, ctx)
    if exact_groups and groups:
        from nhlcli.hierarchy.regroup import fit_node_counts

        tree = fit_node_counts(tree, groups)
    return tree, ctx.notes


def _import_plugins() -> None:
    """Sources shipped as their own modules register themselves when imported."""
    for module in PLUGIN_MODULES:
        importlib.import_module(module)


PLUGIN_MODULES: tuple[str, ...] = ("nhlcli.hierarchy.induced_source",)
_import_plugins()
