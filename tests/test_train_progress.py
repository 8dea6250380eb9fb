"""What a training run shows per epoch: the console line and results.png."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from nhlcli.training.progress import RichReporter
from nhlcli.training.rundir import results_figure


def epoch_row(epoch: int, ema_val_top1: float | None) -> dict[str, Any]:
    return {
        "epoch": epoch, "train_loss": 2.0 / epoch, "train_top1": 30.0 + epoch,
        "val_loss": 2.1 / epoch, "val_top1": 25.0 + epoch, "ema_val_loss": None,
        "ema_val_top1": ema_val_top1, "lr": 0.1 / epoch, "images_per_s": 100.0,
        "data_wait_frac": 0.1, "skipped_images": 0,
    }  # fmt: skip


def epoch_line(row: dict[str, Any]) -> str:
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, width=300, color_system=None))
    reporter.epoch_end(row, improved=False)
    return out.getvalue()


def test_epoch_line_shows_the_ema_top1() -> None:
    line = epoch_line(epoch_row(1, 31.25))
    assert "val loss 2.1000 top-1 26.00%" in line and "EMA val top-1 31.25%" in line
    assert "EMA" not in epoch_line(epoch_row(1, None))  # no --ema: no EMA column


def test_results_png_has_whole_epoch_ticks() -> None:
    import matplotlib.pyplot as plt

    for n in (2, 3, 7):
        fig = results_figure("exp", [epoch_row(e, 20.0 + e) for e in range(1, n + 1)])
        try:
            fig.canvas.draw()
            for ax in fig.axes:
                ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
                assert ticks and all(float(t).is_integer() for t in ticks), (n, ticks)
        finally:
            plt.close(fig)
