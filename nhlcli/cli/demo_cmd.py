"""`nhl demo`: the main job on a built-in default, end to end, with nothing to download.

The shipped WordNet tree of Imagenette (3 levels) → shown with its stats → a randomly initialised
N3HL checkpoint for it → a 5-class expert cut out of it, written to disk, with the parameter/GMAC
table (ResNet50 baseline, full model, expert) from fvcore. Every step is an ordinary command
(`nhl tree show`, `nhl init`, `nhl cutout --profile`); the demo only chains them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nhlcli.cli.common import JSON_OPTION, console, examples, print_json, safe

DEMO_TREE = "imagenette-wordnet-L3"


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog=examples(
            "nhl demo", "nhl demo -o /tmp/nhl-demo --arch n3hl --experts 5", "nhl demo --json"
        ),
    )(demo)


def demo(
    output: Path = typer.Option(
        Path("nhl-demo"), "--output", "-o", help="Folder for the checkpoint and the expert."
    ),
    arch: str = typer.Option("n3hl", "--arch", "-a", help="Preset to build (3-level presets)."),
    experts: int = typer.Option(5, "--experts", min=1, help="Classes in the expert (the first N)."),
    img_size: int = typer.Option(224, "--img-size", help="Input size for the profile."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Build-free tour: shipped Imagenette WordNet tree → N3HL model → 5-class expert + profile."""
    import nhlcli as nhl
    from nhlcli.cli.model_cmds import render_cutout
    from nhlcli.cli.profile_cmd import print_profile
    from nhlcli.cli.tree_cmd import render_rich, stats_table, tree_summary
    from nhlcli.model.cutout import cutout_summary

    tree = nhl.load_tree(DEMO_TREE)
    subset = tree.class_ids[:experts]
    model_dir, expert_dir = output / f"{arch}-imagenette", output / f"{arch}-expert-{len(subset)}"

    if not json_out:
        console.rule(f"1. the category tree ({DEMO_TREE}, shipped; built by nhl build-tree)")
        console.print(render_rich(tree, tree.levels or 3, title=DEMO_TREE, highlight=subset))
        console.print(stats_table(tree, tree_summary(tree)))
        console.rule(f"2. a {arch} network for it (random init: nhl init)")
    model = nhl.build_model(arch, tree, img_size=img_size, seed=0)
    nhl.save_model(model, model_dir, extra={"init": {"seed": 0}})
    if not json_out:
        console.print(
            f"wrote [bold]{safe(model_dir)}[/]: {model.num_classes} classes, nodes per level "
            f"{model.nodes_per_level()}, {model.num_params():,} parameters"
        )
        console.rule(f"3. a {len(subset)}-class expert cut out of it (nhl cutout --profile)")
    expert = nhl.cutout(nhl.load_model(model_dir), subset, origin=str(model_dir))
    nhl.save_model(expert, expert_dir, extra={"cut_from_checkpoint": str(model_dir)})
    summary = {**cutout_summary(model, expert), "path": str(expert_dir)}
    report = nhl.profile(model, subset=expert.class_ids)
    if json_out:
        print_json({"tree": DEMO_TREE, "checkpoint": str(model_dir), "expert": summary,
                    "profile": report.to_dict()})  # fmt: skip
        return
    render_cutout(summary)
    print_profile(report)
    console.print(
        f"\nnext: [bold]nhl train --arch {arch} --tree {DEMO_TREE} --data path/to/imagenette[/] "
        f"then [bold]nhl cutout runs/train/exp/best --classes tench,church --profile[/]"
    )
