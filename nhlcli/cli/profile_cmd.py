"""`nhl profile`: params, GMACs (any counter of `profiling.counters`) and latency of a preset, its
cutout and a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from nhlcli.cli import common
from nhlcli.cli.common import (
    JSON_OPTION,
    err_console,
    examples,
    print_json,
    print_table,
    progress_bar,
    safe,
)

if TYPE_CHECKING:
    from nhlcli.profiling.report import Profile


def register(app: typer.Typer) -> None:
    app.command(
        "profile",
        epilog=examples(
            "nhl profile experts/cats",
            "nhl profile runs/train/exp --classes 'domestic cat' --latency",
            "nhl profile --arch phl-big --classes imagenet1k",
            "nhl profile --arch n3hl --tree imagenet1k-wordnet-L3 --classes 'domestic cat'",
            "nhl profile --arch n3hl --tree tree.json --classes cats.txt --latency --batch-size 1",
            "nhl profile --arch resnet50 --classes imagenette --json",
            "nhl profile --arch convnextv2-nhl --tree in1k-17-161.json --classes 'domestic cat' "
            "--counter thop",
            "nhl profile --arch n3hl --tree imagenet1k-wordnet-L3 --baseline resnet152",
        ),
    )(profile)


def profile(
    model: str | None = typer.Argument(
        None,
        metavar="MODEL",
        help=common.MODEL_HELP + ": its preset, tree and image size (instead of --arch/--tree).",
        show_default=False,
    ),
    arch: str | None = typer.Option(
        None, "--arch", "-a", help="Preset (resnet50, phl-small, n3hl, ...), without MODEL."
    ),
    tree: str | None = typer.Option(
        None, "--tree", "-t", help="Tree file or shipped tree name the --arch model is built for."
    ),
    classes: str | None = typer.Option(
        None,
        "--classes",
        "-c",
        help="With MODEL or --tree: the cutout's classes (class set, class file, model folder, or "
        "comma-separated classes or tree nodes). Without --tree (one-level presets): the model's "
        "classes.",
    ),
    img_size: int | None = typer.Option(
        None,
        "--img-size",
        help="Input size in pixels (square; default: MODEL's, else 224).",
        show_default=False,
    ),
    latency: bool = typer.Option(False, "--latency", help="Also measure ms per batch (allocates)."),
    batch_size: int = common.LATENCY_BATCH_SIZE,
    runs: int = common.LATENCY_RUNS,
    warmup: int = common.LATENCY_WARMUP,
    device: str = common.LATENCY_DEVICE,
    counter: str = common.PROFILE_COUNTER,
    baseline: str | None = common.PROFILE_BASELINE,
    json_out: bool = JSON_OPTION,
) -> None:
    """Parameters and GMACs of a saved model, or of a preset for a tree, its cutout and a baseline.

    GMACs are the counter's count at batch 1 (fvcore by default: one multiply-accumulate = one
    flop; thop as the main paper's Table 2 and the workshop paper). The model is profiled
    one distinct block shape at a time and multiplied by the node counts, so even 2.6 G-parameter
    models are never allocated (only --latency allocates the models it times).
    """
    import nhlcli as nhl
    from nhlcli.errors import NhlError

    target: str | Path
    if model is not None:
        if arch is not None or tree is not None:
            raise NhlError(
                f"{model} brings its own preset and tree: give MODEL or --arch/--tree, not both"
            )
        target = Path(model)
    elif arch is None:
        raise NhlError("say what to profile: a MODEL folder, or --arch PRESET (with --tree)")
    else:
        target = arch
    if classes is not None and (tree is not None or model is not None):
        subset: str | None = classes
        model_classes = None
    else:
        subset, model_classes = None, classes
    with progress_bar(
        "timing (models in turn)", enabled=latency and not json_out, plain=TIMING_LINE
    ) as progress:
        report = nhl.profile(
            target, tree, classes=model_classes, subset=subset, img_size=img_size, latency=latency,
            batch_size=batch_size, runs=runs, warmup=warmup, device=device, progress=progress,
            counter=counter, baseline=baseline,
        )  # fmt: skip
    if json_out:
        print_json(report.to_dict())
    else:
        print_profile(report)


#: `nhl profile --latency` and `nhl cutout --latency` where stderr is not a terminal
TIMING_LINE = "timing (models in turn): {done}/{total} runs"


def print_profile(profile: Profile, parts: bool = True) -> None:
    """The tables on stdout (`parts`: with the per-part one); the one fvcore line and latency
    warnings on stderr."""
    report = profile.to_dict()
    render_profile(report, parts)
    if report["fvcore_skipped"]:
        err_console.print(f"[dim]note: {escape(report['fvcore_skipped'])}[/]", soft_wrap=True)
    lat = report.get("latency", {})
    names = {r["role"]: r["model"] for r in report["models"]}  # the rows' names in the tables
    for role in lat.get("noisy", []):
        err_console.print(
            f"[yellow]warning:[/] {safe(names.get(role, role))}: the slowest runs are more than "
            "25% above the median; the machine is too busy to measure well (close other work or "
            "raise --runs)",
            soft_wrap=True,
        )
    for why in lat.get("skipped", []):
        err_console.print(f"[yellow]warning:[/] {safe(why)}", soft_wrap=True)


def _delta(reduction: float) -> str:
    change = -reduction
    if abs(change) < 0.05:
        return "0"
    text = f"{change:+,.0f}" if abs(change) >= 1000 else f"{change:+.1f}"
    return text.replace("-", "−")


def _model_label(r: dict[str, Any]) -> str:
    return str(r["model"])  # `report.row_label`: the same name in the warnings and --json


def render_profile(report: dict[str, Any], parts: bool = True) -> None:
    """The model table (baseline / full / cutout) and (`parts`) the per-part breakdown."""
    lat = report.get("latency")
    title = f"{report['arch']} at {report['img_size']} px"
    if report.get("extrapolated"):
        title += " (extrapolated preset)"
    counter = report.get("counter", "fvcore")
    caption = (
        f"GMACs: {counter} at batch 1 (one multiply-accumulate = one MAC). "
        "Δ: change in % of params / GMACs, negative = smaller. "
        "The papers: the main paper's Table 2 and the workshop paper count with thop, the main "
        "paper's Table 4 counts every parameter."
    )
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=caption, collapse_padding=True)
    table.add_column("model", min_width=10)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GMACs", justify="right", no_wrap=True)
    table.add_column("Δ% vs full", justify="right", no_wrap=True)
    table.add_column(f"Δ% vs {report['baseline']}", justify="right", no_wrap=True)
    for r in report["models"]:
        cells = [_model_label(r), f"{r['params']:,}", f"{r['gmacs']:.3f}"]
        for key in ("reduction_vs_full_pct", "reduction_vs_baseline_pct"):
            red = r[key]
            cells.append(f"{_delta(red['params'])}/{_delta(red['macs'])}")
        table.add_row(*cells)
    print_table(table)
    if lat:
        print_table(latency_table(report))
    if parts:
        print_table(breakdown_table(report))


def latency_table(report: dict[str, Any]) -> Table:
    """Measured ms per batch (median, min, max), the MAC rate and the efficiency per model."""
    lat = report["latency"]
    threads = f", {lat['threads']} threads" if lat.get("threads") else ""
    table = Table(
        title=f"latency: batch {lat['batch_size']}, {lat['device']}{threads}",
        box=box.SIMPLE_HEAD,
        caption=f"{lat['runs']} timed runs per model after {lat['warmup']} warm-up, the models "
        f"in turn. GMAC/s: the MAC rate; eff.: that rate over {report['baseline']}'s.",
    )
    for name in ("model", "median ms", "min", "max", "GMAC/s", "eff."):
        table.add_column(name, justify="left" if name == "model" else "right", no_wrap=True)
    for r in report["models"]:
        st = r.get("latency_stats")
        if st is None:
            table.add_row(_model_label(r), "—", "—", "—", "—", "—")
            continue
        table.add_row(
            _model_label(r), f"{st['median']:,.1f}", f"{st['min']:,.1f}", f"{st['max']:,.1f}",
            f"{r['gmacs_per_s']:,.2f}", f"{r['efficiency']:.2f}",
        )  # fmt: skip
    return table


def breakdown_table(report: dict[str, Any]) -> Table:
    """Per part (trunk, each level, heads): nodes, params (millions) and GMACs, full and cutout."""
    rows = {r["role"]: r for r in report["models"]}
    full, cut = rows["full"], rows.get("cutout")
    parts = [("full", full)] + ([("cut", cut)] if cut is not None else [])
    table = Table(
        title=f"{report['arch']} per part (one node × nodes)",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        pad_edge=False,
    )
    table.add_column("part", no_wrap=True)
    table.add_column("input", justify="right", no_wrap=True)
    table.add_column("params/node", justify="right", no_wrap=True)
    for what in ("nodes", "Mparams", "GMACs"):
        for name, _ in parts:
            head = f"{what}\n{name}" if cut is not None else what
            table.add_column(head, justify="right", no_wrap=True)
    by_name = [{p["part"]: p for p in m["parts"]} for _, m in parts]
    for part in full["parts"]:
        name = part["part"]
        shape = "×".join(str(d) for d in part["input"])  # C×H×W of one node's input
        cells = [name, shape, f"{part['params_each']:,}"]
        cells += [f"{m[name]['nodes']:,}" for m in by_name]
        cells += [f"{m[name]['params'] / 1e6:,.3f}" for m in by_name]
        cells += [f"{m[name]['gmacs']:.3f}" for m in by_name]
        table.add_row(*cells)
    total = ["total", "", ""] + [""] * len(parts)
    total += [f"{m['params'] / 1e6:,.3f}" for _, m in parts]
    total += [f"{m['gmacs']:.3f}" for _, m in parts]
    table.add_row(*total, style="bold")
    return table
