"""Shared CLI plumbing: consoles, JSON output, option types."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def examples(*lines: str) -> str:
    """A help epilog with examples (Typer shows it under the options)."""
    body = "\n\n".join(f"  $ {line}" for line in lines)
    return f"Examples:\n\n{body}"
