"""Shared CLI plumbing: consoles, JSON output, option types."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
MAX_ERROR_CHARS = 2000  # one line, however many problems


def safe(text: object) -> str:
    """User text (a file or class name) made inert inside rich markup: `[bold]` prints as is."""
    return escape(str(text))


def print_error(message: object) -> None:
    """The one line a failed command prints: `error: MESSAGE` (markup in it printed literally)."""
    body = " ".join(str(message).split())
    if len(body) > MAX_ERROR_CHARS:
        body = body[: MAX_ERROR_CHARS - 1] + "…"
    line = Text("error:", style="bold red")
    line.append(" " + body)
    err_console.print(line, soft_wrap=True, markup=False, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def examples(*lines: str) -> str:
    """A help epilog with examples (Typer shows it under the options)."""
    body = "\n\n".join(f"  $ {line}" for line in lines)
    return f"Examples:\n\n{body}"
