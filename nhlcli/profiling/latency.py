"""Measured wall-clock time per batch of the report's three models (these ARE allocated).

Each model is put in eval mode on the device, run `warmup` times, then timed `runs` times (CUDA is
synchronised before and after every run); the median is reported in milliseconds per batch. The
full model is only built when its weights fit `max_params`; otherwise its row is skipped with a
message and the cutout is built directly from the sub-tree (the same network a cutout produces).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nhlcli.devices import resolve_device
from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.presets import Preset, get_preset
from nhlcli.profiling.report import BASELINE_ARCH, tree_nodes_per_level

MAX_LATENCY_PARAMS = 400_000_000  # 1.6 GB of float32 weights


def _check_counts(batch_size: int, runs: int, warmup: int) -> None:
    if batch_size < 1 or runs < 1 or warmup < 0:
        raise NhlError("--batch-size and --runs must be at least 1, --warmup at least 0")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_forward(
    model: nn.Module,
    batch_size: int,
    img_size: int,
    device: torch.device,
    runs: int = 20,
    warmup: int = 3,
) -> list[float]:
    """Milliseconds per forward pass of a (batch_size, 3, img, img) batch, one per timed run."""
    _check_counts(batch_size, runs, warmup)
    model.eval()
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


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
    baseline: str = BASELINE_ARCH,
) -> dict[str, Any]:
    """Median ms per batch of the baseline (k classes), the full model and its cutout.

    `models` may hold already built networks by role ("full", "cutout"; e.g. a loaded checkpoint
    and its expert, moved to the device); missing ones are built with random weights (the same
    computation).

    Returns {"ms": {role: median | None}, "device", "batch_size", "runs", "warmup", "threads",
    "skipped": [why a row was not measured]}.
    """
    from nhlcli.model.cutout import cutout
    from nhlcli.model.network import HierNet, build_model

    p = get_preset(preset) if isinstance(preset, str) else preset
    dev = resolve_device(device)
    _check_counts(batch_size, runs, warmup)
    ms: dict[str, float | None] = {"baseline": None, "full": None}
    skipped: list[str] = []

    def timed(model: nn.Module) -> float:
        return statistics.median(time_forward(model, batch_size, img_size, dev, runs, warmup))

    given = dict(models or {})
    k = tree.num_classes
    ms["baseline"] = timed(build_model(baseline, tree, img_size=img_size, device=dev))

    full_params = p.params(tree_nodes_per_level(p, tree), k)
    full: HierNet | None = None
    if "full" in given:
        ms["full"] = timed(given["full"].to(dev))
    elif full_params <= max_params:
        full = build_model(p.name, tree, img_size=img_size, device=dev)
        ms["full"] = timed(full)
    else:
        skipped.append(
            f"full {p.name}: not timed, {full_params / 1e6:,.0f} M parameters "
            f"({full_params * 4 / 2**30:.1f} GiB of weights) exceed the {max_params / 1e6:,.0f} M "
            "limit for allocating a model; time a smaller class set (e.g. imagenet100)"
        )
    if subset_class_ids is not None:
        ms["cutout"] = None
        sub = tree.subtree(subset_class_ids, order="given")
        sub_params = p.params(tree_nodes_per_level(p, sub), sub.num_classes)
        if "cutout" in given:
            ms["cutout"] = timed(given["cutout"].to(dev))
        elif sub_params > max_params:
            skipped.append(
                f"cutout: not timed, {sub_params / 1e6:,.0f} M parameters exceed the "
                f"{max_params / 1e6:,.0f} M limit; choose fewer classes"
            )
        elif full is not None:
            expert = cutout(full, list(subset_class_ids), "given")
            full = None  # free the full model before timing the expert
            ms["cutout"] = timed(expert)
        else:  # the full model is too large to allocate: build the same network directly
            ms["cutout"] = timed(build_model(p.name, sub, img_size=img_size, device=dev))
    return {
        "ms": ms,
        "device": str(dev),
        "batch_size": batch_size,
        "runs": runs,
        "warmup": warmup,
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "statistic": "median ms per batch",
        "skipped": skipped,
    }
