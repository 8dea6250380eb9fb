"""Typer options generated from declared settings (`nhlcli.setting_fields.SettingSpec`).

`nhl train` (the `TrainConfig` settings) and `nhl build-tree` (every tree source's options
dataclass) build their options here, so a setting's help, type, default and spelling are written
once, in its dataclass field.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
from rich.markup import escape

from nhlcli.setting_fields import SettingSpec


def setting_help(spec: SettingSpec) -> str:
    """The help text: the declared help, the choices, the default (rich markup escaped)."""
    default = "" if spec.default in (None, "") else f" [default: {spec.default}]"
    if spec.kind is bool:
        default = ""
    allowed = f" ({spec.range_text()})" if spec.choices else ""
    return escape(f"{spec.help}{allowed}{default}")  # help is rich markup: keep [..] literal


def decls(spec: SettingSpec, taken: frozenset[str] = frozenset()) -> list[str]:
    """Click declarations: `-t/--tree` -> ['-t', '--tree']; `--x/--no-x` stays one declaration
    (a switch pair); then the old spellings (`aliases`) that no other option in `taken` owns."""
    flag = spec.flag
    own = flag.split("/") if not flag.startswith("--") and "/" in flag else [flag]
    return own + [a for a in spec.aliases if a not in taken]


def option(
    spec: SettingSpec, *, panel: str | None = None, taken: frozenset[str] = frozenset()
) -> Any:
    """A `typer.Option` for the setting; None means "not given" (the declared default applies)."""
    return typer.Option(
        None,
        *decls(spec, taken),
        help=setting_help(spec),
        show_default=False,
        rich_help_panel=panel,
    )


def parameter(name: str, spec: SettingSpec, **how: Any) -> inspect.Parameter:
    """A keyword parameter `name` carrying the setting's option (for a generated signature)."""
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(name, kind, default=option(spec, **how), annotation=spec.kind | None)


def param_name(spec: SettingSpec) -> str:
    """The Python name of the setting's option: its long flag (`--llm-model` -> llm_model)."""
    return spec.long_flag.removeprefix("--").replace("-", "_")
