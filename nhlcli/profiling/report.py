"""The profile report: a baseline, the full model and its cutout, side by side.

`profile_report` returns a plain dict (what `--json` prints and what the table is rendered from):

* `models`: three rows (`baseline` = ResNet50 or the preset family's baseline (`--baseline`) with
  the full model's k classes, `full`, `cutout`
  when a class subset is given), each with params, MACs, GMACs, its per-part breakdown, and its
  reductions in % against the full model and against the baseline (positive = smaller);
* `counter`, `units`: which counter (fvcore, thop, ptflops) and what the numbers count;
* `fvcore_skipped`: the single line saying what the counter did not count (fvcore: operators;
  thop: module types).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.presets import Preset, get_preset
from nhlcli.profiling.compose import ModelProfile, compose_profile
from nhlcli.profiling.counters import COUNTER_NOTES, DEFAULT_COUNTER, check_counter

BASELINE_ARCH = "resnet50"  # the default comparison row of the ResNet50-trunk presets
BASELINES = ("resnet18", "resnet50", "resnet152", "resnet200", "convnextv2-tiny")

UNITS = {
    "params": "trainable parameters (BN weight and bias included, running statistics excluded)",
    "macs": COUNTER_NOTES["fvcore"],
}

#: which counter the papers used where (printed with the report and in docs/profiling.md)
PAPER_COUNTERS = (
    "the paper's Table 2 and paper 003's Table 1 count with thop; Table 4 counts every parameter "
    "(fvcore and ptflops parameters)"
)


def units(counter: str) -> dict[str, str]:
    """What the report's numbers count, for one counter."""
    params = UNITS["params"]
    if counter == "thop":
        params = "parameters of the module types thop knows (see macs)"
    return {"params": params, "macs": COUNTER_NOTES[counter], "papers": PAPER_COUNTERS}


def baseline_for(preset: Preset, baseline: str | None) -> str:
    """The comparison row: `baseline`, or the preset family's default (NhlError if unknown)."""
    name = baseline or preset.baseline
    if name not in BASELINES:
        raise NhlError(f"unknown baseline '{name}' (choose from {', '.join(BASELINES)})")
    return name


def tree_nodes_per_level(preset: Preset, tree: Tree) -> list[int]:
    """Node counts per level the preset builds for this tree (checks the tree's depth)."""
    if preset.head == "shared":
        return [1] * len(preset.levels)
    n = preset.num_levels
    tree.require_levels(n, hint=f" by {preset.name} (build the tree with --levels {n})")
    return [len(tree.level(i)) for i in range(1, n + 1)]


def reduction_pct(value: float, reference: float) -> float:
    """How much smaller `value` is than `reference`, in % (negative when it is larger)."""
    return 100.0 * (1.0 - value / reference)


def _row(role: str, label: str, prof: ModelProfile) -> dict[str, Any]:
    return {"role": role, "model": label, **prof.to_dict()}


def profile_report(
    preset: Preset | str,
    tree: Tree,
    subset_class_ids: Sequence[str] | None = None,
    img_size: int = 224,
    counter: str = DEFAULT_COUNTER,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Parameters and GMACs of the baseline (k classes), the full model and the cutout.

    The cutout is the sub-tree of the subset's classes and their ancestors (`tree.subtree`); its
    node counts per level come from that sub-tree. Nothing is allocated beyond one block of each
    shape. `counter`: fvcore, thop or ptflops; `baseline`: the comparison row (default: the
    preset family's, `Preset.baseline`).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_counter(counter)
    base_arch = baseline_for(p, baseline)
    k = tree.num_classes
    full = compose_profile(p, tree_nodes_per_level(p, tree), k, img_size, counter)
    base = compose_profile(base_arch, [], k, img_size, counter)
    rows = [
        _row("baseline", f"{base_arch} ({k} classes)", base),
        _row("full", f"{p.name} ({k} classes)", full),
    ]
    cut_tree: Tree | None = None
    if subset_class_ids is not None:
        cut_tree = tree.subtree(subset_class_ids, order="given")
        m = cut_tree.num_classes
        cut = compose_profile(p, tree_nodes_per_level(p, cut_tree), m, img_size, counter)
        rows.append(_row("cutout", f"{p.name} cutout ({m} classes)", cut))
    for r in rows:
        r["reduction_vs_full_pct"] = {
            "params": reduction_pct(r["params"], full.params),
            "macs": reduction_pct(r["macs"], full.macs),
        }
        r["reduction_vs_baseline_pct"] = {
            "params": reduction_pct(r["params"], base.params),
            "macs": reduction_pct(r["macs"], base.macs),
        }
    return {
        "arch": p.name,
        "description": p.description,
        "extrapolated": p.extrapolated,
        "img_size": img_size,
        "classes": k,
        "cutout_classes": None if cut_tree is None else cut_tree.class_ids,
        "baseline": base_arch,
        "counter": counter,
        "units": units(counter),
        "models": rows,
        # the full model's operators fvcore skipped (the other rows skip the same kinds)
        "fvcore_skipped": full.skipped.line(),
        "fvcore_skipped_ops": full.skipped.to_dict(),
    }


def attach_latency(report: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
    """Put latencies measured by `latency.measure_report_latency` into the report's rows."""
    per_role = latency["ms"]
    for r in report["models"]:
        r["latency_ms"] = per_role.get(r["role"])
    report["latency"] = {k: v for k, v in latency.items() if k != "ms"}
    return report


def row(report: dict[str, Any], role: str) -> dict[str, Any]:
    for r in report["models"]:
        if r["role"] == role:
            return r
    raise NhlError(f"the report has no '{role}' row")
