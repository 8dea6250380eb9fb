"""Where the shipped data (class sets, tables, trees) lives.

In a source checkout or an editable install it is the top-level `hierarchies/` folder; in a
wheel it is copied into the package as `nhlcli/_hierarchies` (see pyproject.toml).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from nhlcli.errors import NhlError


@cache
def hierarchies_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_hierarchies", here.parent / "hierarchies"):
        if (candidate / "classsets").is_dir():
            return candidate
    raise NhlError("the shipped hierarchies/ data is missing from this installation; reinstall nhl")


def shipped(*parts: str) -> Path:
    """Path of a shipped data file, e.g. shipped("classsets", "imagenette.txt")."""
    return hierarchies_dir().joinpath(*parts)
