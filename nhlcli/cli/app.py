"""The `nhl` application: registers the command modules and turns user errors into exit code 2."""

from __future__ import annotations

import sys

import typer

from nhlcli import __version__
from nhlcli.cli import (
    build_tree_cmd,
    checks_cmd,
    classes_cmd,
    demo_cmd,
    eval_cmd,
    export_cmd,
    model_cmds,
    predict_cmd,
    profile_cmd,
    train_cmd,
    tree_cmd,
)
from nhlcli.cli.common import err_console, examples
from nhlcli.errors import NhlError

app = typer.Typer(
    name="nhl",
    help="Hierarchical image classifiers (PHL/NHL) whose class branches can be cut out as experts.",
    epilog=examples(
        "nhl classes list",
        "nhl build-tree --source wordnet --classes imagenette --levels 3 -o tree.json",
        "nhl tree show tree.json",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nhl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """nhl: build category trees, hierarchical networks, and cut experts out of them."""


checks_cmd.register(app)
demo_cmd.register(app)
classes_cmd.register(app)
build_tree_cmd.register(app)
tree_cmd.register(app)
profile_cmd.register(app)
model_cmds.register(app)
train_cmd.register(app)
eval_cmd.register(app)
export_cmd.register(app)
predict_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="nhl")
    except NhlError as e:
        from rich.markup import escape  # messages may hold brackets: pip install 'nhl[counters]'

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        sys.exit(130)
