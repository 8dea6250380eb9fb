"""Training settings, declared once: defaults < `--config config.yaml` < command-line options.

Each setting is one field of `TrainConfig`, declared with `setting(...)` (`nhlcli.setting_fields`,
the mechanism tree-source options share): its default, its help
text, its allowed values (choices, range) and whether it may change on resume. Everything else is
derived from that one declaration: the type and range checks of `build_config`, the `nhl train`
options (`nhlcli/cli/train_cmd.py` builds them from `SETTINGS`), and the settings table in
docs/training.md
(a test compares it with `SETTINGS`). A config file may spell a key `batch-size` or `batch_size`. An
unknown key, a value of the wrong type, a non-finite number or a value outside its range is an
NhlError naming the key and the file; every problem is reported at once.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nhlcli.devices import DEFAULT_DEVICE, DEVICE_HELP
from nhlcli.errors import NhlError
from nhlcli.model.config import MAX_IMG_SIZE, MIN_IMG_SIZE
from nhlcli.setting_fields import SettingSpec, setting, specs_of
from nhlcli.textio import read_text

OPTIMIZERS = ("sgd", "adamw")

# Named sets of settings (`--recipe`): they replace the defaults; a config file and options win.
# The default, `auto`, picks one of them by the run's length (nhlcli/training/auto_recipe.py).
RECIPES: dict[str, dict[str, Any]] = {
    # A few epochs from scratch on a few thousand small images (CPU budgets): AdamW (it learned
    # 1.5x faster than Nesterov SGD at lr 0.05 or 0.025 in benchmarks/bench_train_imagenette.py),
    # no RandAugment, larger crops, tuned at batch 32, each residual branch starting as identity.
    "fast": {
        "optimizer": "adamw",
        "lr": 0.002,
        "randaugment_n": 0,
        "min_crop_scale": 0.35,
        "zero_init_residual": True,
        "warmup_epochs": 1.0,
        "label_smoothing": 0.1,
    },
    # The paper's long schedules (300 epochs for 100/1000 classes; batch 24-56, mixed precision)
    # with timm's RandAugment(2, 9) and ImageNet crops.
    "paper": {
        "epochs": 300,
        "batch_size": 32,
        "randaugment_n": 2,
        "randaugment_m": 9,
        "min_crop_scale": 0.08,
        "label_smoothing": 0.1,
        "warmup_epochs": 5.0,
        "amp": "auto",
    },
}
AMP_MODES = ("auto", "bf16", "fp16", "none")
AUTO_RECIPE = "auto"
# `auto` picks `fast` below this many optimizer steps and `paper` from it on: the point where
# ultralytics' `optimizer=auto` turns from AdamW to SGD (the rule issue 20 asked for); `fast` won
# at every budget measured (656 to 2,368 steps, docs/training.md), and the paper's recipe is
# made for 300-epoch schedules of 10^5 to 10^6 steps.
AUTO_RECIPE_STEPS = 10_000
RUN_LENGTH_KEYS = frozenset({"epochs", "batch_size"})  # what `auto` decides by; it never sets them
# What args.yaml records about a run besides its settings: `recipe_auto`, the recipe `auto` chose
# and why. Read back (resume, `--config args.yaml`), it is skipped, not an unknown key.
RECORDED_KEYS = frozenset({"recipe_auto"})


@dataclass
class TrainConfig:
    """Every setting of `nhl train` / `nhlcli.training(config)`; build one with `build_config`."""

    arch: str = setting(
        "", "Preset: n3hl, n2hl, phl-small, resnet50, ... (`nhl archs`).", flag="-a/--arch"
    )
    recipe: str | None = setting(
        AUTO_RECIPE,
        "Named settings replacing the defaults: fast (short runs), paper (long schedules), "
        f"auto (fast below {AUTO_RECIPE_STEPS:,} optimizer steps, else paper).",
        choices=(AUTO_RECIPE, *RECIPES),
    )
    tree: str | None = setting(
        None,
        "Tree file, shipped tree name, or wordnet: the WordNet tree of the class folders, kept "
        "in the run [wordnet for presets that nest levels, else one class per folder].",
        flag="-t/--tree",
    )
    data: str = setting(
        "", "Folder with train/<class>/... and val/<class>/...", resumable=True, path=True
    )
    epochs: int = setting(10, "Epochs.", low=1, high=100_000, resumable=True)
    batch_size: int = setting(
        32, "Global batch size (all processes).", flag="-b/--batch-size", low=1, high=65_536
    )
    lr: float | None = setting(
        None,
        "Peak learning rate [0.1·B/256 sgd, 1e-3·B/256 adamw; B = batch·accumulate].",
        low=0,
        low_open=True,
        high=10,
    )
    optimizer: str = setting("sgd", "Optimizer (sgd is Nesterov SGD).", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "SGD momentum.", low=0, high=1, high_open=True)
    weight_decay: float | None = setting(
        None, "Weight decay of conv/linear weights [1e-4 sgd, 0.05 adamw].", low=0, high=1
    )
    label_smoothing: float = setting(0.1, "Label smoothing.", low=0, high=1, high_open=True)
    warmup_epochs: float = setting(1.0, "Linear warm-up, in epochs.", low=0, high=100_000)
    amp: str = setting(
        "auto",
        "Mixed precision [auto: bf16 on CUDA GPUs that have it, none on CPU].",
        choices=AMP_MODES,
    )
    channels_last: bool | None = setting(
        None,
        "Channels-last memory format [on for CUDA].",
        flag="--channels-last/--no-channels-last",
    )
    seed: int = setting(0, "Random seed.", low=0, high=2**63 - 1)
    deterministic: bool = setting(
        False, "Deterministic algorithms: resume gives identical weights.", flag="--deterministic"
    )
    workers: int | None = setting(
        None, "Data loader workers [CPU cores - 1, at most 8].", low=0, high=256, resumable=True
    )
    device: str | None = setting(DEFAULT_DEVICE, DEVICE_HELP, resumable=True)  # None: auto
    img_size: int = setting(
        224, "Training resolution in pixels.", low=MIN_IMG_SIZE, high=MAX_IMG_SIZE
    )
    randaugment_n: int = setting(2, "RandAugment operations per image, 0 = off.", low=0, high=16)
    randaugment_m: int = setting(
        9, "RandAugment magnitude.", low=0, low_open=True, high=30, high_open=True
    )
    min_crop_scale: float = setting(
        0.08, "Smallest random-resized-crop area.", low=0, low_open=True, high=1
    )
    zero_init_residual: bool = setting(
        True,
        "Zero the last BN γ of each residual branch (branches start as identity).",
        flag="--zero-init-residual/--no-zero-init-residual",
    )
    name: str = setting("exp", "Run name: runs/train/NAME (NAME-2, ... when it exists).")
    project: str = setting("runs/train", "Parent folder of runs.", path=True)
    exist_ok: bool = setting(False, "Reuse runs/train/NAME instead of NAME-2.", flag="--exist-ok")
    trunk_weights: str | None = setting(
        None,
        "Pretrained trunk: torchvision ResNet, or timm / official ConvNeXt-V2 state dict "
        "(.safetensors, .pt/.pth).",
        path=True,
    )
    freeze_trunk: bool = setting(False, "Do not train the trunk.", flag="--freeze-trunk")
    allow_extra: bool = setting(
        False,
        "Ignore class folders that are not in the tree (and say which).",
        flag="--allow-extra",
    )
    max_train_batches: int | None = setting(
        None, "Stop each epoch after N batches (smoke runs).", low=1, resumable=True
    )
    max_val_batches: int | None = setting(
        None,
        "Validate on N batches of a fixed, seeded, class-balanced subset of val.",
        low=1,
        resumable=True,
    )
    accumulate: int = setting(
        1, "Gradient accumulation: one optimizer step per N batches.", low=1, high=4096
    )
    ema: float | None = setting(
        None,
        "EMA of the weights with this decay (e.g. 0.999), validated and saved as last-ema/, "
        "best-ema/ [off].",
        low=0,
        low_open=True,
        high=1,
        high_open=True,
    )
    mixup: float = setting(
        0.0,
        "MixUp (kornia): the partner image's weight is drawn from U(0, M); 0 = off.",
        low=0,
        high=1,
    )
    cutmix: float = setting(
        0.0,
        "CutMix (kornia): box size from Beta(A, A); 0 = off; with --mixup, one per batch.",
        low=0,
        high=100,
    )
    compile: bool = setting(False, "torch.compile the model (opt-in).", flag="--compile")
    save_every: int | None = setting(
        None, "Also keep the checkpoint of every N-th epoch (epoch-NNNN/).", low=1, resumable=True
    )
    patience: int | None = setting(
        None, "Stop early after N epochs without a better val top-1.", low=1, resumable=True
    )
    tensorboard: bool = setting(
        False,
        "Log scalars to RUN/tensorboard (needs the tensorboard extra).",
        flag="--tensorboard",
        resumable=True,
    )

    # Not a setting: the settings given (config file, options, keywords) rather than defaulted.
    # `recipe: auto` fills in only the others (nhlcli/training/auto_recipe.py).
    explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    # ----------------------------------------------------------------- derived values
    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        base = 0.1 if self.optimizer == "sgd" else 1e-3
        return base * self.batch_size * self.accumulate / 256

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.optimizer == "sgd" else 0.05

    def to_dict(self) -> dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def given_settings(self) -> dict[str, Any]:
        """The settings given (`explicit`) or set to other than their default: what rebuilds
        this config with `build_config`, `recipe: auto` still free to fill in the rest."""
        return {
            s.name: getattr(self, s.name)
            for s in SETTINGS
            if s.name in self.explicit or getattr(self, s.name) != s.default
        }


SETTINGS: tuple[SettingSpec, ...] = specs_of(TrainConfig)
_BY_NAME = {s.name: s for s in SETTINGS}
RESUME_OVERRIDABLE = frozenset(s.name for s in SETTINGS if s.resumable)


def _convert(spec: SettingSpec, value: Any) -> tuple[Any, str | None]:
    """(value of the setting's type, problem or None)."""
    key = spec.name
    if value is None:
        return (None, None) if spec.optional else (None, f"'{key}' needs a value")
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"'{key}' must be an integer, not {value!r}"
        return value, None
    if spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"'{key}' must be a number, not {value!r}"
        if not math.isfinite(value):
            return None, f"'{key}' must be a finite number, not {value!r}"
        return float(value), None
    if spec.kind is bool:
        if not isinstance(value, bool):
            return None, f"'{key}' must be true or false, not {value!r}"
        return value, None
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        return None, f"'{key}' must be a string, not {value!r}"
    return value, None


def _semantic_problems(cfg: TrainConfig) -> list[str]:
    """Problems no single declaration can state: required values and their combinations."""
    p: list[str] = []
    if not cfg.arch:
        p.append("no architecture given (--arch, e.g. n3hl or resnet50)")
    if not cfg.data:
        p.append("no data folder given (--data DIR with DIR/train/<class>/...)")
    if not cfg.name or "/" in cfg.name or "\\" in cfg.name or cfg.name in (".", ".."):
        p.append(f"run name '{cfg.name}' must be a plain folder name")
    return p


def normalize_keys(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """Map `batch-size` to `batch_size`; unknown keys are an NhlError with suggestions."""
    out: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name in RECORDED_KEYS:
            continue
        if name not in _BY_NAME:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{key}'{hint}")
            continue
        out[name] = value
    if problems:
        raise NhlError(f"{origin}: bad training settings", problems)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file (keys checked, values not yet)."""
    p = Path(path)
    data = load_yaml(read_text(p, "config file"), str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NhlError(f"{p}: a training config must be a YAML mapping of settings")
    return normalize_keys(data, str(p))


def build_config(
    file_settings: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    origin: str = "settings",
) -> TrainConfig:
    """Defaults, then the file's settings, then the command line's (None = not given).

    >>> build_config({"arch": "n3hl", "data": "imagenette2"}, {"epochs": 2}).epochs
    2
    """
    merged: dict[str, Any] = {}
    merged.update(file_settings or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    merged = normalize_keys(merged, origin)
    explicit = frozenset(k for k, v in merged.items() if v is not None)
    recipe = merged.get("recipe", AUTO_RECIPE)
    if recipe in RECIPES:  # the recipe replaces the defaults; the file and options win
        merged = {**RECIPES[recipe], **merged}
    problems = []
    values = {}
    for key, value in merged.items():
        spec = _BY_NAME[key]
        converted, problem = _convert(spec, value)
        problem = problem or spec.problem(converted)
        if problem:
            problems.append(problem)
        else:
            values[key] = converted
    if problems:
        raise NhlError(f"{origin}: bad training settings", problems)
    cfg = TrainConfig(**values, explicit=explicit)
    problems = _semantic_problems(cfg)
    if problems:
        raise NhlError(f"{origin}: bad training settings", problems)
    return cfg


def _same(saved: Any, given: Any) -> bool:
    """Equal settings; paths count as equal when they name the same file."""
    if saved == given:
        return True
    if isinstance(saved, str) and isinstance(given, str | Path):
        return Path(saved).resolve() == Path(given).resolve()
    return False


def resume_config(saved: dict[str, Any], overrides: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The saved run's settings with the few that may change on resume applied."""
    given = {k.replace("-", "_"): v for k, v in overrides.items() if v is not None}
    cfg_saved = build_config(saved, None, origin=f"{run_dir}/args.yaml")
    changed = [
        k
        for k, v in given.items()
        if k not in RESUME_OVERRIDABLE and k in _BY_NAME and not _same(getattr(cfg_saved, k), v)
    ]
    if changed:
        shown = ", ".join(
            f"{k} (run: {getattr(cfg_saved, k)!r}, given: {given[k]!r})" for k in changed
        )
        raise NhlError(
            f"cannot change settings when resuming {run_dir}: {shown}; only "
            f"{', '.join(sorted(RESUME_OVERRIDABLE))} may differ"
        )
    allowed = {k: v for k, v in given.items() if k in RESUME_OVERRIDABLE}
    return build_config(saved, allowed, origin=f"{run_dir}/args.yaml")


def config_from_sources(
    config_file: str | Path | None = None,
    options: dict[str, Any] | None = None,
    resume_dir: str | Path | None = None,
) -> TrainConfig:
    """The settings of one `nhl train`: a config file, then options (None = not given).

    With `resume_dir`, the run's saved args.yaml is the base and only resumable settings may differ.
    """
    from nhlcli.training.rundir import read_args

    file_settings = read_config_file(config_file) if config_file else {}
    if resume_dir is not None:
        run_dir = resolve_resume_dir(resume_dir)
        given = {**file_settings, **{k: v for k, v in (options or {}).items() if v is not None}}
        return resume_config(read_args(run_dir), given, run_dir)
    return build_config(
        file_settings, options, origin=str(config_file) if config_file else "options"
    )


def resolve_resume_dir(path: str | Path) -> Path:
    """The run directory of `--resume`: the run itself, or its `last/` or `best/` checkpoint."""
    p = Path(path)
    if p.name in ("last", "best") and (p.parent / "args.yaml").is_file():
        return p.parent
    if not p.is_dir():
        raise NhlError(f"--resume: {p} is not a run directory")
    return p


def config_text(settings: dict[str, Any] | None = None) -> str:
    """Every setting as YAML, `key: value  # help`: the defaults, or `settings` where given
    (`nhl train --print-config`; a valid `--config` file once arch and data are filled in)."""
    given = {k: v for k, v in normalize_keys(settings or {}, "settings").items() if v is not None}
    recipe = given.get("recipe", AUTO_RECIPE)
    values = {s.name: s.default for s in SETTINGS}
    values.update(RECIPES.get(recipe, {}) if isinstance(recipe, str) else {})
    values.update(given)
    # With recipe auto, the settings it decides are comments: as a config file, auto still decides
    decided = set().union(*RECIPES.values()) - RUN_LENGTH_KEYS - set(given)
    lines = ["# nhl train settings (defaults < --recipe < --config file < options)"]
    for s in SETTINGS:
        value = yaml.safe_dump({s.key: values[s.name]}, default_flow_style=True)
        value = value.strip()[1:-1]  # {key: value} -> key: value
        off = "# " if recipe == AUTO_RECIPE and s.name in decided else ""
        why = " (decided by recipe auto)" if off else ""
        lines.append(f"{off}{value}  # {s.help}{why}")
    return "\n".join(lines) + "\n"


def settings_table() -> str:
    """The Markdown table of every setting (docs/training.md holds a copy; a test compares)."""
    rows = ["| key | option | default | allowed | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        if s.default is None:
            default = "—"
        elif s.kind is bool:
            default = str(s.default).lower()
        else:
            default = f"`{s.default}`" if s.default != "" else "(required)"
        rows.append(
            f"| `{s.key}` | `{s.flag}` | {default} | {s.range_text()} | "
            f"{s.help}{' (may change on resume)' if s.resumable else ''} |"
        )
    return "\n".join(rows)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise NhlError(
                f"duplicate key {key!r} (lines {seen[key] + 1} and {key_node.start_mark.line + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_without_duplicates,  # type: ignore[arg-type]
)


def load_yaml(text: str, origin: str) -> Any:
    """YAML (safe types only) with duplicate keys refused; NhlError in one line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except NhlError as e:
        raise NhlError(f"{origin}: {e}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NhlError(f"{origin}: not a readable YAML file ({first})") from None
