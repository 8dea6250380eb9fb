"""The option vocabulary as `--help` shows it: one spelling per option, uniform placeholders, help
text that the terminal wraps.

`tidy(cmd)` (applied to every command by `nhlcli.cli.app.command`) keeps one spelling of each
option in the help's option column and moves the others into hidden twin options that still parse:
an old spelling (`--base-url` of `--llm-base-url`, README "Deprecated spellings") and the negative
half of a switch (`--no-save` of `--save`, named in the help text instead). An 80-column help then
has room for its descriptions. Each option without a declared placeholder gets the vocabulary's
(`--tree TREE`, `--data DIR`) or its type's (`N`, `NUM`, `TEXT`, `PATH`); arguments are shown
upper-case and without typer's braces (`nhl eval [OPTIONS] MODEL`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

# The placeholder of a shared option, the same in every command that has it.
PLACEHOLDERS = {
    "--arch": "ARCH",
    "--tree": "TREE",
    "--data": "DIR",
    "--classes": "CLASSES",
    "--output": "PATH",
    "--config": "FILE",
    "--resume": "RUN",
    "--model": "MODEL",
    "--device": "DEVICE",
    "--batch-size": "N",
    "--project": "DIR",
    "--name": "NAME",
    "--img-size": "PX",
}
# A type's placeholder, for every other option (typer's own label, e.g. `<int range>`, otherwise).
TYPE_PLACEHOLDERS = {"int": "N", "float": "NUM", "str": "TEXT", "path": "PATH"}
# The short flags of the vocabulary (README "Options: one vocabulary"), one meaning each.
SHORT_FLAGS = {
    "-a": "--arch",
    "-b": "--batch-size",
    "-c": "--classes",
    "-t": "--tree",
    "-o": "--output",
}
# Short flags that meant something else in an older version, and the option they were then.
FORMER_SHORT_FLAGS = {"-c": "--config", "-t": "--table"}
TWIN_SUFFIX = "__spelling"  # the parameter name of a hidden twin: <option's name>__spelling<i>


def tidy(cmd: Any) -> None:
    """One spelling per option in `cmd`'s help (the others parse through hidden twins), uniform
    placeholders, paragraphs without hard line breaks. Idempotent."""
    if getattr(cmd, "_nhl_tidy", False):
        return
    cmd._nhl_tidy = True
    import typer

    ctx = typer.Context(cmd)
    cmd.help = unwrap(cmd.help)
    twins: dict[str, tuple[str, bool]] = {}  # twin name -> (option's name, negative spelling)
    for param in list(cmd.params):
        param.help = unwrap(getattr(param, "help", None))
        if not _is_option(param):
            _name_argument(param)
            continue
        _place_holder(param, ctx)
        for twin, negative in _split_spellings(cmd, param):
            twins[twin.name] = (param.name, negative)
    if twins:
        cmd.callback = _merging(cmd.callback, twins)
    help_option = cmd.get_help_option(ctx)
    if help_option is not None:  # typer labels it `<bool>`, as if `--help true` were the spelling
        help_option.metavar = ""


def unwrap(text: str | None) -> str | None:
    """Paragraphs (blank-line separated) as single lines, for rich to wrap at the terminal's
    width (a docstring's line breaks otherwise show mid-sentence)."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def former_flag_hint(name: str, cmd: Any) -> str:
    """For an unknown option that was a short flag of this command once (`train -c FILE`): where
    its option went (`; use --config`), else ""."""
    former = FORMER_SHORT_FLAGS.get(name)
    if former is None or not any(former in p.opts for p in cmd.params):
        return ""
    now = f" ({name} is {SHORT_FLAGS[name]} elsewhere)" if name in SHORT_FLAGS else ""
    return f"; use {former}{now}"


def spelling_of(param: Any) -> str | None:
    """The option a hidden twin is a spelling of (`--llm-base-url`), else None."""
    return getattr(param, "nhl_spelling_of", None)


def _is_option(param: Any) -> bool:
    return any(o.startswith("-") for o in param.opts)


def _name_argument(param: Any) -> None:
    name = param.metavar or param.name.upper()
    param.metavar = name.upper()
    shown = param.metavar + ("..." if param.nargs != 1 else "")
    usage = shown if param.required else f"[{shown}]"
    param.get_usage_pieces = lambda ctx: [usage]  # typer would write {MODEL}


def _place_holder(param: Any, ctx: Any) -> None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.metavar = ""
        return
    if param.metavar:
        return
    long = next((o for o in param.opts if o.startswith("--")), "")
    if long in PLACEHOLDERS:
        param.metavar = PLACEHOLDERS[long]
        return
    label = _type_label(param, ctx)
    if label in TYPE_PLACEHOLDERS:
        param.metavar = TYPE_PLACEHOLDERS[label]


def _type_label(param: Any, ctx: Any) -> str:
    """int, float, str, path, ... (typer's `<int range>` label, or click's type name)."""
    if hasattr(param, "display_type"):  # typer's own parameter classes (typer >= 0.20)
        label = param.display_type(ctx)
    else:
        label = str(param.type.name)
    label = label.strip("<>").lower().removesuffix(" range")
    label = label.removeprefix("list[").removesuffix("]")  # a repeatable option: one value
    return {"integer": "int", "text": "str"}.get(label, label)


def _split_spellings(cmd: Any, param: Any) -> list[tuple[Any, bool]]:
    """Move every long spelling but the first, and a switch's negative half, into hidden twins."""
    longs = [o for o in param.opts if o.startswith("--")]
    old = longs[1:]
    negative = [o for o in getattr(param, "secondary_opts", []) if o.startswith("--")]
    if not old and not negative:
        return []
    canonical = longs[0]
    param.opts = [o for o in param.opts if o not in old]
    param.secondary_opts = [o for o in param.secondary_opts if o not in negative]
    if negative:
        param.help = f"{param.help or ''} ({' / '.join(negative)}: off)".strip()
    twins = []
    for i, (spellings, is_negative) in enumerate(((old, False), (negative, True))):
        if not spellings:
            continue
        twin = copy.copy(param)
        twin.opts, twin.secondary_opts = list(spellings), []
        twin.name = f"{param.name}{TWIN_SUFFIX}{i}"
        twin.hidden, twin.required, twin.default = True, False, None
        twin.nhl_spelling_of = canonical
        cmd.params.insert(cmd.params.index(param) + 1, twin)
        twins.append((twin, is_negative))
    return twins


def _merging(callback: Callable[..., Any], twins: dict[str, tuple[str, bool]]) -> Any:
    """The callback, with the value of each twin that was given handed to its option (given in
    both spellings, the twin's wins)."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        for twin, (name, negative) in twins.items():
            value = kwargs.pop(twin, None)
            # not given: None, a flag's twin reads False, a multiple option's twin ()
            if value is None or value is False or value == ():
                continue
            kwargs[name] = False if negative else value
        return callback(*args, **kwargs)

    return run
