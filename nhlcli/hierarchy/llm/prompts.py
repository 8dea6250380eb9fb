"""The prompt texts, versioned: PROMPT_VERSION is part of every cache key and of the tree
provenance.

Change PROMPT_VERSION whenever a text here changes, so that cached answers to the old prompts are
not reused. Every user prompt ends with a `TASK (JSON):` block stating the task machine-readably
(the kind, the classes, the levels and counts); the prose above it explains the same to the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

PROMPT_VERSION = "nhl-llm/1"

SYSTEM = (
    "You organise image classification classes into a category hierarchy for a hierarchical neural "
    "network: classes that look alike and belong together semantically share a branch. Visual "
    "similarity matters as much as taxonomy. Use short, descriptive English group names. "
    "Answer with one JSON object and nothing else."
)


def _task_block(task: dict[str, object]) -> str:
    return "TASK (JSON):\n" + json.dumps(task, ensure_ascii=False)


def _context_line(context: Sequence[str]) -> str:
    if not context:
        return ""
    return f"All these classes belong to the group {' > '.join(context)}.\n"


def _count_lines(depth: int, counts: Sequence[int | None]) -> str:
    lines = []
    for level in range(1, depth + 1):
        want = counts[level - 1] if level - 1 < len(counts) else None
        what = "classes" if level == depth else f"level-{level + 1} groups"
        if want is None:
            amount = "a sensible number of groups (you choose)"
        else:
            amount = f"exactly {want} group{'s' if want != 1 else ''} in total"
        lines.append(f"- level {level}: {amount}; each holds {what}")
    return "\n".join(lines)


def _shape_example(depth: int) -> str:
    inner: str = '{"name": "...", "classes": ["<class>", ...]}'
    for _ in range(depth - 1):
        inner = '{"name": "...", "groups": [' + inner + ", ...]}"
    return '{"groups": [' + inner + ", ...]}"


def grouping_prompt(
    labels: Sequence[str], depth: int, counts: Sequence[int | None], context: Sequence[str] = ()
) -> str:
    """Group all classes into `depth` nested levels of groups in one answer."""
    n = len(labels)
    return (
        f"Group the {n} image classes below into a hierarchy with {depth} level"
        f"{'s' if depth > 1 else ''} of groups.\n"
        f"{_context_line(context)}"
        f"{_count_lines(depth, counts)}\n"
        "Rules: every class exactly once; use the class names exactly as written (including any "
        "part in parentheses); no other classes; no empty groups; group names unique within a "
        "level.\n"
        f"Answer shape: {_shape_example(depth)}\n\n"
        + _task_block(
            {
                "kind": "group",
                "levels_of_groups": depth,
                "groups_per_level": list(counts[:depth]) + [None] * (depth - len(counts)),
                "context": list(context),
                "classes": list(labels),
            }
        )
    )


def proposal_prompt(labels: Sequence[str], count: int | None, context: Sequence[str] = ()) -> str:
    """Name the top-level groups for a set too large to group in one answer."""
    amount = f"exactly {count}" if count is not None else "a sensible number of"
    return (
        f"Here are {len(labels)} image classes. Propose {amount} top-level groups that together "
        "cover all of them; the classes will be sorted into your groups afterwards, in batches.\n"
        f"{_context_line(context)}"
        "Give each group a unique short name and a one-sentence description of what belongs in it. "
        "Do not list the classes.\n"
        'Answer shape: {"groups": [{"name": "...", "description": "..."}, ...]}\n\n'
        + _task_block(
            {"kind": "propose", "groups": count, "context": list(context), "classes": list(labels)}
        )
    )


def assignment_prompt(
    labels: Sequence[str],
    groups: Sequence[tuple[str, str]],
    context: Sequence[str] = (),
) -> str:
    """Put each class of a batch into one of the given groups."""
    listing = "\n".join(f"- {name}: {desc}" if desc else f"- {name}" for name, desc in groups)
    return (
        f"Put each of the {len(labels)} image classes below into exactly one of these groups:\n"
        f"{listing}\n"
        f"{_context_line(context)}"
        "Rules: every class exactly once; use the class and group names exactly as written; no new "
        "groups; groups that get no class may be left out.\n"
        'Answer shape: {"groups": [{"name": "<group>", "classes": ["<class>", ...]}, ...]}\n\n'
        + _task_block(
            {
                "kind": "assign",
                "groups": [name for name, _ in groups],
                "context": list(context),
                "classes": list(labels),
            }
        )
    )


def placement_prompt(
    labels: Sequence[str],
    groups: Sequence[tuple[str, str]],
    wordnet_notes: Sequence[str],
    keep: str,
) -> str:
    """Hybrid: place each class WordNet is unsure about into an existing group (or keep it)."""
    listing = "\n".join(f"- {name}: {desc}" if desc else f"- {name}" for name, desc in groups)
    notes = "\n".join(f"- {lab}: {note}" for lab, note in zip(labels, wordnet_notes, strict=True))
    return (
        "A category tree was built from WordNet. Its groups (full path, then example members):\n"
        f"{listing}\n"
        f"WordNet is unsure where these {len(labels)} classes belong (several parents, or alone "
        f"in a group of their own):\n{notes}\n"
        "Put each of these classes into the group where it fits best, visually and semantically. "
        f"Use the group '{keep}' for a class that truly fits none of the groups: it then stays "
        "where WordNet put it.\n"
        "Rules: every class exactly once; use the class and group names exactly as written; no new "
        "groups; groups that get no class may be left out.\n"
        'Answer shape: {"groups": [{"name": "<group>", "classes": ["<class>", ...]}, ...]}\n\n'
        + _task_block(
            {
                "kind": "place",
                "groups": [name for name, _ in groups],
                "keep": keep,
                "classes": list(labels),
            }
        )
    )


def repair_prompt(problems: Sequence[str]) -> str:
    """Sent after an invalid answer: its specific problems, and a request for the whole answer."""
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"Your answer has {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n{listed}\n"
        "Answer again with the complete corrected JSON object (all groups and all classes), "
        "nothing else."
    )
