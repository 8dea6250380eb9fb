"""A profile with measured latency: the counted report, and its three models built and timed.

`profile` is what `nhl profile`, `nhl cutout --profile` and `nhlcli.profile` run: the counted rows
(`report.profile_report`, nothing allocated) and, with ``latency=True``, `measure_report_latency`,
which builds the baseline, the full model and the cutout (these ARE allocated) and times them
interleaved (`latency.time_interleaved`). Each row then gets its min / median / max ms per batch,
its MAC rate (GMACs per second at that batch) and its efficiency: its rate over the baseline's
(`report.attach_latency`). A wide spread is reported as a warning (`latency.BUSY_SPREAD`). The full
model is only built when its weights fit `max_params`; otherwise its row is skipped with a message
and the cutout is built directly from the sub-tree (the same network a cutout produces).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nhlcli.devices import resolve_device
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.config import nodes_per_level
from nhlcli.model.cutout import cutout
from nhlcli.model.network import build_model
from nhlcli.model.presets import Preset, get_preset
from nhlcli.profiling.counters import DEFAULT_COUNTER
from nhlcli.profiling.latency import BUSY_SPREAD, check_counts, summary, time_interleaved
from nhlcli.profiling.report import (
    Profile,
    attach_latency,
    baseline_for,
    profile_report,
    row_label,
)

MAX_LATENCY_PARAMS = 400_000_000  # 1.6 GB of float32 weights


def profile(
    preset: Preset | str,
    tree: Tree,
    subset: Sequence[str] | None = None,
    img_size: int = 224,
    *,
    latency: bool = False,
    batch_size: int = 8,
    runs: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    models: dict[str, Any] | None = None,
    counter: str = DEFAULT_COUNTER,
    baseline: str | None = None,
    progress: Any = None,
) -> Profile:
    """The profile (baseline / full / cutout), with measured latency when asked.

    `models`: already built networks to time by role ("full", "cutout"), e.g. a checkpoint and its
    expert; the others are built for timing. `counter`, `baseline`: as `profile_report`.
    """
    report = profile_report(preset, tree, subset, img_size, counter=counter, baseline=baseline)
    if latency:
        measured = measure_report_latency(
            preset, tree, subset, img_size, batch_size, device, runs, warmup, models=models,
            baseline=report.baseline,
            progress=progress,
        )  # fmt: skip
        attach_latency(report, measured)
    return report


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
    "noisy": [roles whose spread is wide]}; a skipped row is named as in the report's tables
    (`report.row_label`).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    dev = resolve_device(device)
    check_counts(batch_size, runs, warmup)
    skipped: list[str] = []
    given = dict(models or {})
    k = tree.num_classes
    base = baseline_for(p, baseline)
    built: dict[str, nn.Module] = {
        "baseline": build_model(base, tree, img_size=img_size, device=dev)
    }
    full_params = p.params(nodes_per_level(p, tree), k)
    if "full" in given:
        built["full"] = given["full"].to(dev)
    elif full_params <= max_params:
        built["full"] = build_model(p, tree, img_size=img_size, device=dev)
    else:
        skipped.append(
            f"{row_label(p.name, k)}: not timed, {full_params / 1e6:,.0f} M parameters "
            f"({full_params * 4 / 2**30:.1f} GiB of weights) exceed the {max_params / 1e6:,.0f} M "
            "limit for allocating a model; time a smaller class set (e.g. imagenet100)"
        )
    if subset_class_ids is not None:
        sub = tree.subtree(subset_class_ids, order="given")
        sub_params = p.params(nodes_per_level(p, sub), sub.num_classes)
        if "cutout" in given:
            built["cutout"] = given["cutout"].to(dev)
        elif sub_params > max_params:
            skipped.append(
                f"{row_label('cutout', sub.num_classes)}: not timed, {sub_params / 1e6:,.0f} M "
                "parameters exceed the "
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
