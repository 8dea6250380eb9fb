"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import re

MAX_SHOWN_PROBLEMS = 10  # a message names the first ones and counts the rest
MAX_PROBLEM_CHARS = 300


class NhlError(Exception):
    """Bad input or an unusable file: shown to the user as a one-line message, exit code 2.

    `problems` holds every individual problem when several were found at once (a class file with
    several bad lines, a tree with several defects); the message names the first
    `MAX_SHOWN_PROBLEMS` of them and counts the rest, so it stays short however many there are.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = f"{message}: " + "; ".join(summarize(self.problems))
        super().__init__(message)


class MissingWordNetError(NhlError):
    """NLTK's WordNet corpus is not installed where NLTK looks."""


def summarize(items: list[str], limit: int = MAX_SHOWN_PROBLEMS) -> list[str]:
    """The first `limit` items (each cut to a few hundred characters) and "N more" for the rest."""
    shown = [shorten(str(p)) for p in items[:limit]]
    if len(items) > limit:
        shown.append(f"and {len(items) - limit} more")
    return shown


def shorten(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(error: BaseException, limit: int = 160) -> str:
    """`Kind: first line of the message` of a library's exception (torch's are many lines)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return shorten(text, limit)


def write_reason(error: BaseException) -> str:
    """Why a write failed, in the system's words (`No space left on device`): an OSError's text,
    or the one inside a safetensors write error."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    found = re.search(r"I/O error: (.+?)(?: \(os error \d+\))?$", str(error).strip())
    return found.group(1) if found else first_line(error)
