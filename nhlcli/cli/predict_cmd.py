"""`nhl predict`: top classes of images for a checkpoint, an expert or an exported file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from nhlcli.cli.common import (
    JSON_OPTION,
    console,
    err_console,
    examples,
    print_json,
    progress_bar,
    safe,
)
from nhlcli.devices import DEFAULT_DEVICE, DEVICE_HELP
from nhlcli.errors import NhlError

if TYPE_CHECKING:  # torch loads only when the command runs (fast `nhl --help`)
    from nhlcli.prediction import PredictReport


def register(app: typer.Typer) -> None:
    app.command(
        "predict",
        epilog=examples(
            "nhl predict experts/cats photos/",
            "nhl predict experts/cats.onnx cat1.jpg cat2.jpg --top 3",
            "nhl predict runs/train/exp photos/ --attend tabby=1.8 --csv predictions.csv",
            "nhl predict experts/cats.pt photos/ --trust-torchscript --json",
            "nhl predict runs/train/exp photos/ --save --name holiday   # runs/predict/holiday/",
        ),
    )(predict)


def predict(
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="A model/expert folder, a training run, or an exported .onnx / TorchScript .pt file.",
    ),
    images: list[str] = typer.Argument(
        ..., metavar="IMAGES", help="Image files and/or folders (searched recursively)."
    ),
    top: int = typer.Option(5, "--top", "-k", help="How many classes to show per image."),
    attend: str | None = typer.Option(
        None, "--attend", help="Top-down attention for model folders, e.g. tabby=1.8,tiger_cat=1.5."
    ),
    img_size: int | None = typer.Option(
        None, "--img-size", help="Input size (default: the model's; fixed for exported files)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Images per forward pass."),
    device: str = typer.Option(
        DEFAULT_DEVICE, "--device", help=f"{DEVICE_HELP[:-1]}; model folders only."
    ),
    csv_file: str | None = typer.Option(
        None,
        "--csv",
        help="Also write the results to this CSV file (path, rank, class, name, p); "
        "'-' prints the CSV to standard output instead of the table.",
    ),
    trust_torchscript: bool = typer.Option(
        False,
        "--trust-torchscript",
        help="Allow loading a TorchScript .pt file. RISK: loading TorchScript runs code stored in "
        "the file, which can do anything your account can; use it only for files you exported "
        "yourself. Model folders and ONNX files never run code from the file.",
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32, or bf16: autocast on CPUs with bf16 instructions (model folders only; "
        "NHL_CPU_BF16=0 turns it off).",
    ),
    save: bool = typer.Option(
        False, "--save", help="Also write predictions.json and .csv to PROJECT/NAME."
    ),
    project: str = typer.Option("runs/predict", "--project", help="Parent folder for --save."),
    name: str = typer.Option("exp", "--name", help="Folder for --save: PROJECT/NAME."),
    decode: str = typer.Option(
        "argmax", "--decode", help="argmax, or crm: rank by least expected tree distance."
    ),
    tree: str | None = typer.Option(
        None, "--tree", "-t", help="Tree for --decode crm (default: a model folder's own tree)."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Top classes of each image with their probabilities (softmax over the model's classes)."""
    import nhlcli as nhl

    to_stdout = csv_file == "-"
    if to_stdout and json_out:
        raise NhlError("--csv - and --json both write to standard output: choose one")
    with progress_bar("predicting", enabled=not json_out) as progress:
        report = nhl.predict(
            model, images, top=top, batch_size=batch_size, attend=attend, img_size=img_size,
            device=device, progress=progress, trust_torchscript=trust_torchscript,
            decode=decode, tree=tree, precision=precision,
        )  # fmt: skip
    if csv_file:
        report.write_csv(csv_file)
    saved = report.write_dir(project, name) if save else None
    for warning in report.warnings:  # also in --json ("warnings")
        err_console.print(f"[yellow]warning:[/] {safe(warning)}", soft_wrap=True)
    if json_out:
        print_json(report.to_dict())
        return
    if not to_stdout:
        console.print(_table(report))
    if report.skipped:
        err_console.print(
            f"[yellow]skipped {len(report.skipped)} unreadable file(s)[/]: "
            + safe(", ".join(report.skipped[:5]))
            + (" …" if len(report.skipped) > 5 else "")
        )
    if csv_file and not to_stdout:
        console.print(f"wrote {safe(csv_file)}")
    if saved is not None:
        where = err_console if to_stdout else console  # stdout holds the CSV
        where.print(f"wrote {safe(str(saved))}/: predictions.json, predictions.csv")


def _table(report: PredictReport) -> Table:
    att = ""
    if report.attention:
        att = ", attention " + safe(
            ", ".join(f"{k}={v:g}" for k, v in report.attention["scales"].items())
        )
    title = (
        f"{safe(report.source)} ({report.kind}, {report.classes} classes, "
        f"{report.img_size} px{att}): "
        f"{len(report.predictions)} image(s)"
    )
    t = Table(title=title, title_justify="left")
    t.add_column("image", overflow="fold")
    t.add_column("top class")
    t.add_column("p")
    if report.top_k > 1:
        t.add_column(f"next {report.top_k - 1}")
    for p in report.predictions:
        cid, name, prob = p.top[0]
        rest = safe(", ".join(f"{n} {q:.3f}" for _, n, q in p.top[1:]))
        cells = [escape(p.path), f"{escape(name)} [dim]{escape(cid)}[/]", f"{prob:.3f}"]
        t.add_row(*cells, *([rest] if report.top_k > 1 else []))
    return t
