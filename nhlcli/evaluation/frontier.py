"""The expert frontier: for every candidate expert, what it costs, how accurate it is on its own
classes, and how safe it is when an image of another class arrives (`nhl experts`).

Candidates are the nodes of one tree level (each node's classes), class sets given by the user, and
the full model as the reference row. One pass of the full model over the images serves them all:
an expert's logits equal the full model's logits restricted to its classes (paper eq. 3;
`nhlcli.model.cutout`), so each expert's softmax is the softmax over those columns. Only measured
latency needs the cut networks. Per candidate:

* **params, GMACs** (and Δ % vs the full model): composed per block shape, nothing allocated
  (`nhlcli.profiling.compose`);
* **top-1**: closed-set accuracy on the images of its own classes;
* **FPR@95 %TPR**: the share of out-of-subset images whose max softmax reaches the threshold that
  keeps 95 % of the in-subset images, i.e. the images the expert would accept and force into one of
  its classes; **AUROC**: in-subset vs out-of-subset images, ranked by max softmax (0.5 = chance).
  Neither exists for the full model (it has no out-of-subset images).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.network import HierNet

TPR = 0.95
EXPERTS_CSV = "experts.csv"
REPORT_JSON = "report.json"
FRONTIER_PNG = "frontier.png"


@dataclass
class ExpertRow:
    name: str
    kind: str  # "full", "node" (a tree node) or "set" (a class set)
    classes: list[str]
    params: int
    gmacs: float
    params_delta_pct: float  # vs the full model (negative: smaller)
    gmacs_delta_pct: float
    images: int  # images of its own classes
    top1: float | None  # closed-set top-1 (%) on them
    fpr_at_95tpr: float | None  # % of out-of-subset images accepted
    auroc: float | None
    latency_ms: float | None = None  # median per batch, when measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Frontier:
    model: str
    arch: str
    data: str
    images: int
    level: int
    baseline: dict[str, Any]  # {"arch", "params", "gmacs"}
    rows: list[ExpertRow]
    output_dir: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "arch": self.arch,
            "data": self.data,
            "images": self.images,
            "level": self.level,
            "baseline": self.baseline,
            "experts": [r.to_dict() for r in self.rows],
            "output_dir": self.output_dir,
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------ open-set scores
def fpr_at_tpr(inside: np.ndarray, outside: np.ndarray, tpr: float = TPR) -> float | None:
    """% of `outside` scores >= the threshold that keeps `tpr` of the `inside` scores."""
    if inside.size == 0 or outside.size == 0:
        return None
    ordered = np.sort(inside)
    threshold = ordered[math.floor((1 - tpr) * inside.size + 1e-9)]
    return 100.0 * float((outside >= threshold).mean())


def auroc(inside: np.ndarray, outside: np.ndarray) -> float | None:
    """P(inside score > outside score) + ½ P(tie): the Mann-Whitney statistic."""
    if inside.size == 0 or outside.size == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([inside, outside]))
    n_in, n_out = inside.size, outside.size
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2
    return float(u / (n_in * n_out))


def expert_scores(
    logits: np.ndarray, labels: np.ndarray, members: Sequence[int]
) -> tuple[float | None, float | None, float | None, int]:
    """(top-1, FPR@95 %TPR, AUROC, own images) of the expert on `members` (model class indices),
    from the full model's logits (N, classes) restricted to the members."""
    cols = np.asarray(members)
    z = logits[:, cols].astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    top = p.max(axis=1)
    inside = np.isin(labels, cols)
    own = int(inside.sum())
    acc = None
    if own:
        acc = 100.0 * float((cols[p[inside].argmax(axis=1)] == labels[inside]).mean())
    return acc, fpr_at_tpr(top[inside], top[~inside]), auroc(top[inside], top[~inside]), own


# ---------------------------------------------------------------------------------- candidates
def level_candidates(tree: Tree, level: int) -> list[tuple[str, str, list[str]]]:
    """(name, kind, class ids) of every node at `level` (1 = top; the leaf level: one class)."""
    depth = max(tree.depth(c) for c in tree.class_ids)
    if not 1 <= level <= depth:
        raise NhlError(f"--level {level} does not exist (the tree has levels 1..{depth})")
    return [(tree.node(n).name, "node", tree.leaves_under(n)) for n in tree.level(level)]


def set_candidates(tree: Tree, sets: Sequence[str | Path]) -> list[tuple[str, str, list[str]]]:
    """(name, "set", class ids) of each `--sets` entry: a file is named by its stem, a list of
    classes by its members ("tench + 4 more"), a built-in set by its name."""
    from nhlcli.hierarchy.group_names import members_name
    from nhlcli.selection import select_classes

    out = []
    for spec in sets:
        ids = select_classes(tree, spec)
        if "," in str(spec) and not Path(str(spec)).is_file():
            name = members_name([tree.node(c).name for c in ids], range(len(ids)))
        else:
            name = Path(str(spec)).stem or str(spec)
        out.append((name, "set", ids))
    return out


# ------------------------------------------------------------------------------------ frontier
def expert_frontier(
    model: str | Path | HierNet,
    data: str | Path,
    level: int = 1,
    sets: Sequence[str | Path] = (),
    latency: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    img_size: int | None = None,
    max_batches: int | None = None,
    allow_extra: bool = False,
    latency_runs: int = 10,
    latency_batch: int = 8,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_latency: Callable[[int, int], None] | None = None,
) -> Frontier:
    """Every candidate expert's cost, closed-set top-1 and open-set safety (module docstring)."""
    from nhlcli.checkpoint import load_model
    from nhlcli.checkpoint_dirs import resolve_checkpoint
    from nhlcli.evaluation.embeddings import collect_evidence
    from nhlcli.model.config import nodes_per_level
    from nhlcli.profiling.compose import compose_profile
    from nhlcli.profiling.report import baseline_for

    if isinstance(model, HierNet):
        net, where = model, "<model>"
    else:
        ckpt = resolve_checkpoint(model)
        net, where = load_model(ckpt), str(ckpt)
    tree, preset = net.tree, net.preset
    size = img_size or net.img_size
    cands = [("full model", "full", tree.class_ids)]
    cands += level_candidates(tree, level) + set_candidates(tree, sets)
    evidence = collect_evidence(
        net, data, batch_size=batch_size, workers=workers, device=device, img_size=size,
        max_batches=max_batches, allow_extra=allow_extra, on_start=on_start, on_batch=on_batch,
    )  # fmt: skip
    assert evidence.scores is not None and evidence.labels is not None
    logits, labels = evidence.scores, evidence.labels

    def cost(ids: list[str]) -> tuple[int, float]:
        sub = tree.subtree(ids, order="tree")
        prof = compose_profile(preset, nodes_per_level(preset, sub), len(ids), size)
        return prof.params, prof.gmacs

    full_params, full_gmacs = cost(tree.class_ids)
    base_arch = baseline_for(preset, None)
    base = compose_profile(base_arch, [], tree.num_classes, size)
    rows = []
    for name, kind, ids in cands:
        params, gmacs = cost(ids)
        acc, fpr, roc, own = expert_scores(logits, labels, [tree.class_index(c) for c in ids])
        rows.append(
            ExpertRow(
                name=name, kind=kind, classes=list(ids), params=params, gmacs=gmacs,
                params_delta_pct=100.0 * (params - full_params) / full_params,
                gmacs_delta_pct=100.0 * (gmacs - full_gmacs) / full_gmacs,
                images=own, top1=acc, fpr_at_95tpr=fpr, auroc=roc,
            )
        )  # fmt: skip
    if latency:
        _measure_latency(net, rows, size, device, latency_runs, latency_batch, on_latency)
    notes = [
        "experts' scores come from the full model's logits restricted to each expert's classes "
        "(equal to the cut expert's, paper eq. 3)"
    ]
    return Frontier(
        model=where,
        arch=preset.name,
        data=str(evidence.source.get("data", data)),
        images=int(labels.size),
        level=level,
        baseline={"arch": base_arch, "params": base.params, "gmacs": base.gmacs},
        rows=rows,
        notes=notes,
    )


def _measure_latency(
    net: HierNet,
    rows: list[ExpertRow],
    size: int,
    device: str | None,
    runs: int,
    batch: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Median ms per batch of every candidate's cut network, timed interleaved."""
    import statistics

    from nhlcli.devices import resolve_device
    from nhlcli.model.cutout import cutout
    from nhlcli.profiling.latency import time_interleaved

    dev = resolve_device(device)
    models: dict[str, Any] = {
        str(i): (net if r.kind == "full" else cutout(net, r.classes)).eval()
        for i, r in enumerate(rows)
    }
    times = time_interleaved(models, batch, size, dev, runs=runs, warmup=2, progress=progress)
    for i, r in enumerate(rows):
        r.latency_ms = statistics.median(times[str(i)])


# ------------------------------------------------------------------------------------- outputs
def frontier_csv(frontier: Frontier) -> str:
    out = io.StringIO()
    cols = ["name", "kind", "classes", "params", "gmacs", "params_delta_pct", "gmacs_delta_pct",
            "images", "top1", "fpr_at_95tpr", "auroc", "latency_ms"]  # fmt: skip
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    for r in frontier.rows:
        d = r.to_dict()
        d["classes"] = " ".join(r.classes)
        w.writerow(["" if d[c] is None else d[c] for c in cols])
    return out.getvalue()


def frontier_png(frontier: Frontier) -> bytes:
    """Accuracy vs GMACs: one point per expert, open-set FPR as colour; full model and baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    experts = [r for r in frontier.rows if r.kind != "full" and r.top1 is not None]
    full = next(r for r in frontier.rows if r.kind == "full")
    if experts:
        fprs = [r.fpr_at_95tpr if r.fpr_at_95tpr is not None else float("nan") for r in experts]
        sc = ax.scatter(
            [r.gmacs for r in experts], [r.top1 or 0.0 for r in experts], c=fprs, cmap="viridis_r",
            vmin=0, vmax=100, s=70, edgecolors="black", zorder=3,
        )  # fmt: skip
        fig.colorbar(sc, ax=ax, label="open-set FPR @ 95% TPR (%): share of other images accepted")
        for r in experts:
            label = r.name if len(r.name) <= 22 else r.name[:20] + "…"  # long class lists
            ax.annotate(label, (r.gmacs, r.top1), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
    if full.top1 is not None:
        ax.scatter([full.gmacs], [full.top1], marker="*", s=260, color="crimson", zorder=4,
                   label=f"full model ({frontier.arch}, all classes)")  # fmt: skip
    ax.axvline(frontier.baseline["gmacs"], color="grey", linestyle="--",
               label=f"baseline {frontier.baseline['arch']} (GMACs)")  # fmt: skip
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("closed-set top-1 on its own classes (%)")
    ax.set_title(f"expert frontier: {frontier.arch}, level {frontier.level} and sets, "
                 f"{frontier.images} images")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(-2, 105)
    ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_frontier_dir(
    frontier: Frontier, project: str | Path, name: str, exist_ok: bool = False
) -> Path:
    """`project/NAME` (numbered): experts.csv, report.json, frontier.png, each atomically."""
    from nhlcli.fileio import write_bytes_atomic, write_text_atomic
    from nhlcli.rundirs import numbered_dir

    picture = frontier_png(frontier)
    table = frontier_csv(frontier)
    out = numbered_dir(project, name, exist_ok)
    frontier.output_dir = str(out)
    write_text_atomic(out / EXPERTS_CSV, table)
    write_text_atomic(out / REPORT_JSON, json.dumps(frontier.to_dict(), indent=1))
    write_bytes_atomic(out / FRONTIER_PNG, picture)
    return out
