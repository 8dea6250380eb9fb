"""The `nhl` application: registers the command modules and turns user errors into exit code 2."""

from __future__ import annotations

import functools
import shutil
import signal
import sys
import threading
from typing import Any

import typer

from nhlcli import __version__
from nhlcli.cli import (
    bench_cmd,
    build_tree_cmd,
    checks_cmd,
    classes_cmd,
    demo_cmd,
    eval_cmd,
    experts_cmd,
    export_cmd,
    model_cmds,
    predict_cmd,
    profile_cmd,
    train_cmd,
    tree_cmd,
    vocabulary,
)
from nhlcli.cli.common import err_console, examples, print_error
from nhlcli.errors import NhlError
from nhlcli.fileio import INTERRUPTS, created_outputs, guard_inputs, interrupted, note_interrupt

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
experts_cmd.register(app)
export_cmd.register(app)
predict_cmd.register(app)
bench_cmd.register(app)


# Click's usage error (typer may vendor its own click): the base of parse, type and range errors.
UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
ClickError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def _usage_line(e: Any) -> str:
    """Click's usage error as one line: what is wrong, and where the help is."""
    message = " ".join(e.format_message().split())
    if e.ctx is not None and type(e).__name__ == "NoSuchOption":
        message += vocabulary.former_flag_hint(e.option_name, e.ctx.command)
    command = e.ctx.command_path if e.ctx is not None else "nhl"
    return f"{message} (see: {command} --help)"


def command() -> Any:
    """The click command of `nhl`, its help tidied (`vocabulary.tidy`: one spelling per option,
    uniform placeholders, flags without one) and every callback's KeyboardInterrupt carried past
    typer (`_Stopped`)."""
    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo.extend(getattr(cmd, "commands", {}).values())
        vocabulary.tidy(cmd)
        if cmd.callback is not None:
            cmd.callback = _carrying_interrupts(cmd.callback)
    return root


class _Stopped(BaseException):
    """A command's KeyboardInterrupt, carried past typer, which would turn it into a bare exit
    code 130 and lose its message (training says how to resume)."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))


def _carrying_interrupts(callback: Any) -> Any:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Stopped(e) from None

    return run


def main(argv: list[str] | None = None) -> None:
    """Run `nhl`: every failure is one `error:` line; user errors and usage errors exit with 2.

    The command runs inside `guard_inputs`, so no output can overwrite one of its inputs.
    """
    with guard_inputs(), _interrupts_noted():
        _run(argv)


_received: list[int] = []  # the signal that stopped the command (SIGINT or SIGTERM)


def _on_signal(signum: int, frame: Any) -> None:
    if interrupted():  # already stopping: a second Ctrl-C must not break the clean-up
        return
    _received.append(signum)
    note_interrupt()
    raise KeyboardInterrupt


class _interrupts_noted:
    """Ctrl-C or SIGTERM during a command: noted (no output is committed after it), then
    KeyboardInterrupt; both end the command the same way, with exit code 128 + the signal."""

    def __enter__(self) -> None:
        self.previous: dict[int, Any] = {}
        _received.clear()
        if threading.current_thread() is threading.main_thread():
            for signum in INTERRUPTS:
                self.previous[signum] = signal.signal(signum, _on_signal)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _interrupted(message: str = "") -> None:
    """Remove what the command created (not a kept folder, such as a training run with a
    checkpoint), print one line and exit with 130 (Ctrl-C) or 143 (SIGTERM).

    The line is the interrupt's own message when it carries one (training says where the run
    stopped and how to resume it), else `interrupted`."""
    removed = []
    for path in created_outputs():
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    line = message or "interrupted"
    if removed:
        shown = ", ".join(str(p) for p in removed[:3])
        more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
        line += f" (removed what it had created: {shown}{more})"
    err_console.print(line, style="red", markup=False, soft_wrap=True)
    sys.exit(128 + (_received[0] if _received else signal.SIGINT))


def _run(argv: list[str] | None) -> None:
    try:
        rc = command().main(args=argv, prog_name="nhl", standalone_mode=False)
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and getattr(e, "ctx", None) is not None:
            typer.echo(e.ctx.get_help())  # type: ignore[attr-defined]
            sys.exit(0)
        print_error(_usage_line(e))
        sys.exit(2)
    except _Stopped as e:
        _interrupted(str(e))
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except NhlError as e:
        print_error(e)
        sys.exit(2)
    except ClickError as e:  # click's other errors (a file it could not open): one line too
        print_error(" ".join(e.format_message().split()))  # type: ignore[attr-defined]
        sys.exit(2)
    if rc == 130 or interrupted():  # typer turns Ctrl-C into exit code 130
        _interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)  # like click's standalone mode
