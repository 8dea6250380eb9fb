"""Cues resolved by a chat model: the question, its schema, and the answer check."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from nhlcli.cues.resolve import CueMatch, no_match_error
from nhlcli.hierarchy.llm.repair import Request
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.hierarchy.tree import Tree

CUE_PROMPT_VERSION = "nhl-cue/1"
CUE_SYSTEM = (
    "You connect cues (a word, a sound, a description, a situation) to the image classes of a "
    "classifier. Given a cue and the list of classes, choose every class the cue clearly points to "
    "and no other; choose none when nothing fits. Answer with one JSON object and nothing else."
)


def cue_prompt(cue: str, labels: Sequence[str]) -> str:
    listing = "\n".join(f"- {label}" for label in labels)
    task = {"kind": "cue", "version": CUE_PROMPT_VERSION, "cue": cue, "classes": len(labels)}
    return (
        f'Cue: "{cue}"\n\n'
        f"Which of the {len(labels)} image classes below does this cue point to? For a sound, "
        "choose what makes it; for a description or a place, the things it describes. Copy each "
        "class label exactly as written and give a short reason.\n"
        'Answer as {"classes": [{"label": "<class label>", "reason": "..."}, ...]}.\n\n'
        f"Classes:\n{listing}\n\nTASK (JSON):\n{json.dumps(task, ensure_ascii=False)}"
    )


def cue_schema(labels: Sequence[str]) -> dict[str, Any]:
    from nhlcli.hierarchy.llm.schema import MAX_ENUM

    label: dict[str, Any] = {"type": "string"}
    if 0 < len(labels) <= MAX_ENUM:
        label["enum"] = list(labels)
    item = {
        "type": "object",
        "properties": {"label": label, "reason": {"type": "string"}},
        "required": ["label", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"classes": {"type": "array", "items": item}},
        "required": ["classes"],
        "additionalProperties": False,
    }


def check_cue_answer(data: Any, labels: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """Parse {"classes": [{"label", "reason"}]} into (wnid, reason) pairs, or list the problems."""
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        return [], ['the answer must be a JSON object {"classes": [...]}']
    out: list[tuple[str, str]] = []
    for i, item in enumerate(data["classes"]):
        if not isinstance(item, dict):
            problems.append(f"classes[{i}] is not an object with 'label' and 'reason'")
            continue
        resolved = labels.resolve(item.get("label"))
        if resolved.wnid is None:
            problems.append(f"classes[{i}]: {resolved.problem}")
            continue
        reason = item.get("reason")
        reason = " ".join(reason.split()) if isinstance(reason, str) else ""
        if resolved.wnid not in {w for w, _ in out}:
            out.append((resolved.wnid, reason))
    return out, problems


def resolve_llm_cues(
    cues: Iterable[str], tree: Tree, settings: LLMSettings
) -> tuple[list[list[CueMatch]], list[str]]:
    """Ask the chat model which classes each cue points to: (matches per cue, notes)."""
    from functools import partial

    from nhlcli.hierarchy.classsets import ClassRef
    from nhlcli.hierarchy.llm.labels import make_labels
    from nhlcli.hierarchy.llm.repair import ask_until_valid
    from nhlcli.hierarchy.llm.session import BuildReport

    labels = make_labels([ClassRef(c.id, c.name) for c in tree.classes])
    report = BuildReport()
    session = settings.session(None, report)
    out: list[list[CueMatch]] = []
    try:
        for cue in cues:
            request = CueRequest(
                "nhl_cue",
                f"resolving cue '{cue}'",
                cue_prompt(cue, labels.labels),
                cue_schema(labels.labels),
            )
            chosen = ask_until_valid(session, request, partial(check_cue_answer, labels=labels))
            if not chosen:
                raise no_match_error(tree, cue, f"according to model '{settings.model}'")
            out.append(
                [
                    CueMatch(wnid, tree.node(wnid).name, cue, f"{settings.model}: {reason}")
                    for wnid, reason in chosen
                ]
            )
    finally:
        session.close()
    notes = [
        f"llm {settings.model} at {session.server}: {report.steps} answer(s), "
        f"{report.cached_steps} from the cache, {report.requests} request(s)"
    ]
    return out, notes


class CueRequest(Request):
    """A cue question: the tree builder's request (cache key, repairs), the cue system prompt."""

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": CUE_SYSTEM},
            {"role": "user", "content": self.prompt},
        ]
