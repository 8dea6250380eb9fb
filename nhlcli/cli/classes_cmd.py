"""`nhl classes list|show`: the built-in class sets and class files."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from nhlcli.cli.common import JSON_OPTION, console, examples, print_json, safe
from nhlcli.hierarchy.classsets import BUILTIN_SETS, builtin_set, imagenet, load_classes


def register(app: typer.Typer) -> None:
    classes = typer.Typer(
        help="Built-in class sets and class files.",
        no_args_is_help=True,
        epilog=examples(
            "nhl classes list", "nhl classes show imagenette", "nhl classes show my-cats.txt --json"
        ),
    )
    classes.command("list", epilog=examples("nhl classes list --json"))(list_sets)
    classes.command(
        "show", epilog=examples("nhl classes show imagewoof", "nhl classes show cats.txt")
    )(show_set)
    app.add_typer(classes, name="classes")


def list_sets(json_out: bool = JSON_OPTION) -> None:
    """List the built-in class sets (name, size, source)."""
    rows: list[dict[str, Any]] = [
        {"name": s.name, "size": len(builtin_set(s.name)), "source": s.source}
        for s in BUILTIN_SETS.values()
    ]
    if json_out:
        print_json(rows)
        return
    table = Table("name", "size", "source", title="built-in class sets")
    for r in rows:
        table.add_row(safe(r["name"]), str(r["size"]), safe(r["source"]))
    console.print(table)


def show_set(
    name: str = typer.Argument(..., help="A built-in class set name or a class file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the classes of a built-in set or a class file (index, wnid, name, synonyms)."""
    cs = load_classes(name)
    cat = imagenet()
    rows: list[dict[str, Any]] = []
    for i, c in enumerate(cs.classes):
        info = cat.by_wnid.get(c.wnid)
        rows.append(
            {
                "index": i,
                "wnid": c.wnid,
                "name": c.name,
                "imagenet_index": info.index if info else None,
                "synonyms": list(info.synonyms) if info else [c.name],
            }
        )
    if json_out:
        print_json({"name": cs.name, "source": cs.source, "size": len(cs), "classes": rows})
        return
    table = Table(
        "#", "wnid", "name", "in1k", "synonyms", title=f"{safe(cs.name)} ({len(cs)} classes)"
    )
    for r in rows:
        in1k = "" if r["imagenet_index"] is None else str(r["imagenet_index"])
        table.add_row(
            str(r["index"]), safe(r["wnid"]), safe(r["name"]), in1k, safe(", ".join(r["synonyms"]))
        )
    console.print(table)
