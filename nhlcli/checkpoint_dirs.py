"""Where a model is on disk: one rule for every command that takes a model (no torch here).

A model is a directory with ``config.json`` and ``model.safetensors`` (a checkpoint or an expert);
either of those two files stands for its directory, and a training run directory stands for its
``best`` checkpoint, else its ``last``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.fileio import register_input
from nhlcli.textio import read_json

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
RUN_TAGS = ("best", "last")  # what a training run directory stands for, in order of preference


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory that `path` names (see the module docstring); NhlError if none."""
    p = Path(path)
    if not p.exists():
        raise NhlError(f"model not found: {p}")
    if p.is_file():
        if p.name not in (WEIGHTS_FILE, CONFIG_FILE):
            raise NhlError(
                f"{p} is a file, not an nhl model (a directory with {WEIGHTS_FILE} and "
                f"{CONFIG_FILE}, or a training run directory)"
            )
        p = p.parent
    elif not (p / CONFIG_FILE).exists():
        for tag in RUN_TAGS:
            if (p / tag / CONFIG_FILE).is_file():
                p = p / tag
                break
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (p / f).is_file()]
    if missing:
        raise NhlError(f"{p} is not an nhl model: missing {' and '.join(missing)}")
    register_input(p)  # no output of the running command may replace or enter it
    return p


def read_config_json(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of the model at `path` (any form `resolve_checkpoint` takes)."""
    f = resolve_checkpoint(path) / CONFIG_FILE
    config = read_json(f, "config")
    if not isinstance(config, dict):
        raise NhlError(f"{f}: not an nhl model config (not a JSON object)")
    return config
