"""`build_llm_tree`: a levelled category tree from a language model (plan: strategy.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet
from nhlcli.hierarchy.levelling import TODAY, provenance
from nhlcli.hierarchy.llm.assemble import groups_to_tree
from nhlcli.hierarchy.llm.cache import sha256_of
from nhlcli.hierarchy.llm.client import SEED
from nhlcli.hierarchy.llm.labels import make_labels
from nhlcli.hierarchy.llm.prompts import PROMPT_VERSION
from nhlcli.hierarchy.llm.session import BuildReport, ProgressFn, Session
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.hierarchy.llm.strategy import group_classes
from nhlcli.hierarchy.sources import DEFAULT_LEVELS, SourceContext, TreeSource, register
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.setting_fields import setting


@dataclass
class LLMOptions(LLMSettings):
    """The options of the llm and hybrid tree sources: the model settings, plus request size."""

    batch_size: int = setting(  # larger sets are split, see strategy.py
        200,
        "Classes per request; larger sets are split.",
        flag="--llm-batch-size",
        aliases=("--batch-size",),
    )
    date: str | None = TODAY  # provenance date: "today", None (left out) or a fixed string

    def problems(self) -> list[str]:
        p = super().problems()
        if self.batch_size < 2:
            p.append("--llm-batch-size must be at least 2")
        return p


def requested_group_counts(
    num_classes: int, levels: int, groups: Sequence[int] | None
) -> list[int | None]:
    """The requested group count per group level (None: the model chooses), or NhlError."""
    if levels < 1:
        raise NhlError(f"--levels must be at least 1 (got {levels})")
    wanted: list[int | None] = list(groups or [])
    if len(wanted) > levels - 1:
        raise NhlError(
            f"--groups gives {len(wanted)} count(s) but a {levels}-level tree has "
            f"{levels - 1} level(s) of groups"
        )
    last = 1
    for i, k in enumerate(wanted, start=1):
        if k is None:
            continue
        if k < last:
            raise NhlError(
                f"--groups: level {i} needs at least {last} group(s) (one per group above), got {k}"
            )
        if k > num_classes:
            raise NhlError(
                f"--groups: level {i} asks for {k} groups but there are only {num_classes} classes"
            )
        last = k
    return wanted + [None] * (levels - 1 - len(wanted))


def llm_provenance(
    session: Session,
    source: str,
    classes: ClassSet,
    levels: int,
    groups: Sequence[int] | None,
    options: LLMOptions,
    **extra: Any,
) -> dict[str, Any]:
    """What the tree records: no run-dependent counters (a cached rebuild gives the same tree)."""
    params = {
        "classes": classes.name,
        "num_classes": len(classes),
        "levels": levels,
        "groups": list(groups) if groups else None,
        "batch_size": options.batch_size,
    }
    llm = {
        "model": session.model,
        "server": session.server,
        "prompt_version": PROMPT_VERSION,
        "temperature": 0,
        "seed": SEED,
        "exchange_sha256": sha256_of(session.report.exchange_hashes),
        "answers": len(session.report.exchange_hashes),
    }
    return provenance(source, params, date=options.date, **extra, llm=llm)


def build_llm_tree(
    classes: ClassSet,
    levels: int,
    groups: list[int] | None,
    options: LLMOptions,
    progress: ProgressFn | None = None,
    report: BuildReport | None = None,
) -> Tree:
    """A tree with exactly `levels` levels whose groups the model chose and named.

    progress(done, total, what) is called as answers arrive; `report` receives the request counts
    and notes for the user.
    """
    report = report if report is not None else BuildReport()
    counts = requested_group_counts(len(classes), levels, groups)
    session = options.session(progress, report)
    try:
        if levels == 1:  # no groups: nothing to ask
            found = []
        else:
            labels = make_labels(classes.classes)
            found = group_classes(
                session,
                labels,
                classes.wnids,
                levels - 1,
                counts,
                options.batch_size,
                notes=report.notes,
            )
    finally:
        session.close()
    report.llm_classes = len(classes) if levels > 1 else 0
    prov = llm_provenance(session, "llm", classes, levels, groups, options)
    if levels == 1:
        return Tree([TreeNode(c.wnid, c.name, None) for c in classes.classes], [], prov)
    tree = groups_to_tree(classes.classes, found, prov)
    tree.require_levels(levels)
    return tree


# ------------------------------------------------------------------------------ the source
def tree_source_build(
    build: Callable[..., Tree],
) -> Callable[[ClassSet, int | None, list[int] | None, LLMOptions, SourceContext], Tree]:
    """A `TreeSource` build of an LLM builder: the context's date, progress, report and notes."""

    def source_build(
        classes: ClassSet, levels: int | None, groups: list[int] | None, opts: LLMOptions,
        ctx: SourceContext,
    ) -> Tree:  # fmt: skip
        report = ctx.report if isinstance(ctx.report, BuildReport) else BuildReport()
        opts = dataclasses.replace(opts, date=ctx.date)
        n = DEFAULT_LEVELS if levels is None else levels
        try:
            return build(classes, n, groups, opts, ctx.progress, report)
        finally:
            ctx.notes.extend(report.notes)

    return source_build


register(
    TreeSource("llm", "a chat model (OpenAI API)", LLMOptions, tree_source_build(build_llm_tree))
)
