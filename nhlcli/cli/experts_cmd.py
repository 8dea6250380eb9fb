"""`nhl experts`: the expert frontier (cost, closed-set top-1, open-set safety of every candidate
expert); experts.csv, report.json and frontier.png go to runs/experts/NAME."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from nhlcli.cli.common import (
    DEVICE_OPTION,
    JSON_OPTION,
    console,
    err_console,
    examples,
    print_json,
    print_table,
    safe,
)

EPILOG = examples(
    "nhl experts runs/train/exp --data imagenette2",
    "nhl experts runs/train/exp --data imagenette2 --level 2 --sets five.txt --latency",
    "nhl experts runs/train/exp --data imagenette2 --sets tench,church --json",
)


def register(app: typer.Typer) -> None:
    app.command("experts", epilog=EPILOG)(experts_command)


def experts_command(
    model: Path = typer.Argument(
        ..., metavar="MODEL", help="Model directory or training run directory (its best)."
    ),
    data: Path = typer.Option(
        ..., "--data", help="Folder of class folders (DIR/val is used if present)."
    ),
    level: int = typer.Option(1, "--level", min=1, help="Tree level whose nodes are candidates."),
    sets: list[str] = typer.Option(
        [], "--sets", help="Also a candidate: class set name, class file or comma list (repeat)."
    ),
    latency: bool = typer.Option(
        False, "--latency", help="Also time every cut expert (interleaved, with progress)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Images per batch."),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="Loader workers (default: cores - 1)."
    ),
    device: str = DEVICE_OPTION,
    max_val_batches: int | None = typer.Option(
        None, "--max-val-batches", min=1, help="Read at most N batches of images."
    ),
    allow_extra: bool = typer.Option(
        False, "--allow-extra", help="Ignore class folders that are not classes of the model."
    ),
    save: bool = typer.Option(
        True, "--save/--no-save", help="Write experts.csv, report.json and frontier.png."
    ),
    project: Path = typer.Option(Path("runs/experts"), "--project", help="Parent folder."),
    name: str = typer.Option("exp", "--name", help="Output folder: PROJECT/NAME (NAME-2, ...)."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse PROJECT/NAME."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Which experts are worth cutting: for every node of a tree level (and --sets), params and
    GMACs vs the full model, top-1 on its own classes, and open-set safety (FPR at 95% TPR, AUROC
    by max softmax) from one pass of the full model (docs/experts.md)."""
    import nhlcli as nhl

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=err_console, transient=True, disable=json_out,
    )  # fmt: skip
    images = progress.add_task("images", total=None)
    timing = progress.add_task("latency runs", total=None, visible=False)

    def on_latency(done: int, total: int) -> None:
        progress.update(timing, completed=done, total=total, visible=True)

    with progress:
        result = nhl.experts(
            model, data, level=level, sets=sets, latency=latency,
            project=project if save else None, name=name, exist_ok=exist_ok,
            batch_size=batch_size, workers=workers, device=device, max_batches=max_val_batches,
            allow_extra=allow_extra, on_start=lambda n: progress.update(images, total=n),
            on_batch=lambda n: progress.advance(images, n), on_latency=on_latency,
        )  # fmt: skip
    if json_out:
        print_json(result.to_dict())
        return

    def pct(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}f}%"

    cols = ["expert", "classes", "params", "Δ params", "GMACs", "Δ GMACs", "images", "top-1",
            "FPR@95%TPR", "AUROC"] + (["latency ms"] if latency else [])  # fmt: skip
    title = f"expert frontier of {result.arch}: level {result.level} nodes, sets, full model"
    table = Table(*cols, title=safe(title))
    for r in result.rows:
        cells = [
            safe(r.name), str(len(r.classes)), f"{r.params / 1e6:.2f}M",
            f"{r.params_delta_pct:+.1f}%", f"{r.gmacs:.3f}", f"{r.gmacs_delta_pct:+.1f}%",
            str(r.images), pct(r.top1, 2), pct(r.fpr_at_95tpr),
            "-" if r.auroc is None else f"{r.auroc:.3f}",
        ]  # fmt: skip
        if latency:
            cells.append("-" if r.latency_ms is None else f"{r.latency_ms:.2f}")
        table.add_row(*cells)
    print_table(table)
    base = result.baseline
    console.print(
        f"baseline {base['arch']}: {base['params'] / 1e6:.2f}M params, {base['gmacs']:.3f} GMACs; "
        f"{result.images} images; FPR@95%TPR: share of other classes' images the expert accepts",
        markup=False,
    )
    if result.output_dir:
        console.print(
            f"wrote {result.output_dir}/: experts.csv, report.json, frontier.png", markup=False
        )
