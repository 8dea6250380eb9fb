"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class NhlError(Exception):
    """Bad input or an unusable file: shown to the user as a one-line message, exit code 2.

    `problems` holds every individual problem when several were found at once (a class file with
    several bad lines, a tree with several defects); the message then summarises them.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = f"{message}: " + "; ".join(self.problems)
        super().__init__(message)


class MissingWordNetError(NhlError):
    """NLTK's WordNet corpus is not installed where NLTK looks."""
