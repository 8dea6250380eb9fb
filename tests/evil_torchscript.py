"""A TorchScript file whose scripted `__setstate__` writes a file when it is loaded (test only)."""

from __future__ import annotations

from pathlib import Path

import torch


class _Evil(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        # runs inside torch.jit.load: creates the marker file and writes "AAAA" into it
        t = torch.from_file(state[0], shared=True, size=4, dtype=torch.uint8)
        t.fill_(65)
        self.marker = self.marker + str(int(t.sum().item()))


def write_evil_module(path: Path, marker: Path) -> Path:
    """Save the module; loading it (torch.jit.load) creates `marker`."""
    torch.jit.save(torch.jit.script(_Evil(str(marker))), str(path))
    return path
