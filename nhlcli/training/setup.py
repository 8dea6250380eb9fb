"""Setting up (or restoring) one training run: model, data, loaders, optimizer, schedule, state.

`prepare_run` returns a `TrainingRun`, everything the epoch loop (`nhlcli/training/epoch.py`) and
the checkpointing step (`nhlcli/training/engine.py`) need. A resumed run restores model, optimizer,
scheduler, gradient scaler, RNG states, epoch, best epoch and history from `last/`, so it continues
exactly like an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nhlcli.data.augment import Normalize, TrainAugment
from nhlcli.data.dataset import ImageFileDataset
from nhlcli.data.loader import (
    ShardSampler,
    balanced_subset,
    default_workers,
    make_loader,
    train_sampler,
)
from nhlcli.data.mixing import BatchMixer
from nhlcli.errors import NhlError
from nhlcli.fileio import keep_outputs, write_text_atomic
from nhlcli.hierarchy.tree import Tree
from nhlcli.training.auto_recipe import apply_recipe, settle_recipe
from nhlcli.training.checkpointing import (
    load_checkpoint_model,
    load_train_state,
    recover_tags,
    restore_rng_state,
)
from nhlcli.training.config import AUTO_RECIPE, RECIPES, SETTINGS, TrainConfig
from nhlcli.training.distributed import DistContext
from nhlcli.training.ema import make_ema, restore_ema
from nhlcli.training.inputs import (
    RUN_TREE_FILE,
    TrainingData,
    describe_data_change,
    image_list_fingerprint,
    load_training_data,
)
from nhlcli.training.progress import TrainReporter
from nhlcli.training.rundir import (
    is_incomplete,
    locked_run_dir,
    new_run_dir,
    read_args,
    read_data_fingerprint,
    write_args,
    write_data_fingerprint,
)
from nhlcli.training.schedule import warmup_cosine
from nhlcli.training.trunk_weights import freeze_trunk, load_trunk_weights


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # autocast dtype, None = full precision
    scaler: bool  # fp16 needs gradient scaling
    channels_last: bool

    @property
    def label(self) -> str:
        amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "none")  # type: ignore[arg-type]
        return f"amp={amp}, channels_last={'on' if self.channels_last else 'off'}"

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(
            device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )


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


def absolute_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings as given, with file paths made absolute, so resume works from anywhere."""
    d = cfg.to_dict()
    for spec in SETTINGS:
        if spec.path and d.get(spec.name):
            d[spec.name] = str(Path(d[spec.name]).resolve())
    if d.get("tree") and Path(d["tree"]).exists():
        d["tree"] = str(Path(d["tree"]).resolve())
    return d


def resolved_settings(run: TrainingRun) -> dict[str, Any]:
    """The settings saved in args.yaml: absolute paths, and what 'auto'/unset resolved to (the
    learning rate and weight decay used, the device, the precision, the loader workers, and
    after `recipe: auto` the recipe it chose and why, as `recipe_auto`)."""
    cfg, ctx, precision = run.cfg, run.ctx, run.precision
    d = absolute_settings(cfg)
    amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(precision.dtype, "none")  # type: ignore[arg-type]
    d.update(
        lr=cfg.effective_lr,
        weight_decay=cfg.effective_weight_decay,
        device=ctx.device.type if ctx.distributed else str(ctx.device),
        amp=amp,
        channels_last=precision.channels_last,
        workers=run.workers,
    )
    if run.recipe_choice is not None:  # right after `recipe: auto`
        items = list(d.items())
        at = [k for k, _ in items].index("recipe") + 1
        d = dict([*items[:at], ("recipe_auto", run.recipe_choice), *items[at:]])
    return d


@dataclass
class TrainingRun:
    """One run's live objects and progress (rank-local; only rank 0 has a run_dir)."""

    cfg: TrainConfig
    ctx: DistContext
    model: Any  # HierNet
    net: nn.Module  # the model, or its DDP wrapper
    data: TrainingData
    precision: Precision
    sampler: Any
    train_loader: Any
    val_loader: Any | None
    steps: int  # training batches per epoch
    optimizer_steps: int  # optimizer steps per epoch (batches / accumulate, rounded up)
    workers: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    augment: nn.Module
    normalize: nn.Module
    criterion: nn.Module  # reduction 'none' (mixed labels weight each image's two terms)
    mixer: BatchMixer
    ema: Any = None  # torch.optim.swa_utils.AveragedModel with --ema
    run_dir: Path | None = None
    start_epoch: int = 0
    best_epoch: int = 0
    best_top1: float = -1.0
    best_ema_top1: float = -1.0
    stopped_early: int | None = None  # the epoch after which --patience stopped the run
    history: list[dict[str, Any]] = field(default_factory=list)
    trunk_report: dict[str, Any] | None = None
    skipped_files: list[str] = field(default_factory=list)
    recipe_choice: dict[str, Any] | None = None  # what `recipe: auto` chose (args.yaml)


def _model_and_data(
    cfg: TrainConfig, resume_dir: Path | None, rep: TrainReporter, tree: Tree | None = None
) -> tuple[
    TrainConfig, Any, TrainingData, dict[str, Any] | None, dict[str, Any] | None, dict | None
]:
    """(settings with recipe auto decided, model, data, saved training state or None,
    trunk-weights report or None, what recipe auto chose or None)."""
    if resume_dir is not None:
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
        chosen = read_args(resume_dir).get("recipe_auto")  # kept, not decided again
        auto = cfg.recipe == AUTO_RECIPE
        if auto and isinstance(chosen, dict) and chosen.get("recipe") in RECIPES:
            cfg, _ = apply_recipe(cfg, chosen["recipe"])
            rep.message(
                f"recipe auto → {chosen['recipe']}, as chosen when the run started: "
                f"{chosen.get('reason')}"
            )
        return (
            cfg,
            model,
            load_training_data(cfg.data, None, cfg.allow_extra, tree=model.tree),
            state,
            None,
            chosen if isinstance(chosen, dict) else None,
        )
    from nhlcli.model.network import build_model, zero_init_residual

    data = load_training_data(cfg.data, cfg.tree, cfg.allow_extra, tree=tree, arch=cfg.arch)
    cfg, choice = settle_recipe(cfg, len(data.train))
    if choice is not None:
        rep.message(choice.line())
    model = build_model(cfg.arch, data.tree, img_size=cfg.img_size)
    if cfg.zero_init_residual:
        zero_init_residual(model)  # before trunk weights, which bring their own γ
    report = None
    if cfg.trunk_weights:
        loaded = load_trunk_weights(model, cfg.trunk_weights)
        report = loaded.to_dict()
        rep.message(f"trunk weights: {loaded.summary()}")
    return cfg, model, data, None, report, choice.to_dict() if choice is not None else None


def prepare_run(
    cfg: TrainConfig,
    resume_dir: Path | None,
    rep: TrainReporter,
    ctx: DistContext,
    held: contextlib.ExitStack,
    tree: Tree | None = None,
) -> TrainingRun:
    """Build (or restore) everything one run needs; rank 0 also creates the run directory and
    holds its lock in `held` (released when the caller closes it). `tree`, a `Tree` object
    instead of `cfg.tree`, is saved as RUN/tree.json."""
    if resume_dir is not None and ctx.is_main:
        held.enter_context(locked_run_dir(resume_dir))
        recover_tags(resume_dir)  # a save killed half-way leaves last/ aside: put it back
    device = ctx.device
    configure_determinism(cfg.deterministic, device)
    torch.manual_seed(cfg.seed)
    cfg, model, data, state, trunk_report, chosen = _model_and_data(cfg, resume_dir, rep, tree)
    precision = resolve_precision(cfg, device)
    for line in data.notes:
        rep.message(line)
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
        val_samples = list(data.val.samples)
        if cfg.max_val_batches:  # a fixed, seeded, class-balanced subset: every class is seen
            n = cfg.max_val_batches * per_rank_batch * ctx.world
            keep = balanced_subset([y for _, y in val_samples], n, cfg.seed)
            val_samples = [val_samples[i] for i in keep]
        val_set = ImageFileDataset(val_samples, cfg.img_size, "eval")
        val_loader = make_loader(
            val_set, per_rank_batch, ShardSampler(len(val_set), ctx.rank, ctx.world), workers, pin
        )
    steps = len(train_loader)
    if cfg.max_train_batches:
        steps = min(steps, cfg.max_train_batches)

    optimizer = build_optimizer(model, cfg)
    opt_steps = -(-steps // cfg.accumulate)
    scheduler = warmup_cosine(
        optimizer, round(cfg.warmup_epochs * opt_steps), opt_steps * cfg.epochs
    )
    if cfg.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    run = TrainingRun(
        cfg=cfg,
        ctx=ctx,
        model=model,
        net=net,
        data=data,
        precision=precision,
        sampler=sampler,
        train_loader=train_loader,
        val_loader=val_loader,
        steps=steps,
        optimizer_steps=opt_steps,
        workers=workers,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=precision.scaler),
        augment=TrainAugment(
            cfg.img_size, cfg.randaugment_n, cfg.randaugment_m, cfg.min_crop_scale
        ).to(device),
        normalize=Normalize().to(device),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="none"),
        mixer=BatchMixer(cfg.mixup, cfg.cutmix).to(device),
        ema=make_ema(model, cfg.ema) if cfg.ema else None,
        trunk_report=trunk_report,
        recipe_choice=chosen,
    )
    if state is not None:
        _restore(run, state, rep)
        if run.ema is not None and resume_dir is not None:
            _restore_ema(run, resume_dir / "last", state)
    else:
        torch.manual_seed(cfg.seed + ctx.rank)  # augmentation differs between ranks
    if ctx.is_main:
        _open_run_dir(run, resume_dir, held, save_tree=tree is not None)
        _record_data(run, resume_dir, rep)
    return run


def _restore(run: TrainingRun, state: dict[str, Any], rep: TrainReporter) -> None:
    """Optimizer, schedule, scaler, RNG, epoch, best and history of a saved run."""
    ctx = run.ctx
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    rngs = state.get("rng", [])
    if len(rngs) == ctx.world:
        restore_rng_state(rngs[ctx.rank])
    else:
        rep.message(
            f"warning: resumed with {ctx.world} process(es) instead of {len(rngs)}: "
            "augmentation will not repeat exactly"
        )
        torch.manual_seed(run.cfg.seed + 1000 * state["epoch"] + ctx.rank)
    run.start_epoch = int(state["epoch"])
    run.best_epoch, run.best_top1 = int(state["best_epoch"]), float(state["best_top1"])
    run.best_ema_top1 = float(state.get("best_ema_top1", -1.0))
    run.history = [dict(r) for r in state["history"]][: run.start_epoch]


def _restore_ema(run: TrainingRun, last: Path, state: dict[str, Any]) -> None:
    from nhlcli.training.checkpointing import EMA_DIR

    if "ema" not in state or not (last / EMA_DIR / "config.json").is_file():
        raise NhlError(f"{last} has no EMA weights: resume without --ema, or start a new run")
    restore_ema(run.ema, last / EMA_DIR, state["ema"])


def _record_data(run: TrainingRun, resume_dir: Path | None, rep: TrainReporter) -> None:
    """Record the image lists' fingerprint; on resume, first say how they changed (a warning)."""
    assert run.run_dir is not None
    now = image_list_fingerprint(run.data)
    before = read_data_fingerprint(run.run_dir) if resume_dir is not None else None
    changes = describe_data_change(before, now) if before is not None else []
    if changes:
        rep.message(
            "warning: the image folders changed since this run last trained: " + "; ".join(changes)
        )
    write_data_fingerprint(run.run_dir, now)


def _open_run_dir(
    run: TrainingRun, resume_dir: Path | None, held: contextlib.ExitStack, save_tree: bool
) -> None:
    """`save_tree`: a new run keeps its tree as RUN/tree.json (a `Tree` object was given); so
    does one whose tree was built here (WordNet). args.yaml then names that file (resume)."""
    cfg = run.cfg
    if resume_dir is not None:
        run.run_dir = resume_dir
        keep_outputs(resume_dir)  # it has a checkpoint: an interrupt removes nothing in it
        write_args(resume_dir, {**resolved_settings(run), "arch": run.model.preset.name})
        return
    run.run_dir = new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
    held.enter_context(locked_run_dir(run.run_dir))
    if save_tree or run.data.built_tree:
        tree_file = run.run_dir / RUN_TREE_FILE
        run.data.tree.save(tree_file)  # the given Tree object, or the one built
        run.cfg = dataclasses.replace(cfg, tree=str(tree_file.resolve()))
    write_args(run.run_dir, resolved_settings(run))
    if run.trunk_report:
        write_text_atomic(
            run.run_dir / "trunk_weights.json", json.dumps(run.trunk_report, indent=1)
        )
