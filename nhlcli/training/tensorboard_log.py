"""`--tensorboard`: the epoch's scalars written with TensorBoard's own `SummaryWriter`.

Written to `RUN/tensorboard/` on rank 0, one point per epoch (results.csv stays the record):
losses, top-1 (train, val, val per tree level), the learning rate used, images/s, and with
`--ema` the EMA model's validation. View with `tensorboard --logdir runs/train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError

TB_DIR = "tensorboard"
SCALARS = {  # results row key -> TensorBoard tag
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_top1": "top1/train",
    "val_top1": "top1/val",
    "ema_val_loss": "loss/val_ema",
    "ema_val_top1": "top1/val_ema",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def open_writer(run_dir: Path) -> Any:
    """A SummaryWriter on RUN/tensorboard; NhlError with the install hint when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise NhlError(
            "--tensorboard needs the tensorboard package: pip install 'nhl[tensorboard]' "
            "(or pip install tensorboard)"
        ) from None
    return SummaryWriter(log_dir=str(run_dir / TB_DIR))


def log_epoch(writer: Any, row: dict[str, Any], level_top1: list[float]) -> None:
    """One epoch's scalars at step = epoch number."""
    epoch = int(row["epoch"])
    for key, tag in SCALARS.items():
        if row.get(key) is not None:
            writer.add_scalar(tag, float(row[key]), epoch)
    for d, acc in enumerate(level_top1, start=1):
        writer.add_scalar(f"top1_level/val_level{d}", acc, epoch)
    writer.flush()
