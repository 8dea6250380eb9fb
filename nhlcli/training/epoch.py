"""One epoch of training and one validation pass over a `TrainingRun` (all ranks).

A training step: augmentation (kornia), batch mixing when on (`nhlcli/data/mixing.py`), forward,
the loss of the (mixed) labels, backward. With `accumulate` N the gradients of N batches are summed
(each loss divided by the number of batches in its group) before one optimizer step; the schedule
and the EMA advance once per optimizer step. results.csv's `lr` is the rate of the epoch's last
optimizer step, i.e. the one actually used.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.data.mixing import mixed_loss
from nhlcli.errors import NhlError
from nhlcli.hierarchy_metrics import ancestors_by_level, level_metrics
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
    acc = cfg.accumulate
    lr_used = run.optimizer.param_groups[0]["lr"]
    run.optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(run.train_loader):
        if i >= run.steps:
            break
        wait += time.perf_counter() - t_fetch
        skipped += len(batch.bad_paths)
        room = MAX_SKIPPED_SHOWN - len(run.skipped_files)
        if batch.bad_paths and room > 0:
            run.skipped_files.extend(batch.bad_paths[:room])
        if batch.labels.numel() == 0:
            raise NhlError(
                f"no readable image in training batch {i + 1} of epoch {epoch + 1}: "
                f"{len(batch.bad_paths)} file(s) and the neighbours tried in their place could "
                f"not be decoded, e.g. {batch.bad_paths[0]} (check the image folder)"
            )
        x = batch.images.to(device, non_blocking=True)
        y = batch.labels.to(device, non_blocking=True)
        x = run.augment(x)
        x, y_a, y_b, lam = run.mixer(x, y)
        if run.precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        group_start = (i // acc) * acc
        group = min(acc, run.steps - group_start)  # batches in this optimizer step
        last = i + 1 == group_start + group
        sync: Any = contextlib.nullcontext()
        if ctx.distributed and not last:  # DDP: all-reduce the gradients once per group only
            sync = run.net.no_sync()  # type: ignore[operator]
        with sync:
            with autocast:
                logits = run.net(x)
            loss = mixed_loss(run.criterion, logits.float(), y_a, y_b, lam)
            run.scaler.scale(loss / group).backward()
        if last:
            lr_used = run.optimizer.param_groups[0]["lr"]
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.optimizer.zero_grad(set_to_none=True)
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update_parameters(run.model)
        y = y_a
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
        "lr": lr_used,
        "images_per_s": tn / max(train_time, 1e-9),
        "train_images": int(tn),
        "skipped_images": int(ts),
        "data_wait_frac": (tw / ctx.world) / max(train_time, 1e-9),
    }


@dataclass
class Validation:
    loss: float
    top1: float
    images: int
    skipped: int
    level_top1: list[float] = field(default_factory=list)  # accuracy at tree levels 1..L


@torch.no_grad()
def validate(run: TrainingRun, rep: TrainReporter, model: Any = None) -> Validation:
    """Loss, top-1 and top-1 per tree level over all ranks (each rank its shard) of `model`
    (default: the run's model; the EMA model with --ema). A capped validation
    (`max_val_batches`) runs on the class-balanced subset chosen in `prepare_run`."""
    assert run.val_loader is not None
    ctx = run.ctx
    model = run.model if model is None else model
    model.eval()
    device = ctx.device
    loader = run.val_loader
    rep.val_start(len(loader))
    loss_sum, skipped = 0.0, 0
    preds: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    autocast = run.precision.autocast(device)
    for i, batch in enumerate(loader):
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
        preds.append(logits.argmax(1).cpu())
        labels.append(y.cpu())
        rep.val_step(i + 1)
    p = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    t = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    tree = run.model.tree
    per_level = level_metrics(p, t, ancestors_by_level(tree, tree.class_ids))
    level_correct = [r.top1 * t.numel() / 100.0 for r in per_level]
    sums = all_reduce_sum(
        [loss_sum, float(int((p == t).sum())), float(t.numel()), float(skipped), *level_correct],
        ctx,
    )
    n = max(sums[2], 1)
    return Validation(
        loss=sums[0] / n,
        top1=100.0 * sums[1] / n,
        images=int(sums[2]),
        skipped=int(sums[3]),
        level_top1=[100.0 * c / n for c in sums[4:]],
    )


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
