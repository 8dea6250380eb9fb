"""Training settings: defaults < `-c config.yaml` < command-line options, all validated at once.

Every setting has one name (`batch_size`); a config file may spell it `batch-size` too. An unknown
key, a value of the wrong type or outside its choices is an NhlError naming the key and the file.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from nhlcli.errors import NhlError
from nhlcli.textio import read_text

OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("auto", "bf16", "fp16", "none")

# Settings that may differ when a run is resumed: they do not change what is computed
# (epochs extends or shortens the schedule's horizon only if it is given again explicitly).
RESUME_OVERRIDABLE = frozenset(
    {"epochs", "workers", "device", "data", "max_train_batches", "max_val_batches"}
)


@dataclass
class TrainConfig:
    arch: str = ""
    tree: str | None = None
    data: str = ""
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None  # None: 0.1·batch/256 (sgd) or 1e-3·batch/256 (adamw)
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 1e-4 (sgd) or 0.05 (adamw)
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    amp: str = "auto"  # auto: bf16 on CUDA GPUs that support it, none on CPU
    channels_last: bool | None = None  # None: on for CUDA, off on CPU
    seed: int = 0
    deterministic: bool = False
    workers: int | None = None  # None: CPU cores - 1, at most 8
    device: str | None = None  # None: cuda when available, else cpu
    img_size: int = 224
    randaugment_n: int = 2  # 0: no RandAugment
    randaugment_m: int = 9
    min_crop_scale: float = 0.08
    name: str = "exp"
    project: str = "runs/train"
    exist_ok: bool = False
    trunk_weights: str | None = None
    freeze_trunk: bool = False
    allow_extra: bool = False
    max_train_batches: int | None = None  # cap per epoch (tests, smoke runs)
    max_val_batches: int | None = None

    # ----------------------------------------------------------------- derived values
    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        base = 0.1 if self.optimizer == "sgd" else 1e-3
        return base * self.batch_size / 256

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.optimizer == "sgd" else 0.05

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f.name: f for f in fields(TrainConfig)}
MAX_LR = 10.0
MAX_SEED = 2**63 - 1
INT_RANGES = {  # bounds checked before anything is allocated
    "epochs": (1, 100_000),
    "batch_size": (1, 65_536),
    "img_size": (32, 1024),  # nhlcli.model.network.MIN_IMG_SIZE / MAX_IMG_SIZE
    "seed": (0, MAX_SEED),
}
_INT = {"epochs", "batch_size", "seed", "img_size", "randaugment_n", "randaugment_m"}
_OPT_INT = {"workers", "max_train_batches", "max_val_batches"}
_FLOAT = {"momentum", "label_smoothing", "warmup_epochs", "min_crop_scale"}
_OPT_FLOAT = {"lr", "weight_decay"}
_BOOL = {"deterministic", "exist_ok", "freeze_trunk", "allow_extra"}
_OPT_BOOL = {"channels_last"}
_STR = {"arch", "data", "optimizer", "amp", "name", "project"}
_OPT_STR = {"tree", "device", "trunk_weights"}


def _check_value(key: str, value: Any) -> tuple[Any, str | None]:
    """(converted value, problem or None)."""
    if value is None:
        if key in _OPT_INT | _OPT_FLOAT | _OPT_BOOL | _OPT_STR:
            return None, None
        return None, f"'{key}' needs a value"
    if key in _INT | _OPT_INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"'{key}' must be an integer, not {value!r}"
        return value, None
    if key in _FLOAT | _OPT_FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"'{key}' must be a number, not {value!r}"
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            return None, f"'{key}' must be a finite number, not {value!r}"
        return number, None
    if key in _BOOL | _OPT_BOOL:
        if not isinstance(value, bool):
            return None, f"'{key}' must be true or false, not {value!r}"
        return value, None
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        return None, f"'{key}' must be a string, not {value!r}"
    return value, None


def _semantic_problems(cfg: TrainConfig) -> list[str]:
    p: list[str] = []
    if not cfg.arch:
        p.append("no architecture given (--arch, e.g. n3hl or resnet50)")
    if not cfg.data:
        p.append("no data folder given (--data DIR with DIR/train/<class>/...)")
    if cfg.optimizer not in OPTIMIZERS:
        p.append(f"optimizer '{cfg.optimizer}' is not one of {', '.join(OPTIMIZERS)}")
    if cfg.amp not in AMP_MODES:
        p.append(f"amp '{cfg.amp}' is not one of {', '.join(AMP_MODES)}")
    for key, (low, high) in INT_RANGES.items():
        if not low <= getattr(cfg, key) <= high:
            p.append(f"'{key}' must be in {low}..{high:,}, not {getattr(cfg, key)}")
    for key in ("workers", "max_train_batches", "max_val_batches"):
        v = getattr(cfg, key)
        if v is not None and v < (0 if key == "workers" else 1):
            p.append(f"'{key}' must be at least {0 if key == 'workers' else 1}")
    if cfg.lr is not None and not 0 < cfg.lr <= MAX_LR:
        p.append(f"'lr' must be in (0, {MAX_LR:g}], not {cfg.lr:g}")
    if cfg.weight_decay is not None and not 0 <= cfg.weight_decay <= 1:
        p.append(f"'weight_decay' must be in [0, 1], not {cfg.weight_decay:g}")
    if not 0 <= cfg.momentum < 1:
        p.append(f"'momentum' must be in [0, 1), not {cfg.momentum:g}")
    if not 0 <= cfg.label_smoothing < 1:
        p.append("'label_smoothing' must be in [0, 1)")
    if not 0 <= cfg.warmup_epochs <= cfg.epochs:
        p.append(f"'warmup_epochs' must be in [0, epochs={cfg.epochs}], not {cfg.warmup_epochs:g}")
    if not 0 < cfg.min_crop_scale <= 1:
        p.append("'min_crop_scale' must be in (0, 1]")
    if cfg.randaugment_n < 0 or not 0 < cfg.randaugment_m < 30:
        p.append("RandAugment needs randaugment_n >= 0 and 0 < randaugment_m < 30")
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        p.append(f"run name '{cfg.name}' must be a plain folder name")
    return p


def normalize_keys(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """Map `batch-size` to `batch_size`; unknown keys are an NhlError with suggestions."""
    out: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            close = difflib.get_close_matches(name, list(_FIELDS), n=1)
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
    """Defaults, then the file's settings, then the command line's (None = not given)."""
    merged: dict[str, Any] = {}
    merged.update(file_settings or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    merged = normalize_keys(merged, origin)
    problems = []
    values = {}
    for key, value in merged.items():
        converted, problem = _check_value(key, value)
        if problem:
            problems.append(problem)
        else:
            values[key] = converted
    if problems:
        raise NhlError(f"{origin}: bad training settings", problems)
    cfg = TrainConfig(**values)
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
        if k not in RESUME_OVERRIDABLE and k in _FIELDS and not _same(getattr(cfg_saved, k), v)
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
