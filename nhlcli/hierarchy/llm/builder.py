"""`build_llm_tree`: a levelled category tree from a language model (plan: strategy.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet
from nhlcli.hierarchy.levelling import TODAY, provenance
from nhlcli.hierarchy.llm.assemble import groups_to_tree
from nhlcli.hierarchy.llm.cache import sha256_of
from nhlcli.hierarchy.llm.client import SEED, RetryPolicy
from nhlcli.hierarchy.llm.labels import make_labels
from nhlcli.hierarchy.llm.prompts import PROMPT_VERSION
from nhlcli.hierarchy.llm.session import BuildReport, ProgressFn, Session
from nhlcli.hierarchy.llm.strategy import group_classes
from nhlcli.hierarchy.tree import Tree, TreeNode


@dataclass
class LLMOptions:
    model: str = "gpt-4o"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI
    api_key_env: str = "OPENAI_API_KEY"
    max_repairs: int = 3
    cache_dir: Path | None = None  # None: $NHL_CACHE_DIR, else the user cache directory
    use_cache: bool = True
    refresh: bool = False  # ask again even when cached (and store the new answers)
    timeout: float = 120.0  # seconds per request
    max_retries: int = 4  # per request, for timeouts, 429, 5xx, dropped connections
    retry_backoff: float = 1.0  # first wait in seconds, doubling per retry
    batch_size: int = 200  # classes per request (larger sets are split, see strategy.py)
    date: str | None = TODAY  # provenance date: "today", None (left out) or a fixed string

    def check(self) -> None:
        problems = []
        if not self.model.strip():
            problems.append("--model must not be empty")
        if self.max_repairs < 0:
            problems.append("--max-repairs must be 0 or more")
        if self.timeout <= 0:
            problems.append("--timeout must be positive")
        if self.max_retries < 0:
            problems.append("--max-retries must be 0 or more")
        if self.batch_size < 2:
            problems.append("--batch-size must be at least 2")
        if problems:
            raise NhlError("bad model options", problems)


@dataclass
class Call:
    """The options of one build call, after `resolve_call`."""

    options: LLMOptions
    progress: ProgressFn | None
    report: BuildReport
    notes_out: list[str] | None  # where to copy the report's notes at the end (dict callers)


def resolve_call(
    options: LLMOptions | Mapping[str, Any],
    progress: ProgressFn | None,
    report: BuildReport | None,
) -> Call:
    """Accept LLMOptions, or the dict of `nhlcli.hierarchy.builders` (`BuildRequest.options`):
    LLMOptions fields by name, plus `progress`, `report` and `notes` (a list for one-line notes)."""
    if isinstance(options, LLMOptions):
        return Call(options, progress, report if report is not None else BuildReport(), None)
    known = {f.name for f in fields(LLMOptions)}
    extra = {"progress", "report", "notes"}
    unknown = sorted(set(options) - known - extra)
    if unknown:
        raise TypeError(f"unknown LLM options: {', '.join(unknown)}")
    opts = LLMOptions(**{k: v for k, v in options.items() if k in known})
    rep = options.get("report") or report or BuildReport()
    return Call(opts, options.get("progress") or progress, rep, options.get("notes"))


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


def new_session(options: LLMOptions, progress: ProgressFn | None, report: BuildReport) -> Session:
    options.check()
    return Session(
        model=options.model,
        base_url=options.base_url,
        api_key_env=options.api_key_env,
        timeout=options.timeout,
        retry=RetryPolicy(options.max_retries, options.retry_backoff),
        max_repairs=options.max_repairs,
        cache_dir=options.cache_dir,
        use_cache=options.use_cache,
        refresh=options.refresh,
        progress=progress,
        report=report,
    )


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
    options: LLMOptions | Mapping[str, Any],
    progress: ProgressFn | None = None,
    report: BuildReport | None = None,
) -> Tree:
    """A tree with exactly `levels` levels whose groups the model chose and named.

    progress(done, total, what) is called as answers arrive; `report` receives the request counts
    and notes for the user.
    """
    return run_build(_build_llm_tree, classes, levels, groups, options, progress, report)


def run_build(
    build: Callable[..., Tree],
    classes: ClassSet,
    levels: int,
    groups: list[int] | None,
    options: LLMOptions | Mapping[str, Any],
    progress: ProgressFn | None,
    report: BuildReport | None,
) -> Tree:
    """Resolve the call's options, run `build`, and hand its notes to the caller's list."""
    call = resolve_call(options, progress, report)
    try:
        return build(classes, levels, groups, call.options, call.progress, call.report)
    finally:
        if call.notes_out is not None:
            call.notes_out.extend(call.report.notes)


def _build_llm_tree(
    classes: ClassSet,
    levels: int,
    groups: list[int] | None,
    options: LLMOptions,
    progress: ProgressFn | None,
    report: BuildReport,
) -> Tree:
    counts = requested_group_counts(len(classes), levels, groups)
    session = new_session(options, progress, report)
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
