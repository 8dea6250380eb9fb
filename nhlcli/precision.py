"""Inference precision of PyTorch models: fp32, or bf16 autocast on CPUs that support it.

`--precision bf16` runs the forward pass under ``torch.autocast("cpu", torch.bfloat16)``:
convolutions and matrix products in bfloat16 (oneDNN), reductions and the softmax in fp32. It is
only worth it, and only allowed, where the CPU has bf16 instructions: `cpu_bf16_supported` asks
oneDNN (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) and falls back to torch's CPU
capability string (AVX512_BF16 / AMX). Elsewhere bf16 would be emulated, slower than fp32, so it
is one clear error (exit 2) instead.

The environment variable ``NHL_CPU_BF16=0`` makes the check say "unsupported" on any CPU (and
``NHL_CPU_BF16=1`` says "supported"); it exists to test and to demonstrate the error, and to
turn bf16 off fleet-wide.
"""

from __future__ import annotations

import contextlib
import os

import torch

from nhlcli.errors import NhlError

PRECISIONS = ("fp32", "bf16")
BF16_ENV = "NHL_CPU_BF16"


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively (module doc); NHL_CPU_BF16=0/1 overrides."""
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    with contextlib.suppress(Exception):
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    return "AVX512_BF16" in capability or "AMX" in capability


def check_precision(precision: str, device: torch.device | str = "cpu") -> None:
    """NhlError (one line) for an unknown precision, or bf16 on a CPU without bf16."""
    if precision not in PRECISIONS:
        raise NhlError(f"unknown --precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu_bf16_supported():
        capability = torch.backends.cpu.get_cpu_capability()
        raise NhlError(
            f"--precision bf16 needs a CPU with bf16 instructions (AVX512_BF16 or AMX); this one "
            f"has {capability}{' (NHL_CPU_BF16=0)' if os.environ.get(BF16_ENV) == '0' else ''}: "
            "use --precision fp32, or an int8 ONNX export (nhl export --quantize int8)"
        )


def autocast(
    precision: str, device: torch.device | str = "cpu"
) -> contextlib.AbstractContextManager:
    """The context a forward pass of this precision runs in (fp32: none)."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
