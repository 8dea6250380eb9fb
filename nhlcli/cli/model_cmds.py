"""`nhl init`, `nhl cutout`, `nhl archs`: random checkpoints, experts, the presets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nhlcli.cli import common
from nhlcli.cli import llm_options as llm
from nhlcli.cli.common import (
    JSON_OPTION,
    console,
    err_console,
    examples,
    print_json,
    progress_bar,
    safe,
)
from nhlcli.errors import NhlError
from nhlcli.fileio import check_output
from nhlcli.model.presets import PRESETS

CUTOUT_PROJECT = "runs/cutout"  # where `nhl cutout` writes without -o


def register(app: typer.Typer) -> None:
    app.command(
        "init",
        epilog=examples(
            "nhl init --arch n3hl --tree imagenette-wordnet-L3 -o models/n3hl-random",
            "nhl init --arch phl-latesp --classes imagenette -o models/phl --img-size 128",
            "nhl init --arch convnextv2-nhl --tree imagenet1k-wordnet-L3 -o models/cnx "
            "--trunk-weights convnextv2_tiny.safetensors",
        ),
    )(init)
    app.command(
        "cutout",
        epilog=examples(
            "nhl cutout models/n3hl-random --classes cats.txt -o experts/cats",
            "nhl cutout models/n3hl-random -c tench,church   # -> runs/cutout/exp",
            "nhl cutout models/n3hl-random -c imagenette --fuse -o experts/fast",
            "nhl cutout models/n3hl-random -c domestic_cat,tench -o experts/mix --order tree",
            "nhl cutout models/n3hl-random -c imagenette --attend tench=1.8 -o experts/x --json",
            "nhl cutout models/n3hl-random -c 'domestic cat' --profile --latency --dry-run",
            "nhl cutout models/n3hl-1k --cue meow --yes -o experts/cats --picture cats.png",
            "nhl cutout models/n3hl-1k --cue dog --cue meow --dry-run",
            "nhl cutout models/n3hl-1k --cue 'found in a kitchen' --cue-source llm -o experts/k",
        ),
    )(cutout_cmd)
    app.command("archs", epilog=examples("nhl archs", "nhl archs --json"))(archs)


# ----------------------------------------------------------------------------- init
def init(
    arch: str = typer.Option(..., "--arch", "-a", help=f"Preset: {', '.join(PRESETS)}."),
    tree: str | None = typer.Option(
        None, "--tree", "-t", help="Tree file or shipped tree name (imagenette-wordnet-L3)."
    ),
    classes: str | None = typer.Option(
        None,
        "--classes",
        "-c",
        help="Without --tree, for one-level presets: a class set, class file or comma-separated "
        "classes.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint directory to write."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the initialisation."),
    img_size: int = typer.Option(224, "--img-size", help="Nominal input size in pixels."),
    trunk_weights: str | None = typer.Option(
        None,
        "--trunk-weights",
        help="Pretrained trunk: torchvision ResNet, or timm / official ConvNeXt-V2 state dict "
        "(.safetensors, .pt/.pth).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Write a randomly initialised checkpoint (to try cutouts and profiles before training)."""
    import nhlcli as nhl

    with err_console.status(f"building {arch}", spinner="dots"):
        model = nhl.build_model(arch, tree, classes=classes, img_size=img_size, seed=seed)
        init: dict[str, Any] = {"seed": seed}
        if trunk_weights:
            from nhlcli.training.trunk_weights import load_trunk_weights

            init["trunk_weights"] = load_trunk_weights(model, trunk_weights).to_dict()
        nhl.save_model(model, output, extra={"init": init})
    info = {
        "path": str(output),
        "arch": model.preset.name,
        "classes": model.num_classes,
        "nodes_per_level": model.nodes_per_level(),
        "params": model.num_params(),
        "img_size": model.img_size,
        "seed": seed,
        "trunk_weights": init.get("trunk_weights"),
    }
    if json_out:
        print_json(info)
        return
    if trunk_weights:
        rep = init["trunk_weights"]
        console.print(
            f"trunk weights ({rep['layout']}): loaded {rep['loaded']} tensors, "
            f"{len(rep['unused'])} unused, {len(rep['missing'])} missing",
            markup=False,
        )
    console.print(
        f"wrote {output}: {info['arch']}, {info['classes']} classes, nodes per level "
        f"{info['nodes_per_level']}, {info['params']:,} parameters (random init, seed {seed})",
        markup=False,
    )


# ----------------------------------------------------------------------------- cutout
def cutout_cmd(
    checkpoint: Path = typer.Argument(..., metavar="MODEL", help=common.MODEL_HELP + "."),
    classes: str | None = typer.Option(
        None,
        "--classes",
        "-c",
        help="Class set name, class file, model folder, or comma-separated classes; tree node "
        "names select every class under them.",
    ),
    cue: list[str] | None = typer.Option(
        None,
        "--cue",
        help="A word, sound or phrase selecting classes (e.g. meow); repeatable; adds to -c.",
    ),
    cue_source: str = typer.Option("wordnet", "--cue-source", help="Resolve cues: wordnet or llm."),
    llm_model: str = llm.MODEL,
    llm_base_url: str | None = llm.BASE_URL,
    llm_api_key_env: str = llm.API_KEY_ENV,
    llm_timeout: float = llm.TIMEOUT,
    llm_deadline: float = llm.DEADLINE,
    llm_max_repairs: int = llm.MAX_REPAIRS,
    llm_cache_dir: Path | None = llm.CACHE_DIR,
    llm_no_cache: bool = llm.NO_CACHE,
    llm_refresh: bool = llm.REFRESH,
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept the classes the cues select."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Write no expert, only show it (and --profile); with --cue, only what it selects.",
    ),
    picture: Path | None = typer.Option(
        None, "--picture", help="Draw the tree with the expert's paths in red (.png, .svg, .html)."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help=f"Expert directory to write (default: {CUTOUT_PROJECT}/exp, exp-2, ...).",
        show_default=False,
    ),
    order: str = typer.Option("given", "--order", help="Class order: given (SPEC's) or tree."),
    fuse: bool = typer.Option(
        False, "--fuse", help="Fold batch norms into the convolutions (inference-only expert)."
    ),
    attend: str | None = typer.Option(
        None, "--attend", help="Top-down attention scales, e.g. tabby=1.8,tiger_cat=1.5."
    ),
    attend_level: int | None = typer.Option(
        None, "--attend-level", help="Level of the attention (1 = top; default: the leaf level)."
    ),
    profile: bool = typer.Option(
        False, "--profile", help="Also print params/GMACs: a baseline, the model, the expert."
    ),
    latency: bool = typer.Option(False, "--latency", help="With --profile: measure ms per batch."),
    batch_size: int = common.LATENCY_BATCH_SIZE,
    runs: int = common.LATENCY_RUNS,
    warmup: int = common.LATENCY_WARMUP,
    device: str = common.LATENCY_DEVICE,
    counter: str = common.PROFILE_COUNTER,
    baseline: str | None = common.PROFILE_BASELINE,
    json_out: bool = JSON_OPTION,
) -> None:
    """Cut an expert for some classes out of a model: a real, smaller network, weights sliced."""
    import nhlcli as nhl
    from nhlcli.model.cutout import cutout_summary

    if order not in ("given", "tree"):
        raise NhlError(f"--order must be 'given' or 'tree', not '{order}'")
    if not classes and not cue:
        raise NhlError("say which classes: --classes SPEC and/or --cue WORD (e.g. --cue meow)")
    resolution = None
    if cue:
        from nhlcli.cli.cue_prompt import resolve_cue_option, show_and_confirm
        from nhlcli.hierarchy.llm.settings import LLMSettings

        settings = LLMSettings(**llm.llm_values(locals()))
        resolution = resolve_cue_option(checkpoint, cue, cue_source, settings)
        if not show_and_confirm(resolution, classes, yes, dry_run, checkpoint, picture, json_out):
            return  # --dry-run: shown (and drawn), nothing cut
    cue_ids = resolution.class_ids if resolution is not None else []
    model = nhl.load_model(checkpoint)
    named = nhl.select_classes(model.tree, classes) if classes else []
    expert = nhl.cutout(
        model, list(dict.fromkeys([*named, *cue_ids])), order=order, attend=attend,
        attend_level=attend_level, origin=str(checkpoint), fuse=fuse,
    )  # fmt: skip
    summary = cutout_summary(model, expert)
    # everything is checked and computed before the first file is written
    if output is not None:
        check_output(output, whole_dir=True)
    picture_data = None
    if picture is not None:
        from nhlcli.hierarchy.drawing import picture_format, render_tree

        check_output(picture)
        picture_data = render_tree(model.tree, picture_format(picture), expert.class_ids)
    report = None
    if profile or latency:  # the same report as `nhl profile` (nhlcli/cli/profile_cmd.py)
        from nhlcli.cli.profile_cmd import TIMING_LINE

        with progress_bar(
            "timing (models in turn)", enabled=latency and not json_out, plain=TIMING_LINE
        ) as bar:
            report = nhl.profile(
                model, subset=expert.class_ids, latency=latency, batch_size=batch_size,
                runs=runs, warmup=warmup, device=device, experts={"cutout": expert},
                progress=bar,
                counter=counter, baseline=baseline,
            )  # fmt: skip
        summary["profile"] = report.to_dict()
    if output is None and not dry_run:  # numbered like runs/train/exp: never replaces an expert
        from nhlcli.rundirs import numbered_dir

        output = numbered_dir(CUTOUT_PROJECT, "exp")
    if output is not None and not dry_run:
        nhl.save_model(expert, output, extra={"cut_from_checkpoint": str(checkpoint)})
    summary["path"] = str(output) if output is not None and not dry_run else None
    if resolution is not None:
        summary["cues"] = resolution.to_dict()
    if picture is not None and picture_data is not None:
        from nhlcli.hierarchy.drawing import write_picture

        write_picture(picture, picture_data)
        summary["picture"] = str(picture)
    if json_out:
        print_json(summary)
        return
    render_cutout(summary)
    if report is not None:
        from nhlcli.cli.profile_cmd import print_profile

        print_profile(report)


def render_cutout(summary: dict[str, Any]) -> None:
    table = Table("#", "id", "name", title=f"expert: {len(summary['classes'])} classes")
    for i, c in enumerate(summary["classes"]):
        table.add_row(str(i), safe(c["id"]), safe(c["name"]))
    console.print(table)
    p = summary["params"]
    npl = summary["nodes_per_level"]
    console.print(
        f"{summary['arch']}: nodes per level {npl['full']} -> {npl['expert']}; parameters "
        f"{p['full']:,} -> {p['expert']:,} ({p['reduction_pct']:.2f}% fewer)"
    )
    if summary["attention"]:
        att = summary["attention"]
        scales = ", ".join(f"{k}={v:g}" for k, v in att["scales"].items())
        console.print(f"attention at level {att['level']}: {scales}", markup=False)
    if summary.get("path"):
        console.print(f"wrote {summary['path']}", markup=False)
    elif "path" in summary:
        console.print("dry run: nothing written (leave out --dry-run to write the expert)")
    if summary.get("picture"):
        console.print(f"wrote {summary['picture']} (the expert's paths in red)", markup=False)


# ----------------------------------------------------------------------------- archs
def archs(json_out: bool = JSON_OPTION) -> None:
    """The network presets: trunk, levels, parameters per node and the parameter formula."""
    rows: list[dict[str, Any]] = []
    for p in PRESETS.values():
        rows.append(
            {
                "name": p.name,
                "trunk": p.trunk.name,
                "levels": p.num_levels,
                "head": p.head,
                "node_params": [p.node_params(lv) for lv in range(1, len(p.levels) + 1)],
                "formula": p.formula(),
                "extrapolated": p.extrapolated,
                "description": p.description,
            }
        )
    if json_out:
        print_json(rows)
        return
    table = Table("name", "trunk", "levels", "parameters (n_l nodes on level l, k classes)",
                  "description", title="presets")  # fmt: skip
    for r in rows:
        table.add_row(r["name"], r["trunk"], str(r["levels"]), r["formula"], r["description"])
    console.print(table)
