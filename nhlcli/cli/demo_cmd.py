"""`nhl demo`: renders `nhl.demo` (nhlcli/tour.py), with nothing to download.

1. the papers' example: an N3HL for the 1000 ImageNet classes and its "meow" expert (the 5
   domestic cats), counted with nothing allocated; 2. the shipped Imagenette tree, with the
   expert's classes (one group) highlighted; 3. a random N3HL for it, saved; 4. the expert cut out
   of it, saved, with its profile. Each step is an ordinary command (`nhl profile`,
   `nhl tree show`, `nhl init`, `nhl cutout --profile`); the demo only chains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from nhlcli.cli.common import JSON_OPTION, console, err_console, examples, print_json, safe

if TYPE_CHECKING:
    from nhlcli.tour import DemoExpert


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog=examples(
            "nhl demo",
            "nhl demo -o /tmp/nhl-demo --arch n3hl --expert-classes 2",
            "nhl demo --json",
        ),
    )(demo)


def demo(
    output: Path = typer.Option(
        Path("nhl-demo"), "--output", "-o", help="Folder for the checkpoint and the expert."
    ),
    arch: str = typer.Option("n3hl", "--arch", "-a", help="Preset to build (3-level presets)."),
    expert_classes: int = typer.Option(
        5,
        "--expert-classes",
        min=1,
        max=10,
        help="Classes in the Imagenette expert: the first N of the smallest tree group that "
        "holds N.",
    ),
    experts: int | None = typer.Option(None, "--experts", min=1, max=10, hidden=True),
    img_size: int = typer.Option(
        224, "--img-size", help="Input size of the Imagenette network (the headline: 224)."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """The papers' example, counted: a 1000-class N3HL and its "meow" expert, then a small
    Imagenette N3HL built, saved and cut into an expert."""
    import nhlcli as nhl
    from nhlcli.cli.model_cmds import render_cutout
    from nhlcli.cli.profile_cmd import print_profile
    from nhlcli.cli.tree_cmd import render_rich, stats_table, tree_summary

    if experts is not None:
        err_console.print("[yellow]note:[/] --experts is now spelled --expert-classes")
        expert_classes = experts
    result = nhl.demo(output, arch=arch, expert_classes=expert_classes, img_size=img_size)
    if json_out:
        print_json(result.to_dict())
        return
    head, small = result.headline, result.small
    classes = head.profile.row("full").counts.num_classes
    console.rule(f'1. the papers\' example: {classes:,} ImageNet classes and "meow"')
    console.print(
        f'"meow" → {head.group}: {", ".join(c["name"] for c in head.classes)} '
        f"(shipped tree {head.tree})",
        markup=False,
    )
    print_profile(head.profile)
    console.print(
        f'[bold]the "meow" expert: {_cut(head)}[/] ({len(head.classes)} of '
        f"{classes:,} classes; counted in {result.headline_seconds:.1f} s, nothing "
        "allocated)"
    )

    tree = nhl.load_tree(small.tree)
    ids = [c["id"] for c in small.classes]
    console.rule(f"2. a network you can hold: Imagenette ({small.tree}, shipped)")
    console.print(render_rich(tree, tree.levels or 3, title=small.tree, highlight=ids))
    console.print(stats_table(tree, tree_summary(tree)))
    console.rule(f"3. the {result.arch} network for it (random init: nhl init)")
    model = small.profile.row("full").counts
    console.print(
        f"wrote [bold]{safe(result.checkpoint)}[/]: {model.num_classes} classes, nodes per level "
        f"{result.cutout['nodes_per_level']['full']}, {model.params:,} parameters"
    )
    console.rule(
        f"4. a {len(ids)}-class expert of one group, {safe(small.group)} (nhl cutout --profile)"
    )
    render_cutout({**result.cutout, "path": str(result.expert_dir)})
    print_profile(small.profile, parts=False)
    console.print(f"[bold]the {safe(small.group)} expert: {_cut(small)}[/]")
    console.print(
        f"\nnext: [bold]nhl train --arch {result.arch} --tree {small.tree} "
        "--data path/to/imagenette[/] then [bold]nhl cutout runs/train/exp/best "
        "--classes instrumentality --profile[/]"
    )


def _cut(expert: DemoExpert) -> str:
    red = expert.reduction_pct
    return f"−{red['params']:.1f} % parameters, −{red['gmacs']:.1f} % GMACs"
