"""The tree sources: a typed registry behind `nhl build-tree --source NAME` and `nhl.build_tree`.

A source is one `TreeSource` entry: a name, a one-line description, a dataclass of its own typed
options, and a build function `(classes, levels, groups, options, context) -> Tree`. `context`
carries what every build has: the provenance date, a progress callback, and a list for one-line
notes to the user. Every source registers itself in its own module
(`register(TreeSource(...))`): `wordnet_source.py`, `table_source.py`, `llm/builder.py`,
`llm/hybrid.py`, `induced_source.py`; `BUILTIN_MODULES` below lists them so they load on first use.

Options are fields of the options dataclass. A field declared with
`nhlcli.setting_fields.setting(default, help, flag=...)` is also a `nhl build-tree` option, its
help, type and default taken from the declaration (`nhlcli/cli/build_tree_cmd.py`); a field that
is itself a settings dataclass (`InducedOptions.llm`) contributes its own declared fields. The
levels, groups and classes every source takes are arguments of the build, not options.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet
from nhlcli.hierarchy.levelling import TODAY
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


SOURCES: dict[str, TreeSource] = {}  # every source registered so far; `sources()`: all of them

#: the modules of the built-in sources, each calling `register` when imported
BUILTIN_MODULES = (
    "nhlcli.hierarchy.wordnet_source",
    "nhlcli.hierarchy.table_source",
    "nhlcli.hierarchy.llm.builder",
    "nhlcli.hierarchy.llm.hybrid",
    "nhlcli.hierarchy.induced_source",
)


def register(source: TreeSource) -> TreeSource:
    """Add a source (a name registered again is replaced)."""
    SOURCES[source.name] = source
    return source


def sources() -> dict[str, TreeSource]:
    """Every source by name, in name order: the built-in ones and any registered elsewhere."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(sorted(SOURCES.items()))


def get_source(name: str) -> TreeSource:
    known = sources()
    source = known.get(name)
    if source is None:
        names = list(known)
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
