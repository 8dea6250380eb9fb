"""`nhl cutout --cue`: show what the cues selected and ask before cutting (the CLI side of cues)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from nhlcli.cli.common import err_console, print_json, safe
from nhlcli.cues.resolve import CueResolution, resolve_cues
from nhlcli.errors import NhlError
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.selection import saved_model_tree

CUE_SOURCES = ("wordnet", "llm")


def resolve_cue_option(
    checkpoint: str | Path,
    cues: list[str],
    source: str,
    llm: LLMSettings,
) -> CueResolution:
    if source not in CUE_SOURCES:
        raise NhlError(f"--cue-source must be one of {', '.join(CUE_SOURCES)}, not '{source}'")
    tree = saved_model_tree(checkpoint)
    if source == "wordnet":
        with err_console.status("resolving cues with WordNet…"):
            return resolve_cues(cues, tree, "wordnet")
    with err_console.status(f"asking {safe(llm.model)} about the cues…"):
        return resolve_cues(cues, tree, "llm", llm)


def cue_table(res: CueResolution) -> Table:
    table = Table(
        "#", "class", "name", "cue", "matched",
        title=f"cue{'s' if len(res.cues) > 1 else ''} {safe(', '.join(repr(c) for c in res.cues))} "
        f"({res.source}): {_classes(len(res.class_ids))}",
        title_justify="left",
    )  # fmt: skip
    for i, (cid, matches) in enumerate(res.by_class().items()):
        first = matches[0]
        cues = ", ".join(m.cue for m in matches)
        table.add_row(str(i), safe(cid), safe(first.name), safe(cues), safe(first.why))
    return table


def show_and_confirm(
    res: CueResolution,
    classes: str | None,
    yes: bool,
    dry_run: bool,
    checkpoint: str | Path,
    picture: Path | None,
    json_out: bool,
) -> bool:
    """Show the cue selection (stderr); True to go on and cut.

    --dry-run: also draw --picture and print --json, then False. Otherwise ask on stdin unless
    --yes; no answer (stdin closed or empty) is an error with a hint to pass --yes; an explicit no
    exits 1.
    """
    err_console.print(cue_table(res))
    for note in res.notes:
        err_console.print(f"[dim]{safe(note)}[/]")
    if dry_run:
        if picture is not None:
            from nhlcli.hierarchy.drawing import draw_tree

            draw_tree(saved_model_tree(checkpoint), picture, res.class_ids)
            err_console.print(f"wrote {picture} (the selection's paths in red)", markup=False)
        if json_out:
            print_json({"dry_run": True, "cues": res.to_dict()})
        err_console.print("[yellow]dry run[/]: nothing cut out, nothing written")
        return False
    if yes:
        return True
    also = " plus those of --classes" if classes else ""
    err_console.print(
        f"Cut out an expert for these {_classes(len(res.class_ids))}{also}? \\[y/N] ", end=""
    )
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):  # stdin closed or not readable
        answer = ""
    if not answer:
        err_console.print()
        raise NhlError(
            "no answer to the confirmation (stdin is closed or empty): pass --yes to accept the "
            f"{_classes(len(res.class_ids))} the cues selected"
        )
    if answer.strip().lower() in ("y", "yes"):
        return True
    err_console.print("cancelled: nothing written")
    raise typer.Exit(1)


def _classes(n: int) -> str:
    return f"{n} class" if n == 1 else f"{n} classes"
