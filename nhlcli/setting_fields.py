"""Settings declared once, as dataclass fields: `setting(default, help, ...)` and their specs.

A settings dataclass (`TrainConfig`, a tree source's options, `LLMSettings`) declares each
setting with `setting(...)`: its default, a one-line help, its command-line spelling (`flag`, plus
old spellings in `aliases`), its allowed values and whether it is a path. `specs_of(cls)` reads
them back as `SettingSpec`s, the one description every consumer derives from: the checks of
`nhlcli.training.config`, the options of `nhl train` and `nhl build-tree`
(`nhlcli.cli.setting_options`), and the docs tables. Fields declared without `setting(...)` are
for library callers only (no option).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any

META_KEY = "nhl_setting"


@dataclass(frozen=True)
class SettingSpec:
    """What one setting is: the single source of its checks, option and docs row."""

    name: str
    kind: type  # int, float, bool, str or Path
    optional: bool  # None is a valid value ("derived": see the help text)
    default: Any
    help: str
    flag: str  # the command-line spelling, e.g. "--batch-size", "-t/--tree" or "--x/--no-x"
    aliases: tuple[str, ...] = ()  # old spellings still read (e.g. "--base-url")
    choices: tuple[str, ...] = ()
    low: float | None = None  # smallest allowed value (inclusive unless low_open)
    low_open: bool = False
    high: float | None = None  # largest allowed value (inclusive unless high_open)
    high_open: bool = False
    resumable: bool = False  # may differ when a run is resumed
    path: bool = False  # a file or folder: saved absolute in args.yaml

    @property
    def key(self) -> str:
        """The YAML spelling of args.yaml, `--print-config` and the docs (`batch_size`; a config
        file may also spell it `batch-size`)."""
        return self.name

    @property
    def long_flag(self) -> str:
        """The option's own long spelling (`--tree` of `-t/--tree`, `--x` of `--x/--no-x`)."""
        return next(p for p in self.flag.split("/") if p.startswith("--"))

    def range_text(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        if self.low is None and self.high is None:
            return ""
        lo = "" if self.low is None else f"{'(' if self.low_open else '['}{_num(self.low)}"
        hi = "" if self.high is None else f"{_num(self.high)}{')' if self.high_open else ']'}"
        if self.high is None:
            return f"{'>' if self.low_open else '≥'} {_num(self.low)}"  # type: ignore[arg-type]
        if self.low is None:
            return f"{'<' if self.high_open else '≤'} {_num(self.high)}"
        return f"{lo}, {hi}"

    def problem(self, value: Any) -> str | None:
        """Why `value` (already of the right type) is not allowed, or None."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return f"'{self.name}' is {value!r}, not one of {', '.join(self.choices)}"
        if self.kind in (int, float):
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return f"'{self.name}' is {value!r}, must be {self.range_text()}"
            if self.high is not None and (
                value >= self.high if self.high_open else value > self.high
            ):
                return f"'{self.name}' is {value!r}, must be {self.range_text()}"
        return None


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = False,
    resumable: bool = False,
    path: bool = False,
) -> Any:
    """Declare one setting: a dataclass field carrying its `SettingSpec` parts.

    `flag` defaults to `--<name>` with dashes. A bool setting with a plain flag (no `/`) is
    switched away from its default by giving the flag (`--deterministic`, `--llm-no-cache`).
    """
    meta = {
        "help": help,
        "flag": flag,
        "aliases": aliases,
        "choices": choices,
        "low": low,
        "low_open": low_open,
        "high": high,
        "high_open": high_open,
        "resumable": resumable,
        "path": path,
    }
    return field(default=default, metadata={META_KEY: meta})


def field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """(type, None allowed) of every field of a dataclass, `X | None` unwrapped."""
    hints = typing.get_type_hints(cls)  # each class of the MRO in its own module's names
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        kind = next(a for a in args if a is not type(None)) if optional else hint
        out[f.name] = (kind, optional)
    return out


def specs_of(cls: type) -> tuple[SettingSpec, ...]:
    """The `SettingSpec` of every field of `cls` declared with `setting(...)`, in order."""
    types_ = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        if META_KEY not in f.metadata:
            continue
        meta = dict(f.metadata[META_KEY])
        kind, optional = types_[f.name]
        flag = meta.pop("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        out.append(SettingSpec(f.name, kind, optional, default, flag=flag, **meta))
    return tuple(out)


def given_value(spec: SettingSpec, value: Any) -> Any:
    """The setting's value from its option's value: a plain bool flag switches the default."""
    if spec.kind is bool and value is True and "/" not in spec.flag:
        return not spec.default
    return value
