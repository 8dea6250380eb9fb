"""The `nhl` application: registers the command modules and turns user errors into exit code 2."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.markup import escape

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


# Click's usage error (typer may vendor its own click): the base of parse, type and range errors.
UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def _usage_line(e: Any) -> str:
    """Click's usage error as one line: what is wrong, and where the help is."""
    message = " ".join(e.format_message().split())
    command = e.ctx.command_path if e.ctx is not None else "nhl"
    return f"{message} (see: {command} --help)"


def command() -> Any:
    """The click command of `nhl`, with flags shown without a value placeholder in --help
    (typer labels them `<bool>`, which reads as if `--json true` were the spelling)."""
    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
    return root


def main(argv: list[str] | None = None) -> None:
    try:
        rc = command().main(args=argv, prog_name="nhl", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)  # like click's standalone mode
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and getattr(e, "ctx", None) is not None:
            typer.echo(e.ctx.get_help())  # type: ignore[attr-defined]
            sys.exit(0)
        err_console.print(f"[bold red]error:[/] {escape(_usage_line(e))}", soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except NhlError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt as e:
        err_console.print(str(e) or "interrupted", markup=False, soft_wrap=True)
        sys.exit(130)
