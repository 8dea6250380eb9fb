"""Initialising a network's trunk from a pretrained state dict (ResNet or ConvNeXt-V2).

The trunk's block kind says which layouts it reads (`BlockKind.weight_layouts`): ResNet trunks the
torchvision layout; ConvNeXt-V2 trunks timm's layout or the official checkpoints' (converted key by
key into timm's). A file of another network is a one-line error naming what it looks like.

The file is a `.safetensors` file, or a `.pth`/`.pt` file read with `torch.load(weights_only=True)`
(no code runs). Keys may carry a `module.` (DDP), `model.` or `backbone.` prefix, or sit under a
`state_dict`/`model` entry; those wrappers are removed. A key such as `layer3.5.conv2.weight` goes
to `trunk.layer3.5.conv2.weight`; `fc.*` (timm: `head.fc.*`, `head.norm.*`; the kind's
`head_weights`) goes to the model's own `fc` (and `head_norm`) of a baseline when the shapes agree.
The report lists what was loaded, what in the file was not used (e.g. `layer4.*` for a network that
splits after conv4, `stages.3.*` and `head.*` for the ConvNeXt-V2 NHL), what had another shape (e.g.
a 1000-way `fc`), and which trunk tensors the file did not provide.
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
from nhlcli.model.kinds import get_kind
from nhlcli.training.weight_layouts import describe_keys, detect_layout

WRAPPER_PREFIXES = ("module.", "model.", "backbone.")


@dataclass
class TrunkLoadReport:
    file: str
    layout: str = ""  # the WeightLayout name (e.g. torchvision-resnet)
    loaded: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # in the file, no place in the model
    shape_mismatch: list[str] = field(default_factory=list)  # "key: file (..) vs model (..)"
    missing: list[str] = field(default_factory=list)  # trunk tensors the file did not provide

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "layout": self.layout,
            "loaded": len(self.loaded),
            "unused": self.unused,
            "shape_mismatch": self.shape_mismatch,
            "missing": self.missing,
        }

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.file} ({self.layout} layout)"]
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


def _trunk_kind(model: nn.Module) -> Any:
    preset: Any = model.preset
    return get_kind(preset.trunk.kind)


def source_tensors(model: nn.Module, path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The file's tensors in the trunk kind's naming, and the file's layout (NhlError if the
    file is another network: the message names what it looks like)."""
    kind = _trunk_kind(model)
    arch = model.preset.name  # type: ignore[union-attr]
    readable = {layout.name: layout for layout in kind.weight_layouts}
    if not readable:
        raise NhlError(f"{arch}: block kind '{kind.name}' reads no pretrained trunk weights")
    source = read_state_dict(path)
    layout = detect_layout(source)
    expected = " or ".join(layout.description for layout in readable.values())
    if layout is None:
        raise NhlError(f"{path}: looks like {describe_keys(source)}; {arch} needs {expected}")
    if layout.name not in readable:
        raise NhlError(f"{path}: looks like {layout.description}; {arch} needs {expected}")
    if layout.convert is not None:
        source = dict(layout.convert(k, v) for k, v in source.items())
    return source, layout.name


def _head_targets(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's head tensors (``fc``, ``head_norm``) under the file's names (the kind's
    `head_weights`: ``fc.``, or timm's ``head.fc.`` / ``head.norm.``)."""
    out: dict[str, torch.Tensor] = {}
    for attr, prefix in _trunk_kind(model).head_weights.items():
        module = getattr(model, attr, None)
        if isinstance(module, nn.Module):
            out.update({prefix + k: v for k, v in module.state_dict(keep_vars=True).items()})
    return out


def load_trunk_weights(model: nn.Module, path: str | Path) -> TrunkLoadReport:
    """Copy matching tensors of a pretrained state dict into model.trunk (and a baseline's head).

    The layouts are the trunk kind's (`BlockKind.weight_layouts`: ResNet torchvision's, ConvNeXt-V2
    timm's or the official checkpoints'). The report lists what was loaded, unused and missing.
    """
    source, layout = source_tensors(model, path)
    report = TrunkLoadReport(str(path), layout=layout)
    trunk: nn.Module = model.trunk  # type: ignore[assignment]
    targets: dict[str, torch.Tensor] = {k: v for k, v in trunk.state_dict(keep_vars=True).items()}
    head_targets = _head_targets(model)
    used_trunk: set[str] = set()
    with torch.no_grad():
        for key, value in source.items():
            if key in head_targets:
                dest = head_targets[key]
            elif key in targets:
                dest = targets[key]
                used_trunk.add(key)
            else:
                report.unused.append(key)
                continue
            if tuple(dest.shape) != tuple(value.shape):
                report.shape_mismatch.append(
                    f"{key}: file {tuple(value.shape)} vs model {tuple(dest.shape)}"
                )
                continue
            dest.copy_(value.to(dest.dtype))
            report.loaded.append(key)
    report.missing = [k for k in targets if k not in used_trunk]
    if not report.loaded:
        raise NhlError(f"{path}: no tensor of the {layout} file matches the trunk")
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
