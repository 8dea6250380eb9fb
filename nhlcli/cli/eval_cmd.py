"""`nhl eval`: top-1/top-5, per-level and per-class accuracy of a checkpoint or expert, with
top-down attention; report.json and the confusion files go to runs/eval/NAME."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
    safe,
)

if TYPE_CHECKING:
    from nhlcli.evaluation.runner import EvalReport

EPILOG = examples(
    "nhl eval runs/train/exp/best --data imagenette2/val",
    "nhl eval runs/train/exp --data imagenette2 --classes tench,English_springer,church",
    "nhl eval experts/dogs --data imagenette2/val --allow-extra",
    "nhl eval runs/train/exp/best --data imagenette2 --attend tench=1.8",
    "nhl eval runs/train/exp/best --data imagenette2 --attend-sweep 1.0:2.0:0.1 --json",
    "nhl eval runs/train/exp --data imagenette2 --name r50-val   # runs/eval/r50-val/confusion.png",
    "nhl eval runs/train/exp --data imagenette2 --decode both --tree my-tree.json",
)


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=EPILOG)(eval_command)


def eval_command(
    checkpoint: Path = typer.Argument(
        ...,
        metavar="MODEL",
        help="Model directory (a checkpoint, an expert) or a training run directory (its best).",
    ),
    data: Path = typer.Option(
        ..., "--data", help="Folder of class folders (DIR/val is used if present)."
    ),
    classes: str | None = typer.Option(
        None,
        "--classes",
        "-c",
        help="Evaluate on a subset, softmax restricted to it (paper eq. 3): "
        "class set name, class file, or comma-separated classes/tree nodes.",
    ),
    attend: str | None = typer.Option(
        None,
        "--attend",
        help="Top-down attention for all images: CLASS=SCALE,... (e.g. tench=1.8).",
    ),
    attend_oracle: float | None = typer.Option(
        None,
        "--attend-oracle",
        help="Amplify each image's own (true) class path by SCALE (Sec. 4.4).",
    ),
    attend_sweep: str | None = typer.Option(
        None,
        "--attend-sweep",
        help="Oracle attention for each scale START:STOP:STEP, e.g. 1.0:2.0:0.1.",
    ),
    attend_level: int | None = typer.Option(
        None,
        "--attend-level",
        help="Level whose first block is amplified (default: the leaf level).",
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Images per batch."),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="Loader workers (default: cores - 1)."
    ),
    device: str = DEVICE_OPTION,
    img_size: int | None = typer.Option(
        None, "--img-size", help="Resolution (default: the model's)."
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="fp32, or bf16 (autocast; on a CPU only where it has bf16 instructions; "
        "NHL_CPU_BF16=0 turns it off). Replaces --amp.",
    ),
    amp: str = typer.Option(
        "auto", "--amp", help="auto (bf16 on CUDA GPUs that have it, else none), bf16, fp16, none."
    ),
    allow_extra: bool = typer.Option(
        False, "--allow-extra", help="Ignore class folders that are not classes of the model."
    ),
    max_val_batches: int | None = typer.Option(
        None,
        "--max-val-batches",
        "--max-batches",
        min=1,
        help="Evaluate N batches of a fixed, class-balanced subset.",
    ),
    save: bool = typer.Option(
        True, "--save/--no-save", help="Write report.json, confusion.csv and confusion.png."
    ),
    project: Path = typer.Option(
        Path("runs/eval"), "--project", help="Parent folder of evaluation outputs."
    ),
    name: str = typer.Option("exp", "--name", help="Output folder: PROJECT/NAME (NAME-2, ...)."),
    exist_ok: bool = typer.Option(
        False, "--exist-ok", help="Reuse PROJECT/NAME instead of NAME-2."
    ),
    decode: str = typer.Option(
        "argmax",
        "--decode",
        help="argmax, crm (least expected tree distance, Karthik et al. 2021) or both "
        "(argmax, with crm beside it).",
    ),
    metric_tree: str | None = typer.Option(
        None,
        "--tree",
        "-t",
        help="Measure the hierarchical metrics under another tree (file or shipped name) over "
        "the same classes; the network is unchanged.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Top-1/top-5 over the model's classes (or a subset), accuracy at each tree level, the share
    of errors inside the true superclass, and per-class accuracy; files in runs/eval/NAME."""
    import nhlcli as nhl
    from nhlcli.evaluation.runner import oracle_scales

    scales = oracle_scales(attend_oracle, attend_sweep)

    progress = Progress(
        TextColumn("[bold]evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=json_out,
    )
    task = progress.add_task("eval", total=None)
    with progress:
        report = nhl.evaluate(
            checkpoint,
            data,
            classes=classes,
            attend=attend,
            oracle_scales=scales,
            attend_level=attend_level,
            batch_size=batch_size,
            workers=workers,
            device=device,
            img_size=img_size,
            allow_extra=allow_extra,
            amp=amp,
            precision=precision,
            max_batches=max_val_batches,
            project=project if save else None,
            name=name,
            exist_ok=exist_ok,
            on_start=lambda n: progress.update(task, total=n),
            on_batch=lambda n: progress.advance(task, n),
            decode=decode,
            metric_tree=metric_tree,
        )
    for warning in report.warnings:  # also in --json ("warnings")
        err_console.print(f"[yellow]warning:[/] {safe(warning)}", soft_wrap=True)
    if json_out:
        print_json(report.to_dict())
        return
    over = (
        f"{len(report.per_class)} of {report.model_classes} classes, softmax restricted to them"
        if report.subset
        else f"all {report.model_classes} classes"
    )
    console.print(f"{report.checkpoint} ({report.arch}) on {report.data}: {over}", markup=False)
    if report.attention:
        shown = safe(", ".join(f"{k}={v:g}" for k, v in report.attention.items()))
        console.print(f"top-down attention at level {report.attention_level}: {shown}")
    table = Table("class", "id", "images", "correct", "top-1", title="per-class accuracy")
    for row in report.per_class:
        acc = "-" if row["top1"] is None else f"{row['top1']:.2f}%"
        table.add_row(
            safe(row["name"]), safe(row["id"]), str(row["images"]), str(row["correct"]), acc
        )
    console.print(table)
    if report.skipped:
        console.print(f"[yellow]{len(report.skipped)} unreadable image(s) skipped[/]")
    if report.ignored_folders:
        extra = report.ignored_folders
        shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        err_console.print(
            f"note: ignored {len(extra)} folder(s) that are not classes of the model "
            f"(--allow-extra): {shown}",
            markup=False,
            soft_wrap=True,
        )
    top5 = "–" if report.top5 is None else f"{report.top5:.2f}%"  # None: at most 5 classes
    console.print(
        f"top-1: [bold]{report.top1:.2f}%[/]  top-5: [bold]{top5}[/] on {report.images} images"
    )
    if report.levels:
        console.print(_levels_table(report.levels))
    if report.hierarchical:
        console.print(_hierarchical_table(report))
    if report.output_dir:
        console.print(
            f"wrote {report.output_dir}/: report.json, confusion.csv, confusion.png", markup=False
        )
    if report.oracle:
        console.print(f"[bold yellow]note:[/] {safe(report.oracle_note)}")
        ot = Table(
            "scale", "top-1", "change", title=f"oracle attention at level {report.attention_level}"
        )
        base = report.top1 or 0.0
        for row in report.oracle:
            ot.add_row(f"{row['scale']:g}", f"{row['top1']:.2f}%", f"{row['top1'] - base:+.2f}")
        console.print(ot)


def _levels_table(levels: list[dict]) -> Table:
    t = Table(
        "level", "nodes", "top-1 at the level", "errors inside the true node",
        title="accuracy by tree level (prediction's ancestor = true class's ancestor)",
    )  # fmt: skip
    for row in levels:
        within = "-" if row["errors_within"] is None else f"{row['errors_within']:.1f}%"
        t.add_row(str(row["level"]), str(row["nodes"]), f"{row['top1']:.2f}%", within)
    return t


def _hierarchical_table(report: EvalReport) -> Table:
    own = {"decode": report.decode, "top1": report.top1, **(report.hierarchical or {})}
    rows = report.decodings or [own]
    ks = list(rows[0]["ahd"])
    t = Table(
        "decoding", "top-1", "mistake severity", *(f"AHD{k}" for k in ks), "hP", "hR", "hF",
        title="hierarchical metrics (d = height of the lowest common ancestor"
        + (f", tree {safe(report.metric_tree)})" if report.metric_tree else ")"),
    )  # fmt: skip
    for r in rows:
        t.add_row(
            r["decode"], f"{r['top1']:.2f}%", f"{r['mistake_severity']:.3f}",
            *(f"{r['ahd'][k]:.3f}" for k in ks), f"{r['hierarchical_precision']:.2f}%",
            f"{r['hierarchical_recall']:.2f}%", f"{r['hierarchical_f1']:.2f}%",
        )  # fmt: skip
    return t
