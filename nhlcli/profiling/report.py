"""The profile report: a baseline, the full model and its cutout, side by side.

`profile_report` returns a `Profile` (`to_dict()` is what `--json` prints):

* `models`: three rows (`baseline` = the preset's baseline: `--baseline`, else `Preset.baseline`,
  else its trunk kind's (`BlockKind.baseline`: resnet50, convnextv2-tiny), with the full model's k
  classes, `full`, `cutout` when a class subset is given), each with params,
  MACs, GMACs, its per-part breakdown, and its reductions in % against the full model and against
  the baseline (positive = smaller);
* `counter`, `units`: which counter (`counters.COUNTERS`) and what the numbers count;
* `fvcore_skipped`: the single line saying what the counter did not count (fvcore: operators;
  thop: module types).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.config import nodes_per_level
from nhlcli.model.kinds import get_kind
from nhlcli.model.presets import Preset, baseline_names, get_preset
from nhlcli.profiling.compose import ModelProfile, PartProfile, compose_profile
from nhlcli.profiling.counters import DEFAULT_COUNTER, check_counter, get_counter
from nhlcli.profiling.fvcore_count import SkippedOps

#: which counter the papers used where (in the report and in docs/profiling.md)
PAPER_COUNTERS = (
    "the main paper's Table 2 and the workshop paper's Table 1 count with thop; the main paper's "
    "Table 4 counts every parameter (fvcore and ptflops parameters)"
)


def units(counter: str) -> dict[str, str]:
    """What the report's numbers count, for one counter (its row of the counter table)."""
    spec = get_counter(counter)
    return {"params": spec.params, "macs": spec.macs, "papers": PAPER_COUNTERS}


def baseline_for(preset: Preset, baseline: str | None) -> str:
    """The comparison row: `baseline`, else the preset's, else its trunk kind's default (NhlError
    if it is not a baseline preset, `presets.baseline_names`)."""
    name = baseline or preset.baseline or get_kind(preset.trunk.kind).baseline
    known = baseline_names()
    match = next((k for k in known if k.lower() == name.lower()), None)  # any case, as presets
    if match is None:
        raise NhlError(f"unknown baseline '{name}' (choose from {', '.join(known)})")
    return match


def row_label(name: str, classes: int) -> str:
    """The one name of a profile row, in its tables, its warnings and `--json` (`model`):
    ``n3hl, k=1,000``, ``resnet50, k=1,000``, ``cutout, k=5``."""
    return f"{name}, k={classes:,}"


def reduction_pct(value: float, reference: float) -> float:
    """How much smaller `value` is than `reference`, in % (negative when it is larger)."""
    return 100.0 * (1.0 - value / reference)


@dataclass
class ProfileRow:
    """One model of a profile: its role (baseline, full, cutout), counts and per-part breakdown."""

    role: str
    model: str
    counts: ModelProfile
    reduction_vs_full_pct: dict[str, float] = field(default_factory=dict)
    reduction_vs_baseline_pct: dict[str, float] = field(default_factory=dict)
    latency_ms: float | None = None  # median ms per batch (measured)
    latency_stats: dict[str, float] | None = None  # min / median / max / spread
    gmacs_per_s: float | None = None  # the MAC rate at the timed batch
    efficiency: float | None = None  # gmacs_per_s / the baseline's

    @property
    def params(self) -> int:
        return self.counts.params

    @property
    def macs(self) -> int:
        return self.counts.macs

    @property
    def gmacs(self) -> float:
        return self.counts.gmacs

    @property
    def parts(self) -> tuple[PartProfile, ...]:
        return self.counts.parts

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "model": self.model, **self.counts.to_dict()}
        d["reduction_vs_full_pct"] = self.reduction_vs_full_pct
        d["reduction_vs_baseline_pct"] = self.reduction_vs_baseline_pct
        return d


@dataclass
class Profile:
    """What `nhlcli.profile` returns: the baseline, full-model and cutout rows side by side."""

    arch: str
    description: str
    extrapolated: bool
    img_size: int
    classes: int
    cutout_classes: list[str] | None
    baseline: str
    rows: list[ProfileRow]
    skipped_ops: SkippedOps
    latency: dict[str, Any] | None = None
    counter: str = DEFAULT_COUNTER

    def row(self, role: str) -> ProfileRow:
        """The row of one role: "baseline", "full" or "cutout"."""
        for r in self.rows:
            if r.role == role:
                return r
        raise NhlError(f"the profile has no '{role}' row")

    @property
    def fvcore_skipped(self) -> str:
        """The one line saying what the counter did not count (empty when nothing)."""
        return self.skipped_ops.line()

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `nhl profile --json`."""
        rows = [r.to_dict() for r in self.rows]
        if self.latency is not None:
            for d, r in zip(rows, self.rows, strict=True):
                d["latency_ms"] = r.latency_ms
                d["latency_stats"] = r.latency_stats
                d["gmacs_per_s"] = r.gmacs_per_s
                d["efficiency"] = r.efficiency
        out: dict[str, Any] = {
            "arch": self.arch,
            "description": self.description,
            "extrapolated": self.extrapolated,
            "img_size": self.img_size,
            "classes": self.classes,
            "cutout_classes": self.cutout_classes,
            "baseline": self.baseline,
            "counter": self.counter,
            "units": units(self.counter),
            "models": rows,
            # the full model's operators fvcore skipped (the other rows skip the same kinds)
            "fvcore_skipped": self.fvcore_skipped,
            "fvcore_skipped_ops": self.skipped_ops.to_dict(),
        }
        if self.latency is not None:
            out["latency"] = self.latency
        return out


def profile_report(
    preset: Preset | str,
    tree: Tree,
    subset_class_ids: Sequence[str] | None = None,
    img_size: int = 224,
    counter: str = DEFAULT_COUNTER,
    baseline: str | None = None,
) -> Profile:
    """Parameters and GMACs of the baseline (k classes), the full model and the cutout.

    The cutout is the sub-tree of the subset's classes and their ancestors (`tree.subtree`); its
    node counts per level come from that sub-tree. Nothing is allocated beyond one block of each
    shape. `counter`: a name of `counters.COUNTERS`; `baseline`: the comparison row (default: the
    preset's, `baseline_for`).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_counter(counter)
    base_arch = baseline_for(p, baseline)
    k = tree.num_classes
    full = compose_profile(p, nodes_per_level(p, tree), k, img_size, counter)
    base = compose_profile(base_arch, [], k, img_size, counter)
    rows = [
        ProfileRow("baseline", row_label(base_arch, k), base),
        ProfileRow("full", row_label(p.name, k), full),
    ]
    cut_tree: Tree | None = None
    if subset_class_ids is not None:
        cut_tree = tree.subtree(subset_class_ids, order="given")
        m = cut_tree.num_classes
        cut = compose_profile(p, nodes_per_level(p, cut_tree), m, img_size, counter)
        rows.append(ProfileRow("cutout", row_label("cutout", m), cut))
    for r in rows:
        r.reduction_vs_full_pct = {
            "params": reduction_pct(r.params, full.params),
            "macs": reduction_pct(r.macs, full.macs),
        }
        r.reduction_vs_baseline_pct = {
            "params": reduction_pct(r.params, base.params),
            "macs": reduction_pct(r.macs, base.macs),
        }
    return Profile(
        arch=p.name,
        description=p.description,
        extrapolated=p.extrapolated,
        img_size=img_size,
        classes=k,
        cutout_classes=None if cut_tree is None else cut_tree.class_ids,
        baseline=base_arch,
        rows=rows,
        skipped_ops=full.skipped,
        counter=counter,
    )


def attach_latency(report: Profile, latency: dict[str, Any]) -> Profile:
    """Put latencies measured by `profile.measure_report_latency` into the report's rows, with
    each row's MAC rate (GMACs/s at the timed batch) and efficiency (rate / the baseline's)."""
    per_role = latency["ms"]
    stats = latency.get("stats", {})
    batch = latency["batch_size"]
    for r in report.rows:
        r.latency_ms = per_role.get(r.role)
        r.latency_stats = stats.get(r.role)
        r.gmacs_per_s = batch * r.gmacs / (r.latency_ms / 1e3) if r.latency_ms else None
    base = report.row("baseline").gmacs_per_s
    for r in report.rows:
        r.efficiency = r.gmacs_per_s / base if r.gmacs_per_s and base else None
    report.latency = {k: v for k, v in latency.items() if k not in ("ms", "stats")}
    return report
