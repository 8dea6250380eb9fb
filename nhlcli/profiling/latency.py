"""Timing: wall-clock milliseconds per forward pass of built models, and their summary.

`time_interleaved` runs each model `warmup` times, then times them **interleaved**: run r of
every model in turn, so a change in the machine's load hits all of them alike (CUDA and MPS are
synchronised around every run). `summary` gives min / median / max ms and the spread (how far the
slowest runs are above the median); a spread above `BUSY_SPREAD` means the machine was too busy
to measure well. Which models are timed, and how the times join a profile, is
`nhlcli.profiling.profile`'s business.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nhlcli.errors import NhlError


def check_counts(batch_size: int, runs: int, warmup: int) -> None:
    if batch_size < 1 or runs < 1 or warmup < 0:
        raise NhlError("--batch-size and --runs must be at least 1, --warmup at least 0")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def torch_runner(
    model: nn.Module,
    batch_size: int,
    img_size: int,
    device: torch.device,
    precision: str = "fp32",
) -> Any:
    """A function that runs one timed forward pass of `model` and returns its milliseconds
    (`precision` bf16: under autocast, `nhlcli.precision`)."""
    from nhlcli.model.network import HierNet
    from nhlcli.precision import autocast

    if isinstance(model, HierNet):
        model.prepare_inference()
    else:
        model.eval()
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)

    def run() -> float:
        with torch.inference_mode(), autocast(precision, device):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
        return (time.perf_counter() - t0) * 1000.0

    return run


def time_interleaved(
    models: dict[str, nn.Module],
    batch_size: int,
    img_size: int,
    device: torch.device,
    runs: int = 20,
    warmup: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per forward pass of each model, timed in turn (run r of every model, then
    run r + 1), after `warmup` untimed runs each; `progress(done, total)` after every run."""
    check_counts(batch_size, runs, warmup)
    runners = {role: torch_runner(m, batch_size, img_size, device) for role, m in models.items()}
    return time_runners(runners, runs, warmup, progress)


def time_runners(
    runners: dict[str, Callable[[], float]],
    runs: int = 20,
    warmup: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """The interleaved timing of `time_interleaved` for any runners (a function that runs one
    timed pass and returns its milliseconds: a torch model, an ONNX Runtime session, ...)."""
    check_counts(1, runs, warmup)
    total = (runs + warmup) * len(runners)
    done = 0
    for run in runners.values():
        for _ in range(warmup):
            run()
            done += 1
            if progress is not None:
                progress(done, total)
    times: dict[str, list[float]] = {role: [] for role in runners}
    for _ in range(runs):
        for role, run in runners.items():
            times[role].append(run())
            done += 1
            if progress is not None:
                progress(done, total)
    return times


def summary(times: Sequence[float]) -> dict[str, float]:
    """min / median / max ms, and the spread: how far the slowest runs are above the median."""
    ordered = sorted(times)
    med = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "min": ordered[0],
        "median": med,
        "max": ordered[-1],
        "spread": (p90 - med) / med if med > 0 else 0.0,
    }


BUSY_SPREAD = 0.25  # slowest-runs-above-median share beyond which a measurement is called noisy
