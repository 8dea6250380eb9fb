"""The training loop: `train(config)` for every preset, one process or DDP.

A run is set up (or restored) by `nhlcli/training/setup.py`, trained one epoch at a time and
validated by `nhlcli/training/epoch.py`, and checkpointed here after every epoch: `last`, and
`best` when val top-1 improved, with results.csv and results.png. Per epoch: shuffled batches
(order fixed by seed and epoch), augmentation on the device (kornia), cross-entropy over all leaf
logits (paper Sec. 3.1) with optional label smoothing, AMP (bf16/fp16) and channels-last on CUDA,
a per-step warm-up + cosine schedule. Only rank 0 writes. A resumed run continues exactly like an
uninterrupted run. Ctrl-C (SIGTERM too, in the CLI) raises `TrainingInterrupted`, whose message
says how many epochs are checkpointed and the `--resume` command; a signal that arrives while an
epoch is saved waits until the save ends.

Options of the loop: `--ema` validates and saves the averaged weights too (`last-ema`, `best-ema`),
`--save-every N` keeps `epoch-NNNN` checkpoints, `--patience N` stops after N epochs without a
better val top-1, `--tensorboard` logs each epoch's scalars (`nhlcli/training/tensorboard_log.py`).
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.fileio import interrupts_deferred
from nhlcli.hierarchy.tree import Tree
from nhlcli.training.checkpointing import capture_rng_state, save_training_checkpoint
from nhlcli.training.config import TrainConfig
from nhlcli.training.distributed import DistContext, setup_distributed, teardown_distributed
from nhlcli.training.ema import ema_state
from nhlcli.training.epoch import check_finite, train_one_epoch, validate
from nhlcli.training.progress import SilentReporter, TrainReporter
from nhlcli.training.rundir import mark_complete, plot_results, write_results
from nhlcli.training.setup import TrainingRun, prepare_run
from nhlcli.training.tensorboard_log import log_epoch, open_writer


@dataclass
class TrainResult:
    run_dir: Path | None  # None on ranks other than 0
    epochs: int
    best_epoch: int
    best_top1: float
    history: list[dict[str, Any]]
    trunk_report: dict[str, Any] | None = None
    skipped_files: list[str] = field(default_factory=list)
    params: int = 0
    stopped_early: int | None = None  # the last epoch when --patience stopped the run
    best_ema_top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_top1": self.best_top1,
            "best_ema_top1": self.best_ema_top1,
            "stopped_early": self.stopped_early,
            "params": self.params,
            "history": self.history,
            "trunk_weights": self.trunk_report,
            "skipped_files": self.skipped_files,
        }


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, in the CLI) during training; the message says where the run stands and
    how to resume it."""


def train(
    cfg: TrainConfig,
    resume_dir: str | Path | None = None,
    reporter: TrainReporter | None = None,
    tree: Tree | None = None,
) -> TrainResult:
    """Train (or resume) one run; see the module docstring. Returns the per-epoch history.
    `tree`: a `Tree` object instead of `cfg.tree` (saved as RUN/tree.json)."""
    ctx = setup_distributed(cfg.device)
    held = contextlib.ExitStack()  # the run directory's lock while this process trains in it
    resume_path = Path(resume_dir) if resume_dir else None
    run: TrainingRun | None = None
    rep = reporter if (reporter is not None and ctx.is_main) else SilentReporter()
    try:
        try:
            run = prepare_run(cfg, resume_path, rep, ctx, held, tree)
            _report_start(run, rep)
            _epochs(run, rep)
        except KeyboardInterrupt:
            rep.end()
            raise TrainingInterrupted(_interrupted_message(run, resume_path)) from None
        rep.end()
        return TrainResult(
            run.run_dir,
            run.cfg.epochs,
            run.best_epoch,
            run.best_top1,
            run.history,
            run.trunk_report,
            run.skipped_files,
            run.model.num_params(),
            run.stopped_early,
            run.best_ema_top1 if run.ema is not None else None,
        )
    finally:
        held.close()
        teardown_distributed()


def _epochs(run: TrainingRun, rep: TrainReporter) -> None:
    """The epochs from `run.start_epoch` on (fewer with --patience), logged with --tensorboard."""
    cfg = run.cfg
    writer = open_writer(run.run_dir) if cfg.tensorboard and run.run_dir else None
    try:
        for epoch in range(run.start_epoch, cfg.epochs):
            levels = _one_epoch(run, epoch, rep)
            if writer is not None:
                log_epoch(writer, run.history[-1], levels)
            if cfg.patience and epoch + 1 - run.best_epoch >= cfg.patience:
                run.stopped_early = epoch + 1
                rep.message(
                    f"stopped early after epoch {epoch + 1}: no better val top-1 for "
                    f"{cfg.patience} epoch(s) (best: epoch {run.best_epoch})"
                )
                break
    finally:
        if writer is not None:
            writer.close()


def _interrupted_message(run: TrainingRun | None, resume_dir: Path | None) -> str:
    """Where the run stopped and the command that continues it (`history` holds exactly the
    checkpointed epochs: an epoch's row and checkpoint are written together, uninterrupted)."""
    if run is None:  # still setting up
        if resume_dir is None:
            return "interrupted before the first checkpoint: nothing to resume"
        where = f"{resume_dir} keeps its checkpoints (training had not resumed)"
        run_dir = resume_dir
    elif run.run_dir is None:  # a DDP rank other than 0
        return "interrupted"
    elif not run.history:
        return "interrupted before the first checkpoint: nothing to resume"
    else:
        where = f"{run.run_dir} has {len(run.history)} of {run.cfg.epochs} epochs checkpointed"
        run_dir = run.run_dir
    return f"interrupted: {where}; continue with: nhl train --resume {shlex.quote(str(run_dir))}"


def _report_start(run: TrainingRun, rep: TrainReporter) -> None:
    cfg = run.cfg
    rep.start(
        {
            "run_dir": str(run.run_dir) if run.run_dir else None,
            "arch": run.model.preset.name,
            "classes": run.model.num_classes,
            "params": run.model.num_params(),
            "train_images": len(run.data.train),
            "val_images": len(run.data.val) if run.data.val else 0,
            "device": str(run.ctx.device),
            "world": run.ctx.world,
            "precision": run.precision.label,
            "workers": run.workers,
            "start_epoch": run.start_epoch,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.effective_lr,
        }
    )


def _one_epoch(run: TrainingRun, epoch: int, rep: TrainReporter) -> list[float]:
    """Train, validate, pick best, checkpoint (rank 0), report; returns val top-1 per level."""
    t0 = time.perf_counter()
    row = train_one_epoch(run, epoch, rep)
    levels: list[float] = []
    row.update(val_loss=None, val_top1=None, ema_val_loss=None, ema_val_top1=None)
    if run.val_loader is not None:
        v = validate(run, rep)
        row.update(val_loss=v.loss, val_top1=v.top1)
        row["skipped_images"] += v.skipped
        levels = v.level_top1
        if run.ema is not None:
            e = validate(run, rep, model=run.ema.module)
            row.update(ema_val_loss=e.loss, ema_val_top1=e.top1)
    row["epoch_time_s"] = time.perf_counter() - t0
    check_finite(run.model, row, epoch + 1, run.steps)  # before anything of this epoch is saved
    metric = row["val_top1"] if row["val_top1"] is not None else row["train_top1"]
    improved = metric > run.best_top1
    if improved:
        run.best_top1, run.best_epoch = metric, epoch + 1
    ema_improved = False
    if run.ema is not None:
        ema_metric = row["ema_val_top1"] if row["ema_val_top1"] is not None else metric
        ema_improved = ema_metric > run.best_ema_top1
        if ema_improved:
            run.best_ema_top1 = ema_metric
    with interrupts_deferred():  # Ctrl-C or SIGTERM waits until the epoch is saved whole
        run.history.append(row)
        save_epoch(run, row, improved, ema_improved)
    rep.epoch_end(row, improved)
    return levels


def _gather_rng(ctx: DistContext) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not ctx.distributed:
        return [state]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, state)
    return out


def save_epoch(
    run: TrainingRun, row: dict[str, Any], improved: bool, ema_improved: bool = False
) -> None:
    """The epoch's checkpoint (`last`, `best` when improved, `epoch-NNNN` every --save-every,
    `last-ema`/`best-ema` with --ema), results.csv and results.png."""
    rngs = _gather_rng(run.ctx)  # every rank takes part
    if not run.ctx.is_main:
        return
    if run.run_dir is None:
        raise NhlError("internal: rank 0 has no run directory")
    epoch = row["epoch"]
    train_state = {
        "epoch": epoch,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.precision.scaler else {},
        "rng": rngs,
        "best_epoch": run.best_epoch,
        "best_top1": run.best_top1,
        "best_ema_top1": run.best_ema_top1,
        "history": run.history,
    }
    if run.ema is not None:
        train_state["ema"] = ema_state(run.ema)
    extra = {
        "training": {
            "run": str(run.run_dir),
            "epoch": epoch,
            "val_top1": row["val_top1"],
            "train_top1": row["train_top1"],
        }
    }
    tags = ["last", *(["best"] if improved else [])]
    if run.cfg.save_every and epoch % run.cfg.save_every == 0:
        tags.append(f"epoch-{epoch:04d}")
    save_training_checkpoint(
        run.run_dir,
        run.model,
        train_state,
        epoch,
        tags=tuple(tags),
        extra=extra,
        ema_model=run.ema.module if run.ema is not None else None,
        ema_tags=("last-ema", "best-ema") if ema_improved else ("last-ema",),
    )
    mark_complete(run.run_dir)
    write_results(run.run_dir, run.history)
    plot_results(run.run_dir, run.history)
