"""How a class set is split into requests (top-down), so that no answer has to be long.

- A set of at most `batch_size` classes is grouped in ONE request: the whole nested grouping with
  all its levels.
- A larger set is done top-down: (1) a *proposal* request sees all class names and names the
  top-level groups (with a one-line description each, no classes: a short answer); (2) *assignment*
  requests put the classes, `batch_size` at a time, into those groups; proposed groups that receive
  no class are dropped (noted in the report); (3) each group is then handled the same way for the
  remaining levels, with the group's path as context. ImageNet-1k at 3 levels with batch size 200
  typically takes 1 proposal + 5 assignments + one grouping request per top-level group.
- Requested group counts per level (`--groups 17,161`) are totals for the level; for sub-problems
  they are shared out in proportion to the groups' sizes (at least one group per parent, at most
  one per class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

from nhlcli.hierarchy.llm.labels import ClassLabels
from nhlcli.hierarchy.llm.prompts import assignment_prompt, grouping_prompt, proposal_prompt
from nhlcli.hierarchy.llm.repair import Request, ask_until_valid
from nhlcli.hierarchy.llm.schema import assignment_schema, grouping_schema, proposal_schema
from nhlcli.hierarchy.llm.session import Session
from nhlcli.hierarchy.llm.validate import (
    Group,
    validate_assignment,
    validate_grouping,
    validate_proposal,
)

Counts = Sequence[int | None]


def _where(context: Sequence[str]) -> str:
    return f" in '{' > '.join(context)}'" if context else ""


def group_classes(
    session: Session,
    labels: ClassLabels,
    wnids: Sequence[str],
    depth: int,
    counts: Counts,
    batch_size: int,
    context: Sequence[str] = (),
    notes: list[str] | None = None,
) -> list[Group]:
    """`depth` levels of groups over the classes `wnids` (all of them, each once)."""
    counts = list(counts) + [None] * (depth - len(counts))
    sub = labels.subset(wnids)
    if len(wnids) <= batch_size:
        session.plan(1)
        request = Request(
            "nhl_grouping",
            f"grouping {len(wnids)} classes{_where(context)}",
            grouping_prompt(sub.labels, depth, counts, context),
            grouping_schema(depth, sub.labels),
        )
        return ask_until_valid(
            session, request, partial(validate_grouping, labels=sub, depth=depth, counts=counts)
        )
    batches = [list(wnids[i : i + batch_size]) for i in range(0, len(wnids), batch_size)]
    session.plan(1 + len(batches))
    proposal = ask_until_valid(
        session,
        Request(
            "nhl_proposal",
            f"naming the top groups of {len(wnids)} classes{_where(context)}",
            proposal_prompt(sub.labels, counts[0], context),
            proposal_schema(),
        ),
        partial(validate_proposal, count=counts[0], num_classes=len(wnids)),
    )
    names = [name for name, _ in proposal]
    members: dict[str, list[str]] = {name: [] for name in names}
    for i, batch in enumerate(batches, start=1):
        batch_labels = labels.subset(batch)
        got = ask_until_valid(
            session,
            Request(
                "nhl_assignment",
                f"sorting batch {i}/{len(batches)} into groups{_where(context)}",
                assignment_prompt(batch_labels.labels, proposal, context),
                assignment_schema(names, batch_labels.labels),
            ),
            partial(validate_assignment, labels=batch_labels, group_names=names),
        )
        for name, found in got.items():
            members[name] += found
    order = {w: i for i, w in enumerate(wnids)}
    groups = [
        Group(n, classes=sorted(members[n], key=order.__getitem__)) for n in names if members[n]
    ]
    if len(groups) < len(names) and notes is not None:
        empty = [n for n in names if not members[n]]
        notes.append(
            f"{len(empty)} proposed group(s){_where(context)} received no class and were dropped: "
            + ", ".join(repr(n) for n in empty)
        )
    if depth == 1:
        return groups
    shares = share_counts(counts[1:], [len(g.classes) for g in groups])
    if shares is None:
        shares = [[None] * (depth - 1) for _ in groups]
        if notes is not None and any(c is not None for c in counts[1:]):
            notes.append(f"the requested group counts{_where(context)} could not be shared out")
    for group, sub_counts in zip(groups, shares, strict=True):
        group.groups = group_classes(
            session,
            labels,
            group.classes,
            depth - 1,
            sub_counts,
            batch_size,
            [*context, group.name],
            notes,
        )
        group.classes = []
    return groups


def share_counts(counts: Counts, sizes: Sequence[int]) -> list[list[int | None]] | None:
    """Split each level's total group count over the parents (rows: parents, columns: levels)."""
    rows: list[list[int | None]] = [[] for _ in sizes]
    lower = [1] * len(sizes)
    for total in counts:
        if total is None:
            for row in rows:
                row.append(None)
            continue
        share = apportion(total, sizes, lower)
        if share is None:
            return None
        for row, k in zip(rows, share, strict=True):
            row.append(k)
        lower = share
    return rows


def apportion(total: int, sizes: Sequence[int], lower: Sequence[int]) -> list[int] | None:
    """Integers proportional to sizes summing to total, with lower[i] <= share[i] <= sizes[i]."""
    if not sizes or total < sum(lower) or total > sum(sizes):
        return None
    whole = sum(sizes)
    ideal = [total * s / whole for s in sizes]
    share = [min(max(lo, math.floor(x)), s) for lo, x, s in zip(lower, ideal, sizes, strict=True)]
    while sum(share) < total:
        i = max(
            (j for j in range(len(sizes)) if share[j] < sizes[j]),
            key=lambda j: (ideal[j] - share[j], -j),
        )
        share[i] += 1
    while sum(share) > total:
        i = max(
            (j for j in range(len(sizes)) if share[j] > lower[j]),
            key=lambda j: (share[j] - ideal[j], -j),
        )
        share[i] -= 1
    return share
