"""`nhl train`: its options are generated from the training settings' one declaration.

`nhlcli.training.config.SETTINGS` declares every setting once (default, help, range); this module
turns each into a Typer option (`nhlcli.cli.setting_options`, shared with `nhl build-tree`), adds
the few options that are not settings (`--config`, `--resume`, `--devices`, `--json`), and calls
`nhlcli.train`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from nhlcli.cli.common import JSON_OPTION, console, examples, print_json
from nhlcli.cli.setting_options import parameter
from nhlcli.training.config import SETTINGS

EPILOG = examples(
    "nhl train --arch n3hl --tree imagenette-wordnet-L3 --data imagenette2 --epochs 30",
    "nhl train --arch resnet50 --data imagenette2 --img-size 96 --amp none --name r50",
    "nhl train --config train.yaml --lr 0.05",
    "nhl train --resume runs/train/exp",
    "nhl train --resume runs/train/exp/last --epochs 20   # extend a finished run",
    "nhl train --arch n3hl --data imagenette2 --img-size 64 --recipe fast --epochs 8 --ema 0.999",
    "nhl train --recipe fast --print-config > train.yaml",
    "nhl train --arch phl-small --data imagenette2 --trunk-weights resnet50.pth --freeze-trunk",
    "nhl train --devices 4 --arch n3hl --tree tree.json --data imagenet100",
    "torchrun --nnodes 2 --nproc-per-node 8 -m nhlcli train --arch n3hl --tree t.json --data d",
)

# Options of `nhl train` that are not training settings.
_EXTRA = {
    "config": (
        Path | None,
        typer.Option(
            None, "--config", help="YAML file of settings (options win).", show_default=False
        ),
    ),
    "resume": (
        Path | None,
        typer.Option(
            None,
            "--resume",
            help="Continue this run (its directory, or its last/ checkpoint).",
            show_default=False,
        ),
    ),
    "devices": (
        int | None,
        typer.Option(
            None,
            "--devices",
            min=1,
            help="Processes on this machine (DDP through torchrun), e.g. GPUs.",
            show_default=False,
        ),
    ),
    "print_config": (
        bool,
        typer.Option(
            False,
            "--print-config",
            help="Print every setting (defaults, --recipe, --config, options) as YAML and exit.",
        ),
    ),
    "json_out": (bool, JSON_OPTION),
}


def _signature() -> inspect.Signature:
    params = [parameter(spec.name, spec) for spec in SETTINGS]
    for name, (annotation, option) in _EXTRA.items():
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
            )
        )
    return inspect.Signature(params)


def train_command(**kwargs: Any) -> None:
    """Train a network on DIR/train, validating on DIR/val; results go to runs/train/NAME.

    The run directory holds args.yaml, results.csv, results.png and the last/ and best/ checkpoints
    (loadable by nhl eval, nhl cutout, nhl profile). Every setting can also come from --config FILE
    (YAML, the keys of docs/training.md); options given here win.
    """
    from nhlcli.api import train
    from nhlcli.training.progress import RichReporter, SilentReporter

    json_out, print_config = kwargs.pop("json_out"), kwargs.pop("print_config")
    config, resume, devices = kwargs.pop("config"), kwargs.pop("resume"), kwargs.pop("devices")
    if print_config:
        from nhlcli.training.config import config_text, read_config_file

        file_settings = read_config_file(config) if config else {}
        given = {k: v for k, v in kwargs.items() if v is not None}
        typer.echo(config_text({**file_settings, **given}), nl=False)
        return
    reporter = SilentReporter() if json_out else RichReporter(console)
    result = train(
        kwargs,
        config_file=config,
        resume=resume,
        devices=devices,
        reporter=reporter,
        json_out=json_out,
    )
    if result is None or result.run_dir is None:  # torchrun child output, or not rank 0
        return
    if json_out:
        print_json(result.to_dict())
        return
    console.print(
        f"done: best val top-1 {result.best_top1:.2f}% (epoch {result.best_epoch}); "
        f"checkpoints in {result.run_dir}/best and {result.run_dir}/last",
        markup=False,
    )


train_command.__signature__ = _signature()  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EPILOG)(train_command)
