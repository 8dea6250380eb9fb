"""Reading the text files a user gives nhl: one-line errors, a UTF-8 BOM accepted, sizes bounded.

Every reader here registers the file as an input of the running command (`nhlcli.fileio`), so no
output of that command can overwrite it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.fileio import register_input, special_kind

MAX_TEXT_BYTES = 256 * 1024 * 1024  # class files, trees, tables, configs


def read_text(
    path: str | Path, what: str = "file", limit: int = MAX_TEXT_BYTES, register: bool = True
) -> str:
    """The UTF-8 text of a user's file (a leading BOM dropped); NhlError if unreadable or huge.

    `register=False` for a command's own state (a run's args.yaml), which it may rewrite."""
    p = Path(path)
    kind = special_kind(p)
    if kind is not None:  # a FIFO would block the read forever; a device has no end
        raise NhlError(f"{what} {p} is {kind}, not a regular file")
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise NhlError(f"{what} not found: {p}") from None
    except OSError as e:
        raise NhlError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if size > limit:
        raise NhlError(f"{what} {p} is {size:,} bytes; nhl reads at most {limit:,}")
    if register:
        register_input(p)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise NhlError(f"{what} {p} is a folder, not a file") from None
    except OSError as e:
        raise NhlError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NhlError(f"{what} {p} is not UTF-8 text (byte {e.start})") from None


def parse_json(text: str, origin: str, what: str = "document") -> Any:
    """JSON from text; NhlError for bad syntax, absurd nesting or absurd numbers."""
    bad = f"{origin}: not a readable JSON {what}"
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as e:
        raise NhlError(f"{bad} ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise NhlError(f"{bad} (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise NhlError(f"{bad} ({str(e).splitlines()[0][:120]})") from None


def read_json(path: str | Path, what: str = "file") -> Any:
    """A user's JSON file (`what` names it in errors: "config", "tree")."""
    p = Path(path)
    return parse_json(read_text(p, f"JSON {what}"), str(p), what)
