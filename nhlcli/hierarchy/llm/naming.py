"""Naming groups that were found elsewhere (by clustering a model's classes) with a chat model.

One request lists every group by id with its member classes; the answer gives one short name per
group: ``{"names": [{"id": "g1.1", "name": "..."}, ...]}``. It is checked (every id exactly once,
no other ids, names non-empty and unique), repaired and cached like every other answer
(`repair.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nhlcli.hierarchy.llm.repair import Request, ask_until_valid
from nhlcli.hierarchy.llm.schema import _object, _string
from nhlcli.hierarchy.llm.session import BuildReport, ProgressFn
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.hierarchy.llm.validate import quoted_list

KIND = "nhl_naming"


def naming_prompt(groups: Sequence[tuple[str, Sequence[str]]]) -> str:
    listing = "\n".join(f"- {gid}: {', '.join(members)}" for gid, members in groups)
    task = {"kind": "name", "groups": [{"id": g, "classes": list(m)} for g, m in groups]}
    return (
        f"These {len(groups)} groups of image classes were found by a neural network that confuses "
        "or sees alike the classes of a group. Give each group a short descriptive English name "
        "(one to four words) for what its classes have in common. A group may contain smaller "
        "groups listed here too.\n"
        f"{listing}\n"
        "Rules: one name per group id, every id exactly once, no other ids, all names different.\n"
        'Answer shape: {"names": [{"id": "<group id>", "name": "..."}, ...]}\n\n'
        "TASK (JSON):\n" + json.dumps(task, ensure_ascii=False)
    )


def naming_schema(ids: Sequence[str]) -> dict[str, Any]:
    item = _object({"id": _string(ids), "name": _string()})
    return _object({"names": {"type": "array", "items": item}})


def check_names(data: Any, ids: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(group id -> name, problems) of an answer."""
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("names"), list):
        return {}, ['the answer must be a JSON object {"names": [...]}']
    wanted = set(ids)
    out: dict[str, str] = {}
    unknown: list[str] = []
    for i, item in enumerate(data["names"]):
        gid = item.get("id") if isinstance(item, dict) else None
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(gid, str) or not isinstance(name, str) or not name.strip():
            problems.append(f"names[{i}] needs a string 'id' and a non-empty 'name'")
            continue
        if gid not in wanted:
            unknown.append(gid)
        elif gid in out:
            problems.append(f"group '{gid}' is named twice")
        else:
            out[gid] = " ".join(name.split())
    if unknown:
        problems.append(f"unknown group ids: {quoted_list(unknown)} (use the ids as given)")
    missing = [g for g in ids if g not in out]
    if missing:
        problems.append(f"groups without a name: {quoted_list(missing)}")
    by_name: dict[str, list[str]] = {}
    for gid, name in out.items():
        by_name.setdefault(name.lower(), []).append(gid)
    for same in by_name.values():
        if len(same) > 1:
            problems.append(f"groups {quoted_list(same)} have the same name; make them different")
    return out, problems


def name_groups(
    settings: LLMSettings,
    groups: Sequence[tuple[str, Sequence[str]]],
    progress: ProgressFn | None = None,
    report: BuildReport | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Names for groups given as (id, member labels); returns (id -> name, provenance of the
    answer: model, server, exchange hash)."""
    from nhlcli.hierarchy.llm.cache import sha256_of
    from nhlcli.hierarchy.llm.client import SEED
    from nhlcli.hierarchy.llm.prompts import PROMPT_VERSION

    report = report if report is not None else BuildReport()
    ids = [g for g, _ in groups]
    request = Request(KIND, f"naming {len(ids)} groups", naming_prompt(groups), naming_schema(ids))
    session = settings.session(progress, report)
    try:
        session.plan(1)
        names = ask_until_valid(session, request, lambda data: check_names(data, ids))
    finally:
        session.close()
    prov = {
        "model": session.model,
        "server": session.server,
        "prompt_version": PROMPT_VERSION,
        "temperature": 0,
        "seed": SEED,
        "exchange_sha256": sha256_of(report.exchange_hashes),
    }
    return names, prov
