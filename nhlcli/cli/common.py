"""Shared CLI plumbing: consoles, JSON output, option types."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from nhlcli.devices import DEFAULT_DEVICE, DEVICE_HELP
from nhlcli.model.presets import baseline_names
from nhlcli.profiling.counters import counters_help

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


# The model argument, the same in every command that takes one.
MODEL_HELP = (
    "A model: a checkpoint or expert folder (config.json + model.safetensors) or a training run "
    "(its best, else last, checkpoint)"
)

# Timing options, the same in `nhl profile --latency` and `nhl cutout --latency`.
LATENCY_BATCH_SIZE: Any = typer.Option(
    8, "--batch-size", "-b", min=1, help="--latency: images per batch."
)
LATENCY_RUNS: Any = typer.Option(
    20, "--runs", min=1, help="--latency: timed runs per model (the median is shown)."
)
LATENCY_WARMUP: Any = typer.Option(3, "--warmup", min=0, help="--latency: untimed warm-up runs.")
LATENCY_DEVICE: Any = typer.Option(DEFAULT_DEVICE, "--device", help=f"--latency: {DEVICE_HELP}")
# `--device` of every command that runs a model (`nhlcli.devices.resolve_device` reads it)
DEVICE_OPTION: Any = typer.Option(DEFAULT_DEVICE, "--device", help=DEVICE_HELP)
# `nhl profile` and `nhl cutout --profile`: which counter, and the comparison row
PROFILE_COUNTER: Any = typer.Option(
    "fvcore",
    "--counter",
    help=escape(counters_help()),  # the table's rows; keep [..] literal
)
PROFILE_BASELINE: Any = typer.Option(
    None,
    "--baseline",
    help=f"Comparison row: {', '.join(baseline_names())} (default: the preset's, else its block "
    "kind's: resnet50, resnet152 for n3hl152, convnextv2-tiny).",
)


@contextmanager
def progress_bar(
    title: str, enabled: bool = True, plain: str | None = None
) -> Iterator[Callable[[int, int], None]]:
    """A transient bar on stderr fed by progress(done, total); it appears at the first call, so
    an error raised before any progress prints one line and nothing else.

    `plain`: where stderr is not a terminal (piped, logged), print this line instead at every
    tenth of the way (``{done}`` and ``{total}`` filled in), so long runs are never silent."""
    if enabled and plain is not None and not err_console.is_terminal:
        last_tenth = -1

        def lines(done: int, total: int) -> None:
            nonlocal last_tenth
            tenth = done * 10 // max(total, 1)
            if tenth != last_tenth:
                last_tenth = tenth
                err_console.print(plain.format(done=done, total=total), markup=False)

        yield lines
        return

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, disable=not (enabled and err_console.is_terminal),
    )  # fmt: skip
    task = bar.add_task(title, total=None)
    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if started:
            bar.stop()


def print_table(table: Table, out: Console | None = None) -> None:
    """A table, or, where the console is narrower than the table needs (a narrow terminal, or
    80 columns when piped), its rows as records of `column  value` lines: no value is cut."""
    out = out or console
    unbounded = out.options.update(max_width=1_000_000)
    if Measurement.get(out, unbounded, table).maximum <= out.width:
        out.print(table)
        return
    if table.title:
        out.print(table.title, style="bold")
    columns = table.columns
    for cells in zip(*(c.cells for c in columns), strict=True):
        first = cells[0] if isinstance(cells[0], Text) else Text.from_markup(str(cells[0]))
        out.print(Text.assemble(_plain(columns[0].header), ": ", first))
        record = Table.grid(padding=(0, 2), pad_edge=False)
        record.add_column(no_wrap=True)
        record.add_column(overflow="fold")
        for column, cell in zip(columns[1:], cells[1:], strict=True):
            record.add_row("  " + _plain(column.header), cell)
        out.print(record)
    if table.caption:
        out.print(table.caption, style="dim")


def _plain(header: Any) -> str:
    """A column header on one line (`nodes\nfull` -> `nodes full`)."""
    return " ".join(str(header).split())


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def examples(*lines: str) -> str:
    """A help epilog with examples (Typer shows it under the options)."""
    body = "\n\n".join(f"  $ {line}" for line in lines)
    return f"Examples:\n\n{body}"
