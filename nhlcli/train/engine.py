"""The training loop: one function, `train(config)`, for every preset, one process or DDP.

Per epoch: shuffled batches (order fixed by seed and epoch) decoded by DataLoader workers, augmented
on the device (kornia), cross-entropy over all leaf logits (paper Sec. 3.1) with optional label
smoothing, AMP (bf16/fp16) and channels-last on CUDA, a per-step warm-up + cosine schedule; then
validation (top-1 over all classes), a checkpoint (`last`, and `best` when val top-1 improved),
results.csv and results.png. Only rank 0 writes. A resumed run restores model, optimizer, scheduler,
scaler, RNG states and epoch, so it continues exactly like an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.data.augment import Normalize, TrainAugment
from nhlcli.data.dataset import ImageFileDataset
from nhlcli.data.loader import ShardSampler, default_workers, make_loader, train_sampler
from nhlcli.errors import NhlError
from nhlcli.fileio import write_text_atomic
from nhlcli.train.checkpointing import (
    capture_rng_state,
    load_checkpoint_model,
    load_train_state,
    restore_rng_state,
    save_training_checkpoint,
)
from nhlcli.train.config import TrainConfig
from nhlcli.train.distributed import (
    DistContext,
    all_reduce_sum,
    setup_distributed,
    teardown_distributed,
)
from nhlcli.train.inputs import load_training_data
from nhlcli.train.progress import SilentReporter, TrainReporter
from nhlcli.train.rundir import (
    is_incomplete,
    locked_run_dir,
    mark_complete,
    new_run_dir,
    plot_results,
    write_args,
    write_results,
)
from nhlcli.train.schedule import warmup_cosine
from nhlcli.train.trunk_weights import freeze_trunk, load_trunk_weights

SYNC_EVERY = 10  # steps between host syncs for the progress display (GPU runs)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_top1": self.best_top1,
            "params": self.params,
            "history": self.history,
            "trunk_weights": self.trunk_report,
            "skipped_files": self.skipped_files,
        }


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # autocast dtype, None = full precision
    scaler: bool  # fp16 needs gradient scaling
    channels_last: bool

    @property
    def label(self) -> str:
        amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "none")  # type: ignore[arg-type]
        return f"amp={amp}, channels_last={'on' if self.channels_last else 'off'}"


def resolve_precision(cfg: TrainConfig, device: torch.device) -> Precision:
    """AMP and memory format: bf16 + channels-last on CUDA by default, full precision on CPU."""
    cuda = device.type == "cuda"
    mode = cfg.amp
    if mode == "auto":
        mode = "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
    if mode == "fp16" and not cuda:
        raise NhlError("--amp fp16 needs a CUDA device (use bf16 or none on CPU)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
    channels_last = cuda if cfg.channels_last is None else cfg.channels_last
    return Precision(dtype, mode == "fp16", channels_last)


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32 where the GPU has it


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only (not on BN parameters or biases)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    if not decay and not no_decay:
        raise NhlError("nothing to train: every parameter is frozen")
    groups = [
        {"params": decay, "weight_decay": cfg.effective_weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.effective_lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.effective_lr)


def _absolute_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings saved in args.yaml: file paths made absolute, so resume works from anywhere."""
    d = cfg.to_dict()
    for key in ("data", "trunk_weights", "project"):
        if d.get(key):
            d[key] = str(Path(d[key]).resolve())
    if d.get("tree") and Path(d["tree"]).exists():
        d["tree"] = str(Path(d["tree"]).resolve())
    return d


def _gather_rng(ctx: DistContext) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not ctx.distributed:
        return [state]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, state)
    return out


def train(
    cfg: TrainConfig,
    resume_dir: str | Path | None = None,
    reporter: TrainReporter | None = None,
) -> TrainResult:
    """Train (or resume) one run; see the module docstring. Returns the per-epoch history."""
    ctx = setup_distributed(cfg.device)
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock, while training
            return _train(cfg, Path(resume_dir) if resume_dir else None, reporter, ctx, held)
    finally:
        teardown_distributed()


def _train(
    cfg: TrainConfig,
    resume_dir: Path | None,
    reporter: TrainReporter | None,
    ctx: DistContext,
    held: contextlib.ExitStack,
) -> TrainResult:
    rep = reporter if (reporter is not None and ctx.is_main) else SilentReporter()
    device = ctx.device
    configure_determinism(cfg.deterministic, device)
    precision = resolve_precision(cfg, device)

    # ------------------------------------------------------------------ model and data
    state: dict[str, Any] | None = None
    trunk_report = None
    torch.manual_seed(cfg.seed)
    if resume_dir is not None:
        if ctx.is_main:
            held.enter_context(locked_run_dir(resume_dir))
        last = resume_dir / "last"
        if is_incomplete(resume_dir):
            raise NhlError(
                f"{resume_dir} is an incomplete run: it was stopped before its first checkpoint, "
                "so there is nothing to resume; start a new run (a new run of that name takes "
                "the folder over)"
            )
        if not (last / "config.json").is_file():
            raise NhlError(
                f"{resume_dir} has no complete checkpoint yet (no last/): start a new run instead"
            )
        state = load_train_state(last)
        model = load_checkpoint_model(last)
        if state["epoch"] >= cfg.epochs:
            raise NhlError(
                f"{resume_dir} already finished {state['epoch']} of {cfg.epochs} epochs; "
                "pass --epochs N with a larger N to train longer"
            )
        data = load_training_data(cfg.data, None, cfg.allow_extra, tree=model.tree)
    else:
        from nhlcli.model.network import build_model

        data = load_training_data(cfg.data, cfg.tree, cfg.allow_extra)
        model = build_model(cfg.arch, data.tree, img_size=cfg.img_size)
        if cfg.trunk_weights:
            report = load_trunk_weights(model, cfg.trunk_weights)
            trunk_report = report.to_dict()
            rep.message(f"trunk weights: {report.summary()}")
    if cfg.freeze_trunk:
        if resume_dir is None and not cfg.trunk_weights:
            rep.message("warning: --freeze-trunk without --trunk-weights freezes a random trunk")
        n = freeze_trunk(model)
        rep.message(f"trunk frozen: {n:,} parameters (and its batch-norm statistics) fixed")

    model.to(device)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net: nn.Module = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    workers = cfg.workers if cfg.workers is not None else default_workers()
    pin = device.type == "cuda"
    train_set = ImageFileDataset(data.train.samples, cfg.img_size, "train")
    sampler = train_sampler(len(train_set), cfg.seed, ctx.rank, ctx.world)
    per_rank_batch = max(1, cfg.batch_size // ctx.world)
    train_loader = make_loader(train_set, per_rank_batch, sampler, workers, pin, drop_last=False)
    val_loader = None
    if data.val is not None:
        val_set = ImageFileDataset(data.val.samples, cfg.img_size, "eval")
        val_loader = make_loader(
            val_set, per_rank_batch, ShardSampler(len(val_set), ctx.rank, ctx.world), workers, pin
        )
    steps = len(train_loader)
    if cfg.max_train_batches:
        steps = min(steps, cfg.max_train_batches)
    total_steps = steps * cfg.epochs
    warmup_steps = round(cfg.warmup_epochs * steps)

    optimizer = build_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, warmup_steps, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
    augment = TrainAugment(
        cfg.img_size, cfg.randaugment_n, cfg.randaugment_m, cfg.min_crop_scale
    ).to(device)
    normalize = Normalize().to(device)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    history: list[dict[str, Any]] = []
    start_epoch, best_epoch, best_top1 = 0, 0, -1.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rngs = state.get("rng", [])
        if len(rngs) == ctx.world:
            restore_rng_state(rngs[ctx.rank])
        else:
            rep.message(
                f"warning: resumed with {ctx.world} process(es) instead of {len(rngs)}: "
                "augmentation will not repeat exactly"
            )
            torch.manual_seed(cfg.seed + 1000 * state["epoch"] + ctx.rank)
        start_epoch = int(state["epoch"])
        best_epoch, best_top1 = int(state["best_epoch"]), float(state["best_top1"])
        history = [dict(r) for r in state["history"]][:start_epoch]
    else:
        torch.manual_seed(cfg.seed + ctx.rank)  # augmentation differs between ranks

    run_dir: Path | None = None
    if ctx.is_main:
        if resume_dir is not None:
            run_dir = resume_dir
            write_args(run_dir, {**_absolute_settings(cfg), "arch": model.preset.name})
        else:
            run_dir = new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
            held.enter_context(locked_run_dir(run_dir))
            write_args(run_dir, _absolute_settings(cfg))
            if trunk_report:
                write_text_atomic(
                    run_dir / "trunk_weights.json", json.dumps(trunk_report, indent=1)
                )
    rep.start(
        {
            "run_dir": str(run_dir) if run_dir else None,
            "arch": model.preset.name,
            "classes": model.num_classes,
            "params": model.num_params(),
            "train_images": len(data.train),
            "val_images": len(data.val) if data.val else 0,
            "device": str(device),
            "world": ctx.world,
            "precision": precision.label,
            "workers": workers,
            "start_epoch": start_epoch,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.effective_lr,
        }
    )

    skipped_files: list[str] = []
    autocast = torch.autocast(
        device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None
    )
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        net.train()
        if cfg.freeze_trunk:
            model.trunk.eval()
        rep.epoch_start(epoch + 1, cfg.epochs, steps)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen, skipped, wait = 0, 0, 0.0
        t0 = time.perf_counter()
        t_fetch = t0
        for i, batch in enumerate(train_loader):
            if i >= steps:
                break
            wait += time.perf_counter() - t_fetch
            skipped += len(batch.bad_paths)
            if batch.bad_paths and len(skipped_files) < 20:
                skipped_files.extend(batch.bad_paths[: 20 - len(skipped_files)])
            x = batch.images.to(device, non_blocking=True)
            y = batch.labels.to(device, non_blocking=True)
            x = augment(x)
            if precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = net(x)
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = y.numel()
            seen += n
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(1) == y).sum()
            if device.type != "cuda" or (i + 1) % SYNC_EVERY == 0 or i + 1 == steps:
                avg = loss_sum.item() / max(seen, 1)
                if not math.isfinite(avg):
                    raise NhlError(
                        f"the loss became {avg} in epoch {epoch + 1}, step {i + 1}; nothing of "
                        "this epoch was saved (the last good checkpoint is kept): lower --lr or "
                        "use --amp bf16/none"
                    )
                elapsed = time.perf_counter() - t0
                rep.step(
                    i + 1, avg, 100.0 * correct.item() / max(seen, 1), seen * ctx.world / elapsed
                )
            t_fetch = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - t0
        tl, tc, tn, ts, tw = all_reduce_sum(
            [loss_sum.item(), float(correct.item()), float(seen), float(skipped), wait], ctx
        )
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": tl / max(tn, 1),
            "train_top1": 100.0 * tc / max(tn, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": tn / max(train_time, 1e-9),
            "train_images": int(tn),
            "skipped_images": int(ts),
            "data_wait_frac": (tw / ctx.world) / max(train_time, 1e-9),
        }
        if val_loader is not None:
            vl, vt, _, vs = _validate(model, val_loader, normalize, precision, cfg, ctx, rep)
            row.update(val_loss=vl, val_top1=vt)
            row["skipped_images"] += vs
        else:
            row.update(val_loss=None, val_top1=None)
        row["epoch_time_s"] = time.perf_counter() - t0
        _check_finite(model, row, epoch + 1, steps)
        metric = row["val_top1"] if row["val_top1"] is not None else row["train_top1"]
        improved = metric > best_top1
        if improved:
            best_top1, best_epoch = metric, epoch + 1
        history.append(row)
        rngs = _gather_rng(ctx)
        if ctx.is_main:
            assert run_dir is not None
            train_state = {
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if precision.scaler else {},
                "rng": rngs,
                "best_epoch": best_epoch,
                "best_top1": best_top1,
                "history": history,
            }
            extra = {
                "training": {
                    "run": str(run_dir),
                    "epoch": epoch + 1,
                    "val_top1": row["val_top1"],
                    "train_top1": row["train_top1"],
                }
            }
            save_training_checkpoint(
                run_dir,
                model,
                train_state,
                epoch + 1,
                tags=("last", "best") if improved else ("last",),
                extra=extra,
            )
            mark_complete(run_dir)
            write_results(run_dir, history)
            plot_results(run_dir, history)
        rep.epoch_end(row, improved)
    rep.end()
    return TrainResult(
        run_dir,
        cfg.epochs,
        best_epoch,
        best_top1,
        history,
        trunk_report,
        skipped_files,
        model.num_params(),
    )


def _check_finite(model: nn.Module, row: dict[str, Any], epoch: int, step: int) -> None:
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


@torch.no_grad()
def _validate(
    model: nn.Module,
    loader: Any,
    normalize: nn.Module,
    precision: Precision,
    cfg: TrainConfig,
    ctx: DistContext,
    rep: TrainReporter,
) -> tuple[float, float, int, int]:
    """(val loss, val top-1 %, images, skipped files) over all ranks (each rank its shard)."""
    model.eval()
    device = ctx.device
    steps = len(loader) if not cfg.max_val_batches else min(len(loader), cfg.max_val_batches)
    rep.val_start(steps)
    loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        skipped += len(batch.bad_paths)
        if batch.labels.numel() == 0:
            continue
        x = normalize(batch.images.to(device, non_blocking=True))
        y = batch.labels.to(device, non_blocking=True)
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None
        ):
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
