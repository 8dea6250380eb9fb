"""Turn a `--device` option into a torch device, checked to exist (one-line errors otherwise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nhlcli.errors import NhlError

if TYPE_CHECKING:  # torch loads when a device is resolved (fast `nhl --help`)
    import torch

# The default of every `--device` and its help (train, eval, predict, experts, tree compare,
# build-tree --source induced, profile/cutout --latency).
DEFAULT_DEVICE = "auto"
DEVICE_HELP = "cpu, cuda, cuda:N, mps, or auto (CUDA when available, else the CPU)."


def resolve_device(name: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', 'mps', or None/'auto' (CUDA when available, else the CPU)."""
    import torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise NhlError(f"unknown device '{name}' (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise NhlError(f"--device {name}: this torch sees no CUDA GPU (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NhlError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise NhlError(f"--device {name}: MPS is not available here (use --device cpu)")
    elif dev.type != "cpu":
        raise NhlError(f"unsupported device '{name}' (use cpu, cuda, cuda:N or mps)")
    return dev
