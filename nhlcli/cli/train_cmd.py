"""`nhl train`: train a PHL/NHL network (or the ResNet50 baseline) on an image folder."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
import yaml

from nhlcli.cli.common import JSON_OPTION, console, examples, print_json

EPILOG = examples(
    "nhl train --arch n3hl --tree trees/imagenette-wn.json --data imagenette2 --epochs 30",
    "nhl train --arch resnet50 --data imagenette2 --img-size 96 --amp none --name r50",
    "nhl train -c train.yaml --lr 0.05",
    "nhl train --resume runs/train/exp",
    "nhl train --arch phl-small --data imagenette2 --trunk-weights resnet50.pth --freeze-trunk",
    "nhl train --devices 4 --arch n3hl --tree tree.json --data imagenet100",
    "torchrun --nnodes 2 --nproc-per-node 8 -m nhlcli train --arch n3hl --tree t.json --data d",
)


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EPILOG)(train_command)


def _opt(default: Any, *names: str, help: str) -> Any:
    return typer.Option(default, *names, help=help, show_default=False)


def train_command(
    arch: str | None = _opt(None, "--arch", help="Preset: n3hl, n2hl, phl-small, resnet50, ..."),
    tree: str | None = _opt(
        None, "--tree", help="Tree file or shipped tree name (default: one class per train folder)."
    ),
    data: str | None = _opt(
        None, "--data", help="Folder with train/<class>/... and val/<class>/..."
    ),
    config: Path | None = _opt(None, "-c", "--config", help="YAML file of settings (options win)."),
    epochs: int | None = _opt(None, "--epochs", help="Epochs [10]."),
    batch_size: int | None = _opt(None, "--batch-size", help="Global batch size [32]."),
    lr: float | None = _opt(
        None, "--lr", help="Peak learning rate [0.1·batch/256 sgd, 1e-3·batch/256 adamw]."
    ),
    optimizer: str | None = _opt(None, "--optimizer", help="sgd (Nesterov) or adamw [sgd]."),
    weight_decay: float | None = _opt(None, "--weight-decay", help="[1e-4 sgd, 0.05 adamw]."),
    label_smoothing: float | None = _opt(None, "--label-smoothing", help="[0.1]."),
    warmup_epochs: float | None = _opt(None, "--warmup-epochs", help="Linear warm-up [1]."),
    amp: str | None = _opt(None, "--amp", help="auto, bf16, fp16 or none [auto: bf16 on CUDA]."),
    channels_last: bool | None = _opt(
        None, "--channels-last/--no-channels-last", help="Memory format [on for CUDA]."
    ),
    seed: int | None = _opt(None, "--seed", help="Random seed [0]."),
    deterministic: bool | None = _opt(
        None, "--deterministic", help="Deterministic algorithms: resume gives identical weights."
    ),
    workers: int | None = _opt(None, "--workers", help="Data loader workers [cores-1, ≤8]."),
    device: str | None = _opt(None, "--device", help="cpu, cuda, cuda:N [cuda if available]."),
    devices: int | None = _opt(
        None, "--devices", help="Processes on this machine (DDP through torchrun), e.g. GPUs."
    ),
    img_size: int | None = _opt(None, "--img-size", help="Training resolution [224]."),
    randaugment_n: int | None = _opt(None, "--randaugment-n", help="RandAugment ops, 0 = off [2]."),
    randaugment_m: int | None = _opt(None, "--randaugment-m", help="RandAugment magnitude [9]."),
    min_crop_scale: float | None = _opt(
        None, "--min-crop-scale", help="Smallest random-resized-crop area [0.08]."
    ),
    name: str | None = _opt(None, "--name", help="Run name [exp]."),
    project: str | None = _opt(None, "--project", help="Parent folder of runs [runs/train]."),
    exist_ok: bool | None = _opt(
        None, "--exist-ok", help="Reuse runs/train/NAME instead of NAME-2."
    ),
    resume: Path | None = _opt(None, "--resume", help="Continue the run in this run directory."),
    trunk_weights: str | None = _opt(
        None,
        "--trunk-weights",
        help="Pretrained trunk: torchvision ResNet, or timm / official ConvNeXt-V2 state dict "
        "(.safetensors, .pt/.pth).",
    ),
    freeze_trunk: bool | None = _opt(None, "--freeze-trunk", help="Do not train the trunk."),
    allow_extra: bool | None = _opt(
        None, "--allow-extra", help="Ignore class folders that are not in the tree."
    ),
    max_train_batches: int | None = _opt(
        None, "--max-train-batches", help="Stop each epoch after N batches (smoke runs)."
    ),
    max_val_batches: int | None = _opt(None, "--max-val-batches", help="Validate on N batches."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a network on DIR/train, validating on DIR/val; results go to runs/train/NAME.

    The run directory holds args.yaml, results.csv, results.png and the last/ and best/ checkpoints
    (loadable by nhl eval, nhl cutout, nhl profile).
    """
    from nhlcli.errors import NhlError
    from nhlcli.train.config import build_config, read_config_file, resume_config
    from nhlcli.train.rundir import read_args

    overrides = {
        "arch": arch,
        "tree": tree,
        "data": data,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "warmup_epochs": warmup_epochs,
        "amp": amp,
        "channels_last": channels_last,
        "seed": seed,
        "deterministic": deterministic,
        "workers": workers,
        "device": device,
        "img_size": img_size,
        "randaugment_n": randaugment_n,
        "randaugment_m": randaugment_m,
        "min_crop_scale": min_crop_scale,
        "name": name,
        "project": project,
        "exist_ok": exist_ok,
        "trunk_weights": trunk_weights,
        "freeze_trunk": freeze_trunk,
        "allow_extra": allow_extra,
        "max_train_batches": max_train_batches,
        "max_val_batches": max_val_batches,
    }
    file_settings = read_config_file(config) if config else {}
    if resume is not None:
        if not resume.is_dir():
            raise NhlError(f"--resume: {resume} is not a run directory")
        saved = read_args(resume)
        cfg = resume_config(saved, {**file_settings, **overrides}, resume)
    else:
        cfg = build_config(file_settings, overrides, origin=str(config) if config else "options")

    if devices is not None and devices > 1:
        _launch(cfg.to_dict(), devices, resume, json_out)
        return

    from nhlcli.train.engine import train
    from nhlcli.train.progress import RichReporter, SilentReporter

    reporter = SilentReporter() if json_out else RichReporter(console)
    result = train(cfg, resume_dir=resume, reporter=reporter)
    if result.run_dir is None:  # ranks other than 0 print nothing
        return
    if json_out:
        print_json(result.to_dict())
        return
    console.print(
        f"done: best val top-1 {result.best_top1:.2f}% (epoch {result.best_epoch}); "
        f"checkpoints in [cyan]{result.run_dir}/best[/] and [cyan]{result.run_dir}/last[/]"
    )


def _launch(settings: dict[str, Any], devices: int, resume: Path | None, json_out: bool) -> None:
    """Validate inputs here (one-line errors), then start torchrun with the resolved settings."""
    from nhlcli.train.distributed import launch_torchrun
    from nhlcli.train.inputs import load_training_data

    if resume is None:
        load_training_data(settings["data"], settings["tree"], settings["allow_extra"])
    fd, path = tempfile.mkstemp(prefix="nhl-train-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(settings, f, sort_keys=False)
        args = ["train", "-c", path]
        if resume is not None:
            args += ["--resume", str(resume)]
        if json_out:
            args.append("--json")
        rc = launch_torchrun(devices, args)
    finally:
        Path(path).unlink(missing_ok=True)
    if rc != 0:
        sys.exit(rc)
