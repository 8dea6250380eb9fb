"""Checking the model's answers. Each check returns the parsed result and a list of specific
problems.

The problems are written for the model (they go back to it in the repair prompt) and for the user
(the final error lists them): every class exactly once, no unknown or invented classes, no empty
groups, group names unique per level, the requested number of levels and of groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nhlcli.hierarchy.classsets import normalize_name
from nhlcli.hierarchy.llm.labels import ClassLabels

SHOW_AT_MOST = 40  # labels listed in one problem line


@dataclass
class Group:
    """A group from an answer: either sub-groups or (innermost) classes by wnid."""

    name: str
    groups: list[Group] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def all_classes(self) -> list[str]:
        if self.groups:
            return [w for g in self.groups for w in g.all_classes()]
        return list(self.classes)


def quoted_list(items: Sequence[str], limit: int = SHOW_AT_MOST) -> str:
    shown = ", ".join(f"'{x}'" for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _root_groups(data: Any, problems: list[str]) -> list[Any] | None:
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        problems.append('the answer must be a JSON object {"groups": [...]}')
        return None
    return data["groups"]


def _name_of(item: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(item, dict):
        problems.append(f"{where} is not an object with 'name'")
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where} has no name")
        return None
    return " ".join(name.split())


class _Placement:
    """Which groups each class was put in, and label problems, while walking an answer."""

    def __init__(self, labels: ClassLabels, problems: list[str]) -> None:
        self.labels = labels
        self.problems = problems
        self.where: dict[str, list[str]] = {}

    def place(self, raw: Any, group: str) -> str | None:
        found = self.labels.resolve(raw)
        if found.wnid is None:
            self.problems.append(f"in group '{group}': {found.problem}")
            return None
        self.where.setdefault(found.wnid, []).append(group)
        return found.wnid

    def finish(self) -> None:
        for wnid, groups in self.where.items():
            if len(groups) > 1:
                self.problems.append(
                    f"'{self.labels.label(wnid)}' appears {len(groups)} times "
                    f"(in {quoted_list(groups)}); put every class in exactly one group"
                )
        missing = [self.labels.label(w) for w in self.labels.wnids if w not in self.where]
        if missing:
            n = len(missing)
            self.problems.append(
                f"{n} class{'es are' if n > 1 else ' is'} missing: {quoted_list(missing)}"
            )


def _nested_labels(item: Any) -> list[Any]:
    """Every class label anywhere inside an answer item (counts placements in misshapen groups)."""
    if not isinstance(item, dict):
        return []
    out = list(item["classes"]) if isinstance(item.get("classes"), list) else []
    for sub in item.get("groups", []) if isinstance(item.get("groups"), list) else []:
        out += _nested_labels(sub)
    return out


def validate_grouping(
    data: Any, labels: ClassLabels, depth: int, counts: Sequence[int | None] = ()
) -> tuple[list[Group], list[str]]:
    """A `depth`-level grouping of exactly the classes in `labels`.

    counts[i] is the number of groups required at level i+1 (None: any number).
    """
    problems: list[str] = []
    items = _root_groups(data, problems)
    if items is None:
        return [], problems
    placement = _Placement(labels, problems)
    names: list[dict[str, list[str]]] = [{} for _ in range(depth)]

    def walk(raw_items: list[Any], level: int, parent: str | None) -> list[Group]:
        out: list[Group] = []
        under = f" under '{parent}'" if parent else ""
        for i, item in enumerate(raw_items, start=1):
            name = _name_of(item, f"group {i} at level {level}{under}", problems)
            if name is None:
                continue
            names[level - 1].setdefault(normalize_name(name), []).append(name)
            key = "groups" if level < depth else "classes"
            content = item.get(key)
            if not isinstance(content, list):
                if level < depth and isinstance(item.get("classes"), list):
                    problems.append(
                        f"group '{name}' (level {level}) lists classes directly, but {depth} "
                        f"levels of groups are required: put its classes into level-{level + 1} "
                        "groups"
                    )
                elif level == depth and isinstance(item.get("groups"), list):
                    problems.append(
                        f"group '{name}' (level {level}) has sub-groups, but only {depth} "
                        f"level{'s' if depth > 1 else ''} of groups are wanted: list its classes"
                    )
                else:
                    problems.append(f"group '{name}' (level {level}) has no '{key}' list")
                for raw in _nested_labels(item):
                    placement.place(raw, name)
                continue
            if not content:
                problems.append(f"group '{name}' (level {level}) is empty")
            if level < depth:
                out.append(Group(name, groups=walk(content, level + 1, name)))
            else:
                wnids = [placement.place(raw, name) for raw in content]
                out.append(Group(name, classes=[w for w in wnids if w is not None]))
        return out

    groups = walk(items, 1, None)
    placement.finish()
    for level, seen in enumerate(names, start=1):
        for variants in seen.values():
            if len(variants) > 1:
                problems.append(
                    f"the group name '{variants[0]}' is used {len(variants)} times at level "
                    f"{level}; group names must be unique per level"
                )
    for level, want in enumerate(counts, start=1):
        have = sum(len(v) for v in names[level - 1].values()) if level <= depth else 0
        if want is not None and have != want:
            problems.append(f"level {level} has {have} groups but exactly {want} are required")
    return groups, problems


def validate_proposal(
    data: Any, count: int | None, num_classes: int
) -> tuple[list[tuple[str, str]], list[str]]:
    """Top-level group names (with a short description each) for a large class set."""
    problems: list[str] = []
    items = _root_groups(data, problems)
    if items is None:
        return [], problems
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items, start=1):
        name = _name_of(item, f"group {i}", problems)
        if name is None:
            continue
        key = normalize_name(name)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            problems.append(f"the group name '{name}' is used more than once; names must be unique")
        if seen[key] == 1:
            desc = item.get("description")
            out.append((name, " ".join(desc.split()) if isinstance(desc, str) else ""))
    if count is not None and len(out) != count:
        problems.append(f"there are {len(out)} groups but exactly {count} are required")
    elif count is None and not 2 <= len(out) <= num_classes:
        problems.append(f"propose between 2 and {num_classes} groups (got {len(out)})")
    return out, problems


def validate_assignment(
    data: Any, labels: ClassLabels, group_names: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Each class of `labels` put into one of the given groups; groups may stay empty."""
    problems: list[str] = []
    items = _root_groups(data, problems)
    if items is None:
        return {}, problems
    known = {normalize_name(g): g for g in group_names}
    out: dict[str, list[str]] = {g: [] for g in group_names}
    placement = _Placement(labels, problems)
    for i, item in enumerate(items, start=1):
        name = _name_of(item, f"entry {i}", problems)
        if name is None:
            continue
        group = known.get(normalize_name(name))
        if group is None:
            problems.append(
                f"'{name}' is not one of the given groups; use only: "
                f"{quoted_list(list(group_names))}"
            )
            for raw in _nested_labels(item):
                placement.place(raw, name)
            continue
        content = item.get("classes")
        if not isinstance(content, list):
            problems.append(f"group '{group}' has no 'classes' list")
            continue
        for raw in content:
            wnid = placement.place(raw, group)
            if wnid is not None:
                out[group].append(wnid)
    placement.finish()
    return out, problems
