"""Ask, validate, repair: one validated answer per request, from the cache or from the model.

An invalid answer goes back to the model with the list of its problems and a request for the whole
corrected answer, up to `max_repairs` times; after that the build fails with one NhlError listing
what was still wrong. Only validated answers are cached; a cached answer is validated again on use.

What a repair sends back is bounded: the invalid answer is quoted up to QUOTE_CHARS characters (with
a note saying how long it was), and the repair prompt lists at most REPAIR_PROBLEMS problems of at
most PROBLEM_CHARS characters each (a problem can quote a name the model made up).
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
SHOW_PROBLEMS = 10  # in the error message
REPAIR_PROBLEMS = 50  # in a repair prompt
PROBLEM_CHARS = 500
QUOTE_CHARS = 20_000  # of an invalid answer, in the conversation a repair sends (a valid answer
# for a 200-class batch is about 10,000 characters)


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
        messages.append({"role": "assistant", "content": quoted(reply.text)})
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
        messages.append(
            {"role": "user", "content": repair_prompt(first_problems(problems, REPAIR_PROBLEMS))}
        )
    raise NhlError(
        f"{request.what}: the answer of model '{session.model}' at {session.server} is still "
        f"invalid after {session.max_repairs} repair(s); nothing was written",
        first_problems(problems, SHOW_PROBLEMS),
    )


def quoted(answer: str) -> str:
    """The answer as the conversation keeps it: whole, or its first QUOTE_CHARS and a note."""
    if len(answer) <= QUOTE_CHARS:
        return answer
    return (
        f"{answer[:QUOTE_CHARS]}\n[nhl: cut here; this answer was {len(answer):,} characters long, "
        f"only its first {QUOTE_CHARS:,} are quoted]"
    )


def first_problems(problems: list[str], limit: int) -> list[str]:
    """The first `limit` problems, each cut to PROBLEM_CHARS, and a count of the rest."""
    shown = [p if len(p) <= PROBLEM_CHARS else p[: PROBLEM_CHARS - 3] + "..." for p in problems]
    if len(shown) > limit:
        shown[limit:] = [f"and {len(problems) - limit} more problems"]
    return shown


def _record(session: Session, request: Request, exchange: str) -> None:
    session.report.steps += 1
    session.report.exchange_hashes.append(exchange)
    session.step_done(request.what)
