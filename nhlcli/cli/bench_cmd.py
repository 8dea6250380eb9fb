"""`nhl bench`: images per second of models, experts and exported files against a baseline."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from nhlcli.cli.common import (
    JSON_OPTION,
    console,
    err_console,
    examples,
    print_json,
    print_table,
    progress_bar,
    safe,
)


def register(app: typer.Typer) -> None:
    app.command(
        "bench",
        epilog=examples(
            "nhl bench experts/cats experts/cats.onnx experts/cats-int8.onnx",
            "nhl bench runs/train/exp --batch-size 1,32 --precision fp32,bf16 --runtime torch",
            "nhl bench experts/cats-int8.onnx resnet50-int8.onnx --precision int8 --baseline ''",
        ),
    )(bench)


def bench(
    targets: list[str] = typer.Argument(
        ...,
        metavar="MODELS",
        help="Model/expert folders, training runs, .onnx files (int8 too) or preset names.",
    ),
    batch_size: list[str] = typer.Option(
        ["1,32"], "--batch-size", "-b", help="Batch sizes: 1,32 or the option repeated."
    ),
    precision: list[str] = typer.Option(["fp32"], "--precision", help="fp32, bf16, int8 (1,2)."),
    runtime: list[str] = typer.Option(
        ["torch,onnxruntime"], "--runtime", help="torch and/or onnxruntime."
    ),
    baseline: str = typer.Option(
        "resnet50", "--baseline", help="Preset timed alongside (same classes); '' for none."
    ),
    img_size: int | None = typer.Option(None, "--img-size", help="Input size (default: model's)."),
    runs: int = typer.Option(20, "--runs", help="Timed runs per row (interleaved)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed runs per row first."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Folder for bench.csv/json (default runs/bench/NAME)."
    ),
    project: str = typer.Option("runs/bench", "--project", help="Parent folder of NAME."),
    name: str = typer.Option("exp", "--name", help="runs/bench/NAME (numbered when it exists)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Images/s, ms/batch, GMAC/s and the ratio to a baseline, timed interleaved with warm-up.

    Several values: list them with commas (--batch-size 1,32) or repeat the option."""
    import nhlcli as nhl
    from nhlcli.errors import NhlError

    sizes = _split(batch_size)
    if not all(s.isdigit() for s in sizes):
        raise NhlError(f"--batch-size takes whole numbers, not {','.join(sizes)}")
    from nhlcli.training.rundir import numbered_dir

    with progress_bar(
        "bench (rows in turn)", enabled=not json_out, plain="bench: {done}/{total} runs"
    ) as bar:
        report = nhl.bench(
            targets, batch_sizes=[int(s) for s in sizes], precisions=_split(precision),
            runtimes=_split(runtime),
            baseline=baseline or None, img_size=img_size, runs=runs, warmup=warmup,
            progress=bar,
        )  # fmt: skip
    folder = report.write(output if output else numbered_dir(project, name, False))
    if json_out:
        print_json({**report.to_dict(), "output": str(folder)})
        return
    print_table(_table(report.to_dict()))
    for why in report.skipped:
        err_console.print(f"[yellow]skipped[/]: {safe(why)}")
    if report.noisy:
        rows = safe(", ".join(report.noisy))
        err_console.print(f"[yellow]noisy (slowest runs > 25 % above the median)[/]: {rows}")
    console.print(f"wrote {safe(str(folder))}/: bench.csv, bench.json")


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _f(v: Any, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _table(d: dict[str, Any]) -> Table:
    t = Table(title=f"bench: {d['runs']} runs after {d['warmup']} warm-up, {d['threads']} threads",
              title_justify="left")  # fmt: skip
    for col in ("model", "runtime", "prec.", "batch", "ms/batch (min–max)", "spread", "images/s",
                "GMAC/s", "× baseline", "efficiency"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("model", "runtime", "prec.") else "right")
    for r in d["rows"]:
        t.add_row(
            safe(r["name"]), r["runtime"], r["precision"], str(r["batch_size"]),
            f"{r['ms_median']:.2f} ({r['ms_min']:.2f}–{r['ms_max']:.2f})",
            f"{r['spread']:.0%}", f"{r['images_per_s']:.1f}", _f(r["gmac_per_s"], ".1f"),
            _f(r["ratio"], ".2f"), _f(r["efficiency"], ".2f"),
        )  # fmt: skip
    return t
