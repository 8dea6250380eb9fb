"""JSON schemas of the three answers the model gives (sent as `response_format` where supported).

- grouping (`depth` levels of groups): ``{"groups": [{"name": ..., "groups": [... {"name": ...,
  "classes": [label, ...]}]}]}``; the innermost groups list classes, every outer group lists groups.
- proposal: ``{"groups": [{"name": ..., "description": ...}]}`` (top-level group names, no classes).
- assignment: ``{"groups": [{"name": <one of the given groups>, "classes": [label, ...]}]}``.

The schemas are strict (every property required, no extra ones), and list the allowed labels and
group names as enums when there are few enough for servers to accept (OpenAI allows up to 500
values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_ENUM = 500


def _string(values: Sequence[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string"}
    if values is not None and 0 < len(values) <= MAX_ENUM:
        out["enum"] = list(values)
    return out


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _root(group: dict[str, Any]) -> dict[str, Any]:
    return _object({"groups": {"type": "array", "items": group}})


def grouping_schema(depth: int, labels: Sequence[str]) -> dict[str, Any]:
    """Schema of a `depth`-level grouping of the given class labels."""
    if depth < 1:
        raise ValueError("a grouping needs at least one level of groups")
    group = _object({"name": _string(), "classes": {"type": "array", "items": _string(labels)}})
    for _ in range(depth - 1):
        group = _object({"name": _string(), "groups": {"type": "array", "items": group}})
    return _root(group)


def proposal_schema() -> dict[str, Any]:
    return _root(_object({"name": _string(), "description": _string()}))


def assignment_schema(group_names: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    return _root(
        _object(
            {"name": _string(group_names), "classes": {"type": "array", "items": _string(labels)}}
        )
    )


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` argument for a JSON-schema answer."""
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
