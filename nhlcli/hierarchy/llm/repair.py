"""Ask, validate, repair: one validated answer per request, from the cache or from the model.

An invalid answer goes back to the model with the list of its problems and a request for the whole
corrected answer, up to `max_repairs` times; after that the build fails with one NhlError listing
what was still wrong. Only validated answers are cached; a cached answer is validated again on use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nhlcli.errors import NhlError
from nhlcli.hierarchy.llm.answer_text import AnswerNotJSON, parse_answer_json
from nhlcli.hierarchy.llm.cache import sha256_of
from nhlcli.hierarchy.llm.client import SEED, Message
from nhlcli.hierarchy.llm.prompts import PROMPT_VERSION, SYSTEM, repair_prompt
from nhlcli.hierarchy.llm.session import Session

T = TypeVar("T")
Check = Callable[[Any], "tuple[T, list[str]]"]
SHOW_PROBLEMS = 10


@dataclass(frozen=True)
class Request:
    kind: str  # schema name: nhl_grouping | nhl_proposal | nhl_assignment
    what: str  # for progress and errors, e.g. "grouping 100 classes"
    prompt: str
    schema: dict[str, Any]

    def messages(self) -> list[Message]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.prompt}]


def cache_key(session: Session, request: Request) -> str:
    return sha256_of(
        {
            "server": session.server,
            "model": session.model,
            "prompt_version": PROMPT_VERSION,
            "messages": request.messages(),
            "schema_name": request.kind,
            "schema": request.schema,
            "temperature": 0,
            "seed": SEED,
        }
    )


def ask_until_valid(session: Session, request: Request, check: Check[T]) -> T:
    key = cache_key(session, request)
    if session.cache is not None and session.read_cache:
        entry = session.cache.get(key)
        if entry is not None:
            cached, cached_problems = check(entry["answer"])
            if not cached_problems:
                session.report.cached_steps += 1
                _record(session, request, str(entry.get("exchange_sha256", "")))
                return cached
    client = session.client
    messages = request.messages()
    problems: list[str] = []
    for attempt in range(session.max_repairs + 1):
        if attempt:
            session.report.repairs += 1
        reply = client.complete(messages, request.kind, request.schema)
        messages.append({"role": "assistant", "content": reply.text})
        if reply.finish_reason == "length":
            raise NhlError(
                f"{request.what}: the answer of model '{session.model}' at {session.server} was "
                "cut off at its output limit; use a smaller --batch-size or a model with longer "
                "output"
            )
        data: Any = None
        try:
            data = parse_answer_json(reply.text)
        except AnswerNotJSON as e:
            problems = [f"the model refused: {reply.refusal}"] if reply.refusal else [str(e)]
        else:
            value, problems = check(data)
            if not problems:
                exchange = sha256_of(messages)
                if session.cache is not None:
                    session.cache.put(
                        key,
                        data,
                        {
                            "server": session.server,
                            "model": session.model,
                            "prompt_version": PROMPT_VERSION,
                            "kind": request.kind,
                            "exchange_sha256": exchange,
                        },
                    )
                _record(session, request, exchange)
                return value
        messages.append({"role": "user", "content": repair_prompt(problems)})
    shown = problems[:SHOW_PROBLEMS]
    if len(problems) > SHOW_PROBLEMS:
        shown.append(f"and {len(problems) - SHOW_PROBLEMS} more problems")
    raise NhlError(
        f"{request.what}: the answer of model '{session.model}' at {session.server} is still "
        f"invalid after {session.max_repairs} repair(s); nothing was written",
        shown,
    )


def _record(session: Session, request: Request, exchange: str) -> None:
    session.report.steps += 1
    session.report.exchange_hashes.append(exchange)
    session.step_done(request.what)
