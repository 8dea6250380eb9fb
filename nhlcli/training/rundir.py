"""Training run directories: naming, lock, args.yaml, results.csv and results.png.

`runs/train/exp` is used when free; otherwise `exp-2`, `exp-3`, … (or `exp` itself with exist_ok):
the numbering of every output folder (`nhlcli.rundirs.numbered_dir`, which evaluation and
prediction use too); a run's folder left before its first checkpoint is taken over.
Every file is written atomically and rewritten whole after each epoch, so results.csv always agrees
with a complete checkpoint: on resume, rows after the checkpoint's epoch are dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from nhlcli.errors import NhlError, write_reason
from nhlcli.fileio import keep_outputs, write_bytes_atomic
from nhlcli.rundirs import numbered_dir
from nhlcli.textio import read_text

ARGS_FILE = "args.yaml"
DATA_FILE = "data.json"  # fingerprint of the image lists the run last trained on
RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"
RESULT_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "train_top1",
    "val_top1",
    "ema_val_loss",
    "ema_val_top1",
    "lr",
    "images_per_s",
    "skipped_images",
    "data_wait_frac",
    "epoch_time_s",
)


INCOMPLETE_FILE = ".incomplete"  # present until the run's first checkpoint is written
LOCK_FILE = ".lock"  # flock-ed by the process training in the run directory


def new_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Create and return the run directory (auto-numbered unless exist_ok), marked incomplete.

    A directory left by a run stopped before its first checkpoint (marked incomplete, not in use)
    is taken over by the next run of that name instead of making `name-2`.
    """
    candidate = numbered_dir(project, name, exist_ok, reusable=is_abandoned)
    if not (candidate / "last").exists():
        _write(candidate / INCOMPLETE_FILE, b"stopped before its first checkpoint\n")
    return candidate


def is_incomplete(run_dir: Path) -> bool:
    """A run directory whose run has not yet written (or never wrote) a checkpoint."""
    return (run_dir / INCOMPLETE_FILE).is_file() and not (run_dir / "last").exists()


def is_abandoned(run_dir: Path) -> bool:
    """Incomplete and not locked by a running process."""
    return is_incomplete(run_dir) and _lock_holder(run_dir) is None


def mark_complete(run_dir: Path) -> None:
    """The run has its first checkpoint: its folder is the user's work from now on (resumable),
    so an interrupted command no longer removes it or anything in it."""
    (run_dir / INCOMPLETE_FILE).unlink(missing_ok=True)
    keep_outputs(run_dir)


@contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock while a run writes into it; NhlError if another holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): no protection
        yield
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _lock_holder(run_dir) or "?"
            raise NhlError(
                f"run directory {run_dir} is in use by another training run (pid {holder}); "
                "wait for it to finish, or train under another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(run_dir: Path) -> str | None:
    """The pid written by the process holding the lock, or None when nobody holds it."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.read(fd, 32).decode(errors="replace").strip() or "?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def write_args(run_dir: Path, settings: dict[str, Any]) -> None:
    text = "# nhl train settings (resume with: nhl train --resume <this run directory>)\n"
    text += yaml.safe_dump(settings, sort_keys=False)
    _write(run_dir / ARGS_FILE, text.encode("utf-8"))


def read_args(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ARGS_FILE
    if not path.is_file():
        raise NhlError(f"{run_dir} is not a training run directory (no {ARGS_FILE})")
    from nhlcli.training.config import load_yaml

    data = load_yaml(read_text(path, "run settings", register=False), str(path))
    if not isinstance(data, dict):
        raise NhlError(f"{path}: expected a mapping of settings")
    return data


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_results(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for row in rows:
        w.writerow([_fmt(row.get(c)) for c in RESULT_COLUMNS])
    _write(run_dir / RESULTS_CSV, buf.getvalue().encode("utf-8"))


def read_results(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / RESULTS_CSV
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def plot_results(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """results.png: loss, top-1, learning rate and throughput per epoch (`results_figure`)."""
    import matplotlib.pyplot as plt

    fig = results_figure(run_dir.name, rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    _write(run_dir / RESULTS_PNG, buf.getvalue())


def results_figure(title: str, rows: Sequence[dict[str, Any]]) -> Any:
    """The figure of results.png (Agg backend): four panels over whole-numbered epoch ticks."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]

    def series(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = (
        ("loss", (("train_loss", "train"), ("val_loss", "val"))),
        ("top-1 (%)", (("train_top1", "train"), ("val_top1", "val"), ("ema_val_top1", "val EMA"))),
        ("learning rate (last step of the epoch)", (("lr", "lr"),)),
        ("training images/s", (("images_per_s", "images/s"),)),
    )
    for ax, (heading, keys) in zip(axes, panels, strict=True):
        for key, label in keys:
            values = series(key)
            if any(not math.isnan(v) for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title(heading)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _write(path: Path, data: bytes) -> None:
    """One file of the run directory, atomically; a refused write is one NhlError."""
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        raise NhlError(f"cannot write {path}: {write_reason(e)}") from None


def write_data_fingerprint(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    _write(run_dir / DATA_FILE, (json.dumps(fingerprint, indent=1) + "\n").encode())


def read_data_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint a run recorded; None for a run from before fingerprints, or a damaged one."""
    path = run_dir / DATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(read_text(path, "data fingerprint", register=False))
    except (NhlError, ValueError):
        return None
    return data if isinstance(data, dict) else None
