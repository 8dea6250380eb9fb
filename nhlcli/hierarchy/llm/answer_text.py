"""Getting the JSON document out of a model's answer text.

Servers in JSON-schema or JSON mode answer with bare JSON; a server in plain text mode may wrap it
in a ```json fenced block or put a sentence around it. Tried in order: the whole text, each fenced
block, the span from the first `{` to the last `}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)```", re.DOTALL)


class AnswerNotJSON(ValueError):
    """The answer holds no JSON object; the message says why (for the repair prompt)."""


def parse_answer_json(text: str) -> Any:
    if not text or not text.strip():
        raise AnswerNotJSON("the answer is empty; answer with the JSON object only")
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first : last + 1])
    first_error: json.JSONDecodeError | None = None
    for cand in candidates:
        try:
            value = json.loads(cand)
        except json.JSONDecodeError as e:
            first_error = first_error or e
            continue
        if isinstance(value, dict):
            return value
    if first_error is not None:
        raise AnswerNotJSON(
            f"the answer is not valid JSON ({first_error.msg} at line {first_error.lineno} "
            f"column {first_error.colno}); answer with one JSON object only"
        )
    raise AnswerNotJSON("the answer is JSON but not an object; answer with one JSON object")
