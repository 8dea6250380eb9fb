"""Initialising a network's trunk from a ResNet state dict in the torchvision layout.

The file is a `.safetensors` file, or a `.pth`/`.pt` file read with `torch.load(weights_only=True)`
(no code runs). Keys may carry a `module.` (DDP), `model.` or `backbone.` prefix, or sit under a
`state_dict`/`model` entry; those wrappers are removed. A key such as `layer3.5.conv2.weight` goes
to `trunk.layer3.5.conv2.weight`; `fc.*` goes to the model's own `fc` (the ResNet50 baseline) when
the shapes agree. The report lists what was loaded, what in the file was not used (e.g. `layer4.*`
for a network that splits after conv4), what had another shape (e.g. a 1000-way `fc`), and which
trunk tensors the file did not provide.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nhlcli.errors import NhlError, first_line
from nhlcli.fileio import register_input

WRAPPER_PREFIXES = ("module.", "model.", "backbone.")


@dataclass
class TrunkLoadReport:
    file: str
    loaded: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # in the file, no place in the model
    shape_mismatch: list[str] = field(default_factory=list)  # "key: file (..) vs model (..)"
    missing: list[str] = field(default_factory=list)  # trunk tensors the file did not provide

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "loaded": len(self.loaded),
            "unused": self.unused,
            "shape_mismatch": self.shape_mismatch,
            "missing": self.missing,
        }

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.file}"]
        if self.unused:
            parts.append(f"{len(self.unused)} unused ({_groups(self.unused)})")
        if self.shape_mismatch:
            parts.append(
                f"{len(self.shape_mismatch)} with another shape ({_groups(self.shape_mismatch)})"
            )
        if self.missing:
            parts.append(
                f"{len(self.missing)} trunk tensors not in the file ({_groups(self.missing)})"
            )
        return "; ".join(parts)


def _groups(keys: list[str]) -> str:
    """A short description of many keys by their first component: 'layer4.* (30), fc.* (2)'."""
    counts: dict[str, int] = {}
    for k in keys:
        head = k.split(".")[0].split(":")[0]
        counts[head] = counts.get(head, 0) + 1
    return ", ".join(f"{h}.* ({n})" if n > 1 else h for h, n in counts.items())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pth file, wrapper prefixes removed (NhlError if unusable)."""
    p = Path(path)
    if not p.is_file():
        raise NhlError(f"trunk weights file not found: {p}")
    register_input(p)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(p), device="cpu")
        else:
            with warnings.catch_warnings():  # torch warns about unknown pickle protocols
                warnings.simplefilter("ignore")
                raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt files, refused pickled code, wrong format
        raise NhlError(f"{p}: not a readable state dict ({first_line(e)})") from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    elif isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict) or not raw:
        raise NhlError(f"{p}: expected a state dict (a mapping of names to tensors)")
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value
    if not out:
        raise NhlError(f"{p}: the file holds no tensors")
    return out


def load_trunk_weights(model: nn.Module, path: str | Path) -> TrunkLoadReport:
    """Copy matching tensors of a torchvision-layout ResNet state dict into model.trunk (and fc)."""
    source = read_state_dict(path)
    report = TrunkLoadReport(str(path))
    trunk: nn.Module = model.trunk  # type: ignore[assignment]
    targets: dict[str, torch.Tensor] = {k: v for k, v in trunk.state_dict(keep_vars=True).items()}
    fc = getattr(model, "fc", None)
    fc_targets = dict(fc.state_dict(keep_vars=True)) if isinstance(fc, nn.Module) else {}
    used_trunk: set[str] = set()
    with torch.no_grad():
        for key, value in source.items():
            if key.startswith("fc.") and key[3:] in fc_targets:
                dest, name = fc_targets[key[3:]], key
            elif key in targets:
                dest, name = targets[key], key
                used_trunk.add(key)
            else:
                report.unused.append(key)
                continue
            if tuple(dest.shape) != tuple(value.shape):
                report.shape_mismatch.append(
                    f"{name}: file {tuple(value.shape)} vs model {tuple(dest.shape)}"
                )
                continue
            dest.copy_(value.to(dest.dtype))
            report.loaded.append(name)
    report.missing = [k for k in targets if k not in used_trunk]
    if not report.loaded:
        raise NhlError(
            f"{path}: no tensor matches the trunk (expected torchvision ResNet names such as "
            "conv1.weight, layer1.0.conv1.weight)"
        )
    return report


def freeze_trunk(model: nn.Module) -> int:
    """Stop gradients in the trunk; returns the number of frozen parameters.

    The caller keeps the trunk in eval mode while training, so its batch-norm statistics stay those
    of the loaded weights (the paper's Study 4 trains on a frozen pretrained trunk).
    """
    n = 0
    for p in model.trunk.parameters():  # type: ignore[union-attr]
        p.requires_grad_(False)
        n += p.numel()
    return n
