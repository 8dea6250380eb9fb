"""Run directories: naming, args.yaml, results.csv and results.png.

The same naming serves evaluation (`runs/eval/NAME`) and prediction outputs (`runs/predict/NAME`).
`runs/train/exp` is used when free; otherwise `exp-2`, `exp-3`, … (or `exp` itself with exist_ok).
Every file is written atomically and rewritten whole after each epoch, so results.csv always agrees
with a complete checkpoint: on resume, rows after the checkpoint's epoch are dropped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from nhlcli.errors import NhlError
from nhlcli.fileio import write_bytes_atomic, write_text_atomic

ARGS_FILE = "args.yaml"
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


def new_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Create and return the run directory (auto-numbered unless exist_ok)."""
    base = Path(project)
    candidate = base / name
    if not exist_ok:
        n = 2
        while candidate.exists():
            candidate = base / f"{name}-{n}"
            n += 1
    try:
        candidate.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as e:
        raise NhlError(f"cannot create run directory {candidate}: {e.strerror or e}") from None
    return candidate


def write_args(run_dir: Path, settings: dict[str, Any]) -> None:
    text = "# nhl train settings (resume with: nhl train --resume <this run directory>)\n"
    text += yaml.safe_dump(settings, sort_keys=False)
    write_text_atomic(run_dir / ARGS_FILE, text)


def read_args(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ARGS_FILE
    if not path.is_file():
        raise NhlError(f"{run_dir} is not a training run directory (no {ARGS_FILE})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise NhlError(f"{path}: unreadable ({type(e).__name__})") from None
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
    write_text_atomic(run_dir / RESULTS_CSV, buf.getvalue())


def read_results(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / RESULTS_CSV
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def plot_results(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """results.png: loss, top-1, learning rate and throughput per epoch (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key, label in keys:
            values = series(key)
            if any(not math.isnan(v) for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(run_dir / RESULTS_PNG, buf.getvalue())
