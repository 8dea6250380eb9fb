"""`nhl tree show|export|validate|compare`: look at, convert, check and score category trees."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.tree import Tree as RichTree

from nhlcli.cli.common import (
    DEVICE_OPTION,
    JSON_OPTION,
    console,
    examples,
    print_json,
    print_table,
    safe,
)
from nhlcli.errors import NhlError
from nhlcli.hierarchy.drawing import draw_tree
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree
from nhlcli.hierarchy.tree_export import FORMATS, export_tree, outline, tree_summary
from nhlcli.selection import select_classes

TREE_ARG = typer.Argument(..., help="A tree file, or a shipped tree such as imagenette-wordnet-L3.")
SHOW_ALL_UP_TO = 150  # classes: bigger trees are shown down to the last group level by default


def register(app: typer.Typer) -> None:
    tree = typer.Typer(
        help="Show, export and validate category trees.",
        no_args_is_help=True,
        epilog=examples(
            "nhl tree show imagenette-wordnet-L3",
            "nhl tree export tree.json --format graphml -o tree.graphml",
            "nhl tree validate tree.json --levels 3",
            "nhl tree compare a.json b.json --model runs/train/r50 --data imagenette2",
        ),
    )
    tree.command(
        "show",
        epilog=examples(
            "nhl tree show tree.json",
            "nhl tree show imagenet1k-wordnet-L3 --depth 1",
            "nhl tree show tree.json --json",
            "nhl tree show imagenet1k-wordnet-L3 --highlight cats.txt -o cutout.png",
            "nhl tree show imagenet100-wordnet-L3 --highlight experts/cats -o cutout.html",
        ),
    )(show)
    tree.command(
        "export",
        epilog=examples(
            "nhl tree export tree.json --format graphml -o tree.graphml",
            "nhl tree export tree.json --format dot -o tree.dot",
            "nhl tree export imagenette-wordnet-L3 --format png -o tree.png",
        ),
    )(export)
    tree.command(
        "validate",
        epilog=examples(
            "nhl tree validate tree.json", "nhl tree validate tree.json --levels 3 --json"
        ),
    )(validate)
    tree.command(
        "compare",
        epilog=examples(
            "nhl tree compare imagenette-wordnet-L3 induced.json",
            "nhl tree compare wordnet.json induced.json --model runs/train/r50 --data imagenette2",
            "nhl tree compare a.json b.json --model runs/train/r50 --data imagenette2 --json",
            "nhl tree compare a.json --model runs/train/r50 --data imagenette2 --random-control",
            "nhl tree compare a.json b.json --model runs/train/r50 --data imagenette2 -o cmp.png",
        ),
    )(compare)
    app.add_typer(tree, name="tree")


# --------------------------------------------------------------------------- show
def show(
    tree_spec: str = TREE_ARG,
    depth: int | None = typer.Option(
        None,
        "--depth",
        "-d",
        min=0,
        help="Open groups down to this depth (0: stats only). Default: everything for up to "
        f"{SHOW_ALL_UP_TO} classes, else the group levels.",
    ),
    highlight: str | None = typer.Option(
        None,
        "--highlight",
        help="Classes to highlight (red paths): a class set, class file, comma-separated classes "
        "or tree nodes, or a model/expert folder.",
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Draw the tree to this picture instead (.png, .svg or .html; large trees summarised).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Print a tree (collapsible by --depth) and its stats: depth, nodes per level, singleton
    groups, largest group. With -o, draw it (the expert's paths in red with --highlight)."""
    tree = resolve_tree(tree_spec)
    marked = select_classes(tree, highlight) if highlight is not None else []
    if output is not None:
        draw_tree(tree, output, marked)
        if json_out:
            print_json({"tree": tree_spec, "output": output, "highlighted": marked})
        else:
            console.print(
                f"wrote {safe(output)} ({tree.num_classes} classes, {len(marked)} highlighted)"
            )
        return
    stats = tree_summary(tree)
    if depth is None:
        full = tree.num_classes <= SHOW_ALL_UP_TO
        depth = stats["depth"] if full else max(1, min(2, stats["depth"] - 1))
    if json_out:
        print_json(
            {
                "tree": tree_spec,
                "stats": stats,
                "provenance": tree.provenance,
                "depth_shown": depth,
                "outline": outline(tree, depth),
                "highlighted": marked,
            }
        )
        return
    if depth > 0:
        console.print(render_rich(tree, depth, title=tree_spec, highlight=marked))
        console.print(legend(tree, depth), style="dim", markup=False)
    console.print(stats_table(tree, stats))


def render_rich(tree: Tree, depth: int, title: str, highlight: Sequence[str] = ()) -> RichTree:
    marked = set(highlight)
    on_path = {a for c in marked for a in tree.path(c)}
    prov = tree.provenance
    source = safe(prov.get("source", "?"))
    label = f"[bold]{safe(title)}[/]  [dim]{source}, {tree.num_classes} classes[/]"
    root = RichTree(label, guide_style="dim")

    def add(branch: RichTree, items: list[dict[str, Any]]) -> None:
        for item in items:
            if item["kind"] == "class":
                tags = "".join(
                    f" [yellow]{_tag(k, v)}[/]" for k, v in item.get("attrs", {}).items()
                )
                name = _esc(item["name"])
                name = f"[bold red]{name}[/]" if item["id"] in marked else name
                branch.add(f"{name}{_id(item)} [dim]#{item['index']}[/]{tags}")
                continue
            style = "bold red" if item["id"] in on_path else "bold cyan"
            n = item["classes"]
            text = f"[{style}]{_esc(item['name'])}[/]{_id(item)} ({n} class{'es' * (n != 1)})"
            if "children" in item:
                add(branch.add(text), item["children"])
            else:
                branch.add(text + " [dim]…[/]")

    add(root, outline(tree, depth))
    return root


def _id(item: dict[str, Any]) -> str:
    """The node's id after its name, dimmed; left out when it is the name (table trees)."""
    return "" if item["id"] == item["name"] else f" [dim]{safe(item['id'])}[/]"


def legend(tree: Tree, depth: int) -> str:
    """One line saying what the printout's notation means (the parts it shows)."""
    shown = [n for n in tree.nodes if tree.depth(n.id) <= depth]
    parts = ["after each name its id (--classes and --highlight take it)"]
    if any(tree.depth(c) <= depth for c in tree.class_ids):
        parts.append("#i: a class's output (logit) index")
    if any("@" in n.id for n in shown):
        parts.append("<class id>@k: a group holding only that class, at level k")
    if any(tree.depth(n.id) == depth for n in tree.nodes):
        parts.append("…: more below (raise --depth)")
    if any(n.id == n.name for n in shown):
        parts.append("an id equal to its name is not repeated")
    return "legend: " + "; ".join(parts)


def _tag(key: str, value: Any) -> str:
    if value is True:
        return _esc(key)
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return _esc(f"{key}={value}")


def _esc(text: str) -> str:
    return safe(text)


def stats_table(tree: Tree, stats: dict[str, Any]) -> Table:
    t = Table(show_header=False, title="stats", title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    levels = stats["levels"]
    t.add_row("classes", str(stats["classes"]))
    t.add_row(
        "levels", str(levels) if levels is not None else f"not levelled (depth {stats['depth']})"
    )
    t.add_row("nodes per level", " / ".join(map(str, stats["nodes_per_level"])))
    t.add_row("singleton groups", f"{stats['singleton_groups']} (nodes with one child)")
    lg = stats["largest_group"]
    kids = f"{lg['children']} {'child' if lg['children'] == 1 else 'children'}"
    t.add_row("largest group", f"{safe(lg['name'])} ({kids})")
    placed = _count_attr(tree, "placed_by")
    if placed:
        t.add_row("placed by", safe(", ".join(f"{k}: {v}" for k, v in sorted(placed.items()))))
    ambiguous = sum(1 for c in tree.classes if c.attrs.get("ambiguous"))
    if ambiguous:
        t.add_row("ambiguous classes", f"{ambiguous} (several parents in the source)")
    prov = tree.provenance
    date = prov.get("date") or "none (pinned)"
    t.add_row("source", safe(f"{prov.get('source', '?')}  {prov.get('tool', '')}  date {date}"))
    return t


def _count_attr(tree: Tree, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in tree.classes:
        if key in c.attrs:
            out[str(c.attrs[key])] = out.get(str(c.attrs[key]), 0) + 1
    return out


# --------------------------------------------------------------------------- export
def export(
    tree_spec: str = TREE_ARG,
    fmt: str | None = typer.Option(
        None, "--format", "-f", help=f"One of {', '.join(FORMATS)} (default: from the file suffix)."
    ),
    output: str = typer.Option(..., "--output", "-o", help="The file to write."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Export a tree as GraphML, DOT, node-link JSON or a picture (PNG/SVG; big ones summarised)."""
    if fmt is not None and fmt not in FORMATS:
        raise NhlError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    tree = resolve_tree(tree_spec)
    used = export_tree(tree, output, fmt)
    if json_out:
        print_json({"tree": tree_spec, "output": output, "format": used})
    else:
        console.print(f"wrote {safe(output)} ({used}, {tree.num_classes} classes)")


# --------------------------------------------------------------------------- validate
def validate(
    tree_spec: str = TREE_ARG,
    levels: int | None = typer.Option(
        None, "--levels", "-l", min=1, help="Also require every class at this depth."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Check a tree file (format, structure, optionally the number of levels); exit 2 if invalid."""
    tree = resolve_tree(tree_spec)
    if levels is not None:
        tree.require_levels(levels)
    stats = tree.stats()
    if json_out:
        print_json(
            {
                "tree": tree_spec,
                "valid": True,
                "classes": stats["classes"],
                "levels": stats["levels"],
                "nodes_per_level": stats["nodes_per_level"],
            }
        )
    else:
        lv = stats["levels"] if stats["levels"] is not None else "not levelled"
        console.print(
            f"[green]valid[/]: {safe(tree_spec)}: {stats['classes']} classes, levels {lv}, "
            f"nodes per level {' / '.join(map(str, stats['nodes_per_level']))}"
        )


# --------------------------------------------------------------------------- compare
def compare(
    trees: list[str] = typer.Argument(..., help="Tree files or shipped tree names."),
    model: Path | None = typer.Option(
        None, "--model", help="A trained model (checkpoint or run directory); needs --data."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Folder of class folders (DIR/val if present) for --model."
    ),
    group_score: str = typer.Option(
        "sum",
        "--group-score",
        help="Group top-1 from the class scores: sum (of member softmax probabilities) or max.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Images per batch."),
    img_size: int | None = typer.Option(
        None, "--img-size", help="Resolution (default: the model's)."
    ),
    max_batches: int | None = typer.Option(
        None, "--max-val-batches", min=1, help="Read at most N batches of images."
    ),
    device: str = DEVICE_OPTION,
    output: str | None = typer.Option(
        None, "--output", "-o", help="Also draw the scores to a picture (.png, .svg, .pdf)."
    ),
    random_control: bool = typer.Option(
        False,
        "--random-control",
        help="Add a control row: the first tree with its classes shuffled (same shape).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --random-control tree."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Score candidate trees for a nested network, per level: nodes, singleton groups, balance,
    agreement with WordNet; with --model and --data also the share of the model's confusions
    inside groups, feature silhouette and group top-1 (docs/trees.md explains them)."""
    import nhlcli as nhl
    from nhlcli.cli.common import err_console

    with err_console.status(f"scoring {len(trees)} tree(s)"):
        result = nhl.compare_trees(
            trees, model, data, group_score=group_score, batch_size=batch_size,
            img_size=img_size, max_batches=max_batches, device=device,
            random_control=random_control, seed=seed,
        )  # fmt: skip
    if output is not None:
        from nhlcli.hierarchy.score_chart import draw_comparison

        draw_comparison(result, output)
    if json_out:
        print_json({**result.to_dict(), "output": output})
        return
    for table in compare_tables(result):
        print_table(table)
    if result.ranking:
        console.print(
            f"ranking by fit (mean confusion gain): {' > '.join(result.ranking)}", markup=False
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {safe(note)}", soft_wrap=True)
    if output is not None:
        console.print(f"wrote {output}", markup=False)


def compare_tables(result: Any) -> list[Table]:
    """One table per tree: a row per level."""
    with_model = result.evidence is not None
    cols = ["level", "nodes", "single", "balance", "wordnet"]
    if with_model:
        cols += ["inside", "chance", "gain", "silhouette", f"group top-1 ({result.group_score})"]

    def num(v: float | None, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{v:.2f}%" if pct else f"{v:.3f}"

    tables = []
    for t in result.trees:
        fit = f", fit {t.fit:.3f}" if t.fit is not None else ""
        table = Table(*cols, title=f"{t.name} ({t.classes} classes{fit})", title_justify="left")
        for r in t.rows:
            cells = [str(r.level), str(r.nodes), str(r.singletons), num(r.balance),
                     num(r.wordnet)]  # fmt: skip
            if with_model:
                cells += [num(r.confusion_share), num(r.confusion_chance), num(r.confusion_gain),
                          num(r.silhouette), num(r.group_top1, pct=True)]  # fmt: skip
            table.add_row(*cells)
        tables.append(table)
    return tables
