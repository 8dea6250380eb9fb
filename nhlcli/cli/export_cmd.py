"""`nhl export`: a model or expert as an ONNX or TorchScript file, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from nhlcli.cli.common import JSON_OPTION, console, err_console, examples, print_json, safe
from nhlcli.errors import NhlError


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        epilog=examples(
            "nhl export experts/cats                  # experts/cats.onnx",
            "nhl export experts/cats --dynamic-batch -o cats.onnx",
            "nhl export experts/cats --attend tabby=1.8 -o cats-tabby.pt   # TorchScript",
            "nhl export runs/train/exp --img-size 160 --json   # runs/train/exp/best.onnx",
            "nhl export experts/cats --quantize int8 --calibration data/cats/train",
        ),
    )(export)


def export(
    model_dir: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="A model or expert folder (config.json + model.safetensors), or a training run.",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="onnx or torchscript (default: from the -o suffix, .onnx or .pt/.ts; else onnx).",
        show_default=False,
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="The file to write (default: beside the checkpoint folder, .onnx / .pt; for a "
        "training run, inside it: RUN/best.onnx).",
    ),
    img_size: int | None = typer.Option(
        None, "--img-size", help="Input size in pixels (default: the model's own)."
    ),
    dynamic_batch: bool = typer.Option(
        False, "--dynamic-batch", help="Any batch size (default: a fixed batch of --batch-size)."
    ),
    batch_size: int = typer.Option(
        1,
        "--batch-size",
        "-b",
        "--batch",
        min=1,
        help="The fixed batch size without --dynamic-batch.",
    ),
    attend: str | None = typer.Option(
        None,
        "--attend",
        help="Top-down attention baked into the file, e.g. tabby=1.8,tiger_cat=1.5.",
    ),
    attend_level: int | None = typer.Option(
        None, "--attend-level", help="Level of the attention (default: the leaf level)."
    ),
    opset: int | None = typer.Option(
        None, "--opset", help="ONNX opset (default 17 for the legacy exporter, 18 for dynamo)."
    ),
    exporter: str = typer.Option(
        "auto", "--exporter", help="ONNX exporter: auto (legacy, else dynamo), legacy or dynamo."
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8: ONNX Runtime static quantisation (QDQ, per-channel weights); needs "
        "--calibration. The stem and the heads stay fp32.",
    ),
    calibration: str | None = typer.Option(
        None,
        "--calibration",
        help="Image folder (one sub-folder per class; its train/ if present) to calibrate int8 "
        "on and to check it against fp32. Use training images, never the validation set.",
    ),
    calibration_images: int | None = typer.Option(
        None, "--calibration-images", help="How many images, class-balanced (default 300)."
    ),
    min_agreement: float | None = typer.Option(
        None,
        "--min-agreement",
        help="Fail (write nothing) when int8 and fp32 agree on top-1 for fewer of the "
        "calibration images than this share (default 0.9).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Export a model or expert to ONNX or TorchScript; the file carries its class list.

    The exported file is run (onnxruntime / torch.jit) against the PyTorch model on a random batch
    before it is written; a mismatch fails the export and writes nothing.
    """
    import nhlcli as nhl
    from nhlcli.exporters import export_format

    fmt = export_format(fmt, output)
    if output is not None and Path(output).is_dir():
        raise NhlError(f"{output} is a folder; give a file name with -o")
    with err_console.status(f"exporting {escape(model_dir)} to {fmt} and checking it…"):
        result = nhl.export(
            model_dir, fmt, output, attend=attend, attend_level=attend_level, img_size=img_size,
            dynamic_batch=dynamic_batch, batch_size=batch_size, opset=opset, exporter=exporter,
            quantize=quantize, calibration=calibration, calibration_images=calibration_images,
            min_agreement=min_agreement,
        )  # fmt: skip
    data = {"model": model_dir, **result.to_dict()}
    if json_out:
        print_json(data)
        return
    console.print(_table(data))
    if result.source:  # a line of its own: a long path is never cut
        console.print(f"from {source_text(result.source)}", markup=False, soft_wrap=True)


def _table(d: dict[str, Any]) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False, title=f"exported {escape(d['path'])}",
              title_justify="left")  # fmt: skip
    t.add_column(style="bold")
    t.add_column()
    how = d["format"] + (
        f" ({d['exporter']} exporter, opset {d['opset']})" if d["exporter"] else ""
    )
    t.add_row("format", how)
    t.add_row("file size", f"{d['file_bytes'] / 1e6:,.1f} MB ({d['file_bytes']:,} bytes)")
    t.add_row("classes", str(d["classes"]))
    fused = f" ({d['fused']})" if d.get("fused") else ""
    t.add_row("parameters", f"{d['params']:,}{fused}")
    if d["gmacs"] is not None:
        t.add_row("GMACs", f"{d['gmacs']:.3f} (fvcore, batch 1, {d['img_size']} px)")
    batch = "dynamic" if d["dynamic_batch"] else f"fixed at {d['batch']}"
    t.add_row("input", f"image (N, 3, {d['img_size']}, {d['img_size']}), batch {batch}")
    t.add_row(
        "check",
        f"[green]ok[/]: largest logit difference {d['max_abs_diff']:.2e} ≤ {d['tolerance']:.2e} "
        f"(batch of {d['check_batch']})",
    )
    q = d.get("quantization")
    if q:
        t.add_row(
            "int8 check",
            f"top-1 agrees with fp32 on {q['top1_agreement']:.1%} of {q['calibration_images']} "
            f"calibration images; largest softmax difference {q['max_softmax_diff']:.3f}",
        )
        t.add_row("kept fp32", f"the first convolution and {q['fp32_nodes']['heads']} head nodes")
    att = d.get("attention")
    if att:
        scales = safe(", ".join(f"{k}={v:g}" for k, v in att["scales"].items()))
        t.add_row("attention", f"level {att['level']}: {scales} (baked in)")
    return t


def source_text(source: dict[str, Any]) -> str:
    """`runs/train/six/best (the run's best checkpoint: epoch 7, val top-1 52.30%)`."""
    notes = []
    if source.get("run_checkpoint"):
        notes.append(f"the run's {source['run_checkpoint']} checkpoint")
    if source.get("epoch") is not None:
        top1 = source.get("val_top1")
        seen = isinstance(top1, int | float) and top1 == top1  # NaN: no validation images
        notes.append(f"epoch {source['epoch']}" + (f", val top-1 {top1:.2f}%" if seen else ""))
    return source["path"] + (f" ({': '.join(notes)})" if notes else "")
