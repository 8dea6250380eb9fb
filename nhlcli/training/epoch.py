"""One epoch of training and one validation pass over a `TrainingRun` (all ranks)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.errors import NhlError
from nhlcli.training.distributed import all_reduce_sum
from nhlcli.training.progress import TrainReporter
from nhlcli.training.setup import TrainingRun

SYNC_EVERY = 10  # steps between host syncs for the progress display (GPU runs)
MAX_SKIPPED_SHOWN = 20


def train_one_epoch(run: TrainingRun, epoch: int, rep: TrainReporter) -> dict[str, Any]:
    """Train epoch `epoch` (0-based); returns its results row (summed over all ranks)."""
    cfg, ctx, device = run.cfg, run.ctx, run.ctx.device
    run.sampler.set_epoch(epoch)
    run.net.train()
    if cfg.freeze_trunk:
        run.model.trunk.eval()
    rep.epoch_start(epoch + 1, cfg.epochs, run.steps)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, skipped, wait = 0, 0, 0.0
    t0 = time.perf_counter()
    t_fetch = t0
    autocast = run.precision.autocast(device)
    for i, batch in enumerate(run.train_loader):
        if i >= run.steps:
            break
        wait += time.perf_counter() - t_fetch
        skipped += len(batch.bad_paths)
        room = MAX_SKIPPED_SHOWN - len(run.skipped_files)
        if batch.bad_paths and room > 0:
            run.skipped_files.extend(batch.bad_paths[:room])
        x = batch.images.to(device, non_blocking=True)
        y = batch.labels.to(device, non_blocking=True)
        x = run.augment(x)
        if run.precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = run.net(x)
        loss = run.criterion(logits.float(), y)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        n = y.numel()
        seen += n
        loss_sum += loss.detach().double() * n
        correct += (logits.detach().argmax(1) == y).sum()
        if device.type != "cuda" or (i + 1) % SYNC_EVERY == 0 or i + 1 == run.steps:
            avg = loss_sum.item() / max(seen, 1)
            if not math.isfinite(avg):
                raise NhlError(
                    f"the loss became {avg} in epoch {epoch + 1}, step {i + 1}; nothing of "
                    "this epoch was saved (the last good checkpoint is kept): lower --lr or "
                    "use --amp bf16/none"
                )
            elapsed = time.perf_counter() - t0
            rep.step(i + 1, avg, 100.0 * correct.item() / max(seen, 1), seen * ctx.world / elapsed)
        t_fetch = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_time = time.perf_counter() - t0
    tl, tc, tn, ts, tw = all_reduce_sum(
        [loss_sum.item(), float(correct.item()), float(seen), float(skipped), wait], ctx
    )
    return {
        "epoch": epoch + 1,
        "train_loss": tl / max(tn, 1),
        "train_top1": 100.0 * tc / max(tn, 1),
        "lr": run.optimizer.param_groups[0]["lr"],
        "images_per_s": tn / max(train_time, 1e-9),
        "train_images": int(tn),
        "skipped_images": int(ts),
        "data_wait_frac": (tw / ctx.world) / max(train_time, 1e-9),
    }


@torch.no_grad()
def validate(run: TrainingRun, rep: TrainReporter) -> tuple[float, float, int, int]:
    """(val loss, val top-1 %, images, skipped files) over all ranks (each rank its shard)."""
    assert run.val_loader is not None
    model, ctx, cfg = run.model, run.ctx, run.cfg
    model.eval()
    device = ctx.device
    loader = run.val_loader
    steps = len(loader) if not cfg.max_val_batches else min(len(loader), cfg.max_val_batches)
    rep.val_start(steps)
    loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
    autocast = run.precision.autocast(device)
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        skipped += len(batch.bad_paths)
        if batch.labels.numel() == 0:
            continue
        x = run.normalize(batch.images.to(device, non_blocking=True))
        y = batch.labels.to(device, non_blocking=True)
        if run.precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum().item())
        seen += y.numel()
        rep.val_step(i + 1)
    total_loss, total_correct, total_seen, total_skipped = all_reduce_sum(
        [loss_sum, float(correct), float(seen), float(skipped)], ctx
    )
    n = max(total_seen, 1)
    return total_loss / n, 100.0 * total_correct / n, int(total_seen), int(total_skipped)


def check_finite(model: nn.Module, row: dict[str, Any], epoch: int, step: int) -> None:
    """NhlError (before anything is saved) when the epoch left non-finite weights or losses."""
    bad = [
        name for name, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())
    ]
    losses = [
        k for k in ("train_loss", "val_loss") if row[k] is not None and not math.isfinite(row[k])
    ]
    if bad or losses:
        what = f"{len(bad)} weight tensor(s) ({bad[0]}, ...)" if bad else " and ".join(losses)
        raise NhlError(
            f"training diverged in epoch {epoch}, step {step}: {what} not finite; nothing of this "
            "epoch was saved (the last good checkpoint is kept): lower --lr or use --amp bf16/none"
        )
