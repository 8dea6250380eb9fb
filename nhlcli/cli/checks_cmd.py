"""`nhl checks`: what a user's environment has and lacks."""

from __future__ import annotations

import typer
from rich.table import Table

from nhlcli.cli.common import JSON_OPTION, console, examples, print_json, safe
from nhlcli.environment import environment_checks


def register(app: typer.Typer) -> None:
    app.command("checks", epilog=examples("nhl checks", "nhl checks --json"))(checks)


def checks(json_out: bool = JSON_OPTION) -> None:
    """Report the environment nhl needs: python, torch and GPUs, fvcore, WordNet data, openai."""
    rows = environment_checks()
    if json_out:
        print_json(rows)
        return

    table = Table("", "component", "detail", title="nhl checks")
    for r in rows:
        ok = "[green]ok[/]" if r["ok"] else "[yellow]--[/]"
        table.add_row(ok, safe(r["item"]), safe(r["detail"]))
    console.print(table)
