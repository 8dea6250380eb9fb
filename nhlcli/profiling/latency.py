"""Measured wall-clock time per batch of the report's three models (these ARE allocated).

The models are built first, each run `warmup` times, then timed **interleaved**: run r times the
baseline, the full model and the cutout once each, so a change in the machine's load hits all of
them alike (CUDA is synchronised around every run). Each model gets min / median / max ms per
batch, its MAC rate (GMACs per second at that batch) and its efficiency: its rate over the
baseline's. A wide spread (the slowest runs more than 25 % above the median) is reported as a
warning: the machine was too busy to measure well. The full model is only built when its weights
fit `max_params`; otherwise its row is skipped with a message and the cutout is built directly
from the sub-tree (the same network a cutout produces).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nhlcli.devices import resolve_device
from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.presets import Preset, get_preset
from nhlcli.profiling.report import baseline_for, tree_nodes_per_level

MAX_LATENCY_PARAMS = 400_000_000  # 1.6 GB of float32 weights


def _check_counts(batch_size: int, runs: int, warmup: int) -> None:
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
    from nhlcli.precision import autocast

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
    _check_counts(batch_size, runs, warmup)
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
    _check_counts(1, runs, warmup)
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


def measure_report_latency(
    preset: Preset | str,
    tree: Tree,
    subset_class_ids: Sequence[str] | None = None,
    img_size: int = 224,
    batch_size: int = 8,
    device: str = "cpu",
    runs: int = 20,
    warmup: int = 3,
    max_params: int = MAX_LATENCY_PARAMS,
    models: dict[str, nn.Module] | None = None,
    baseline: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """ms per batch of the baseline (k classes), the full model and its cutout, interleaved.

    `models` may hold already built networks by role ("full", "cutout"; e.g. a loaded checkpoint
    and its expert, moved to the device); missing ones are built with random weights (the same
    computation).

    Returns {"ms": {role: median | None}, "stats": {role: min/median/max/spread}, "device",
    "batch_size", "runs", "warmup", "threads", "skipped": [why a row was not measured],
    "noisy": [roles whose spread is wide]}.
    """
    from nhlcli.model.cutout import cutout
    from nhlcli.model.network import build_model

    p = get_preset(preset) if isinstance(preset, str) else preset
    dev = resolve_device(device)
    _check_counts(batch_size, runs, warmup)
    skipped: list[str] = []
    given = dict(models or {})
    k = tree.num_classes
    base = baseline_for(p, baseline)
    built: dict[str, nn.Module] = {
        "baseline": build_model(base, tree, img_size=img_size, device=dev)
    }
    full_params = p.params(tree_nodes_per_level(p, tree), k)
    if "full" in given:
        built["full"] = given["full"].to(dev)
    elif full_params <= max_params:
        built["full"] = build_model(p, tree, img_size=img_size, device=dev)
    else:
        skipped.append(
            f"full {p.name}: not timed, {full_params / 1e6:,.0f} M parameters "
            f"({full_params * 4 / 2**30:.1f} GiB of weights) exceed the {max_params / 1e6:,.0f} M "
            "limit for allocating a model; time a smaller class set (e.g. imagenet100)"
        )
    if subset_class_ids is not None:
        sub = tree.subtree(subset_class_ids, order="given")
        sub_params = p.params(tree_nodes_per_level(p, sub), sub.num_classes)
        if "cutout" in given:
            built["cutout"] = given["cutout"].to(dev)
        elif sub_params > max_params:
            skipped.append(
                f"cutout: not timed, {sub_params / 1e6:,.0f} M parameters exceed the "
                f"{max_params / 1e6:,.0f} M limit; choose fewer classes"
            )
        elif "full" in built:
            built["cutout"] = cutout(built["full"], list(subset_class_ids), "given")  # type: ignore[arg-type]
        else:  # the full model is too large to allocate: build the same network directly
            built["cutout"] = build_model(p, sub, img_size=img_size, device=dev)
    times = time_interleaved(built, batch_size, img_size, dev, runs, warmup, progress)
    stats = {role: summary(t) for role, t in times.items()}
    roles = ["baseline", "full"] + (["cutout"] if subset_class_ids is not None else [])
    return {
        "ms": {role: stats[role]["median"] if role in stats else None for role in roles},
        "stats": stats,
        "device": str(dev),
        "batch_size": batch_size,
        "runs": runs,
        "warmup": warmup,
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "statistic": "median ms per batch, models timed in turn",
        "skipped": skipped,
        "noisy": [role for role, st in stats.items() if st["spread"] > BUSY_SPREAD],
    }
