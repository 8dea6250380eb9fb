"""Progress reporting for training: a silent reporter and a rich one (bars, per-epoch summary)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainReporter:
    """Callbacks of the training loop (rank 0 only). The base class ignores everything."""

    def start(self, info: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, step: int, loss: float, top1: float, images_per_s: float) -> None: ...
    def val_start(self, steps: int) -> None: ...
    def val_step(self, step: int) -> None: ...
    def epoch_end(self, row: dict[str, Any], improved: bool) -> None: ...
    def end(self) -> None: ...


class SilentReporter(TrainReporter):
    pass


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}%"


def _num(v: Any, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


PLAIN_EVERY_S = 30.0  # the least time between two step lines in plain mode


class RichReporter(TrainReporter):
    """On a terminal: an overall bar over all epochs (time left for the run) and one for the
    current epoch. Elsewhere (a pipe, a file, a notebook), where bars would not redraw: the same
    start and epoch lines as plain lines, and a step line at most every `PLAIN_EVERY_S` seconds."""

    def __init__(self, console: Console, plain: bool | None = None) -> None:
        self.console = console
        self.plain = not console.is_terminal if plain is None else plain
        self.epoch_label = ""
        self.epoch_steps = 0
        self.last_line = 0.0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.run_task: TaskID | None = None
        self.epoch_task: TaskID | None = None
        self.val_task: TaskID | None = None
        self.epochs = 0

    def start(self, info: dict[str, Any]) -> None:
        self.epochs = int(info["epochs"])
        c = self.console
        wrap = self.plain  # one line each in a file or a notebook
        start = f", resuming after epoch {info['start_epoch']}" if info["start_epoch"] else ""
        c.print(
            f"[bold]{info['arch']}[/] · {info['classes']} classes · "
            f"{info['params']:,} parameters · "
            f"{info['train_images']:,} train / {info['val_images']:,} val images{start}",
            soft_wrap=wrap,
        )
        c.print(
            f"device {info['device']} ×{info['world']} · {info['precision']} · "
            f"batch {info['batch_size']} · lr {info['lr']:.4g} · {info['workers']} loader workers",
            soft_wrap=wrap,
        )
        if info["run_dir"]:
            c.print(f"run directory: [cyan]{escape(str(info['run_dir']))}[/]", soft_wrap=wrap)
        if self.plain:
            return
        self.progress.start()
        remaining = self.epochs - int(info["start_epoch"])
        self.run_task = self.progress.add_task("run", total=remaining, stats="")

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)  # one line, however long

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch_label, self.epoch_steps = f"epoch {epoch}/{epochs}", steps
        self.last_line = time.monotonic()
        if self.plain:
            return
        if self.epoch_task is not None:
            self.progress.remove_task(self.epoch_task)
        if self.val_task is not None:
            self.progress.remove_task(self.val_task)
            self.val_task = None
        self.epoch_task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, stats="")

    def step(self, step: int, loss: float, top1: float, images_per_s: float) -> None:
        stats = f"loss {loss:.4f} · top-1 {top1:5.1f}% · {images_per_s:,.0f} img/s"
        if self.plain:
            now = time.monotonic()
            if now - self.last_line >= PLAIN_EVERY_S and step < self.epoch_steps:
                self.last_line = now
                self.message(f"{self.epoch_label}: step {step}/{self.epoch_steps} · {stats}")
        elif self.epoch_task is not None:
            self.progress.update(self.epoch_task, completed=step, stats=stats)

    def val_start(self, steps: int) -> None:
        if self.plain:
            return
        self.val_task = self.progress.add_task("  val", total=steps, stats="")

    def val_step(self, step: int) -> None:
        if self.val_task is not None:
            self.progress.update(self.val_task, completed=step)

    def epoch_end(self, row: dict[str, Any], improved: bool) -> None:
        if self.run_task is not None:
            self.progress.advance(self.run_task)
        mark = " [green]best[/]" if improved else ""
        skipped = (
            f" · [yellow]{row['skipped_images']} unreadable image(s) skipped[/]"
            if row["skipped_images"]
            else ""
        )
        ema = row.get("ema_val_top1")  # --ema: the averaged weights' validation top-1
        ema_text = f" · EMA val top-1 {_pct(ema)}" if ema is not None else ""
        self.console.print(
            f"epoch {row['epoch']}: train loss {_num(row['train_loss'])} top-1 "
            f"{_pct(row['train_top1'])} · val loss {_num(row['val_loss'])} top-1 "
            f"{_pct(row['val_top1'])}{ema_text} · {row['images_per_s']:,.1f} img/s "
            f"(data wait {100 * row['data_wait_frac']:.0f}%){skipped}{mark}",
            soft_wrap=self.plain,  # one line in a file or a notebook, however long
        )

    def end(self) -> None:
        if not self.plain:
            self.progress.stop()
