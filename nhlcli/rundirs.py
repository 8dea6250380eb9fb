"""Numbered output folders: `runs/train/exp`, `runs/eval/exp-2`, `runs/predict/exp-3`, ...

Training runs, evaluation reports and prediction outputs all name their folder this way: `name`
when free, else `name-2`, `name-3`, … (or `name` itself with exist_ok). A folder is never one of
the command's inputs (`fileio.check_output`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.fileio import check_output, note_created


def numbered_dir(
    project: str | Path,
    name: str,
    exist_ok: bool = False,
    reusable: Callable[[Path], bool] | None = None,
) -> Path:
    """Create and return `project/name`, or `name-2`, `name-3`, … when taken (exist_ok: `name`
    itself); a taken directory for which `reusable` says True is used again."""
    base = Path(project)
    candidate = base / name
    if not exist_ok:
        n = 2
        while candidate.exists() and not (reusable is not None and reusable(candidate)):
            candidate = base / f"{name}-{n}"
            n += 1
    check_output(candidate, whole_dir=True)
    existed = candidate.exists()
    try:
        candidate.mkdir(parents=True, exist_ok=exist_ok or existed)
    except OSError as e:
        raise NhlError(f"cannot create output directory {candidate}: {e.strerror or e}") from None
    if not existed:
        note_created(candidate)  # an interrupted command removes it again
    return candidate
