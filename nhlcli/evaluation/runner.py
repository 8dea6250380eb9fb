"""`nhl eval`: a checkpoint or expert on an image folder: `evaluate` and its report.

The report has top-1, top-5, per-class accuracy and, for every tree level, the accuracy of the
predicted class's ancestor and the share of errors that stay inside the true ancestor
(`nhlcli/hierarchy_metrics.py`). With a subset (`classes`, or an expert's own classes)
all of it is computed over the subset. Given a `project`, the report, confusion.csv and
confusion.png are written to `project/NAME` (`nhlcli/evaluation/outputs.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nhlcli.checkpoint_dirs import resolve_checkpoint
from nhlcli.data.dataset import ImageFileDataset
from nhlcli.data.folders import index_image_folder, split_dir
from nhlcli.data.loader import ShardSampler, balanced_subset, default_workers, make_loader
from nhlcli.errors import NhlError
from nhlcli.evaluation.confusion import confusion_matrix
from nhlcli.evaluation.hierarchical_distance import (
    AHD_KS,
    crm_rank,
    hierarchical_metrics,
    lca_distances,
)
from nhlcli.evaluation.inference import TOP_K, run_inference
from nhlcli.evaluation.metrics import per_class_accuracy, top1, topk_accuracy
from nhlcli.hierarchy.tree import Tree
from nhlcli.hierarchy_metrics import ancestors_by_level, level_metrics
from nhlcli.model.attention import (
    apply_attend,
    attention_level,
    check_scale,
    inert_attention_warning,
)
from nhlcli.model.config import check_img_size
from nhlcli.model.network import HierNet
from nhlcli.selection import Selection, select_classes

ORACLE_NOTE = (
    "oracle top-down attention (paper Sec. 4.4): each image's OWN class path is amplified, chosen "
    "by its true label; this measures what a correct external cue could give, it is not an "
    "unguided accuracy"
)


def parse_sweep(text: str) -> list[float]:
    """'1.0:2.0:0.1' -> [1.0, 1.1, ..., 2.0] (inclusive, 6 digits); NhlError if malformed."""
    parts = text.split(":")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise NhlError(
            f"--attend-sweep '{text}' is not START:STOP:STEP (e.g. 1.0:2.0:0.1)"
        ) from None
    if step <= 0 or stop < start or start <= 0:
        raise NhlError(f"--attend-sweep '{text}': need 0 < START <= STOP and STEP > 0")
    n = round((stop - start) / step)
    if n > 1000:
        raise NhlError(f"--attend-sweep '{text}' has more than 1000 scales")
    return [round(start + i * step, 6) for i in range(n + 1)]


def oracle_scales(oracle: float | None, sweep: str | None) -> list[float] | None:
    """The scales of `--attend-oracle S` or `--attend-sweep START:STOP:STEP` (one or neither)."""
    if oracle is not None and sweep is not None:
        raise NhlError("give --attend-oracle or --attend-sweep, not both")
    if oracle is not None:
        return [check_scale("--attend-oracle", oracle)]
    return parse_sweep(sweep) if sweep is not None else None


AMP_MODES = ("auto", "bf16", "fp16", "none")
DECODES = ("argmax", "crm", "both")  # both: argmax is the report's prediction, crm beside it


@dataclass
class EvalReport:
    checkpoint: str
    arch: str
    data: str
    images: int
    subset: bool  # evaluated on a subset of the model's classes (softmax restricted, eq. 3)
    top1: float | None
    per_class: list[dict[str, Any]]
    model_classes: int
    attention: dict[str, float] | None = None
    attention_level: int | None = None
    oracle: list[dict[str, float]] | None = None  # [{"scale": s, "top1": a}]
    oracle_note: str | None = None
    skipped: list[str] = field(default_factory=list)
    ignored_folders: list[str] = field(default_factory=list)  # --allow-extra: not the model's
    top5: float | None = None  # None when there are at most TOP_K evaluated classes
    levels: list[dict[str, Any]] = field(default_factory=list)  # LevelAccuracy.to_dict() rows
    output_dir: str | None = None  # where report.json and the confusion files were written
    decode: str = "argmax"  # how the prediction is chosen: argmax or crm (`DECODES`)
    hierarchical: dict[str, Any] | None = None  # HierarchicalMetrics.to_dict() of the prediction
    decodings: list[dict[str, Any]] | None = None  # --decode both: argmax and crm side by side
    metric_tree: str | None = None  # the tree the hierarchical metrics use, when not the model's
    confusion: Any = field(default=None, repr=False)  # (k, k) counts over the evaluated classes
    warnings: list[str] = field(default_factory=list)  # e.g. attention that changed nothing

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "arch": self.arch,
            "data": self.data,
            "images": self.images,
            "model_classes": self.model_classes,
            "evaluated_classes": len(self.per_class),
            "subset": self.subset,
            "top1": self.top1,
            "top5": self.top5,
            "levels": self.levels,
            "decode": self.decode,
            "hierarchical": self.hierarchical,
            "decodings": self.decodings,
            "metric_tree": self.metric_tree,
            "per_class": self.per_class,
            "attention": self.attention,
            "attention_level": self.attention_level,
            "oracle": self.oracle,
            "oracle_note": self.oracle_note,
            "skipped_images": len(self.skipped),
            "skipped_files": self.skipped[:20],
            "ignored_folders": self.ignored_folders,
            "output_dir": self.output_dir,
            "warnings": self.warnings,
        }


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    classes: Selection | None = None,
    attend: str | None = None,
    oracle_scales: Sequence[float] | None = None,
    attend_level: int | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    img_size: int | None = None,
    allow_extra: bool = False,
    amp: str = "auto",
    precision: str | None = None,
    max_batches: int | None = None,
    model: HierNet | None = None,
    project: str | Path | None = None,
    name: str = "exp",
    exist_ok: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    decode: str = "argmax",
    metric_tree: Tree | str | Path | None = None,
) -> EvalReport:
    """Top-1, top-5, per-level and per-class accuracy of a model directory (or a loaded `model`).

    With `project`, also writes `project/NAME` (numbered unless `exist_ok`): report.json,
    confusion.csv and confusion.png; `report.output_dir` says where. `decode="crm"` picks each
    image's class by conditional risk minimisation instead of the arg-max ("both": arg-max, with
    CRM reported beside it); `metric_tree` measures the per-level and hierarchical metrics (and
    the CRM cost) under another tree over the same classes: the network is unchanged.
    """
    from nhlcli.checkpoint import load_model
    from nhlcli.devices import resolve_device

    if amp not in AMP_MODES:
        raise NhlError(f"--amp '{amp}' is not one of {', '.join(AMP_MODES)}")
    if decode not in DECODES:
        raise NhlError(f"--decode '{decode}' is not one of {', '.join(DECODES)}")
    dev = resolve_device(device)
    if precision is not None:  # --precision fp32 | bf16 (nhlcli.precision); it replaces --amp
        from nhlcli.precision import check_precision

        check_precision(precision, dev)
        amp = "bf16" if precision == "bf16" else "none"
    ckpt = resolve_checkpoint(checkpoint) if model is None else Path(str(checkpoint))
    net = load_model(ckpt) if model is None else model
    net = net.to(dev)
    if attend is not None and oracle_scales:
        raise NhlError("--attend and --attend-oracle/--attend-sweep exclude each other")
    tree = net.tree
    if oracle_scales:
        attention_level(net, attend_level)
    else:
        apply_attend(net, attend, attend_level, level_also_with="--attend-oracle or --attend-sweep")

    eval_ids = select_classes(tree, classes) if classes else tree.class_ids
    yardstick = tree if metric_tree is None else _metric_tree(metric_tree, eval_ids)
    subset = classes is not None
    folder = index_image_folder(
        split_dir(data, "val", classes_option="--classes"),
        tree,
        allow_extra=allow_extra,
        required=eval_ids,
        classes_option="--classes",
    )
    idx = [tree.class_index(c) for c in eval_ids]
    folder = folder.restricted(idx)
    size = check_img_size(img_size if img_size is not None else net.img_size, "--img-size")
    samples = list(folder.samples)
    if max_batches:  # a fixed, class-balanced subset (not the first classes of a sorted folder)
        keep = balanced_subset([y for _, y in samples], max_batches * batch_size, seed=0)
        samples = [samples[i] for i in keep]
    dataset = ImageFileDataset(samples, size, "eval")
    n_workers = workers if workers is not None else default_workers()
    loader = make_loader(
        dataset, batch_size, ShardSampler(len(dataset)), n_workers, pin_memory=dev.type == "cuda"
    )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if amp == "auto":
        dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    n_batches = len(loader) if not max_batches else min(len(loader), max_batches)
    if on_start is not None:
        on_start(min(len(dataset), n_batches * batch_size))
    scales = None
    if oracle_scales:  # the unamplified model (scale 1.0) is always measured as the reference
        scales = list(dict.fromkeys([1.0, *oracle_scales]))

    def limited():
        for i, b in enumerate(loader):
            if i >= n_batches:
                return
            yield b

    result = run_inference(
        net,
        limited(),
        dev,
        subset=idx if subset else None,
        oracle_scales=scales,
        oracle_level=attend_level,
        autocast_dtype=dtype,
        on_batch=on_batch,
        model_name=str(checkpoint),
    )
    if result.labels.numel() == 0:  # nothing measured: no report, nothing written
        example = f", e.g. {result.skipped[0]}" if result.skipped else ""
        raise NhlError(
            f"no readable image in {folder.root}: all {len(result.skipped)} evaluated file(s) "
            f"could not be decoded{example}"
        )
    names = [tree.node(c).name for c in eval_ids]
    main_key = next(iter(result.preds)) if not oracle_scales else None
    report = EvalReport(
        checkpoint=str(ckpt),
        arch=net.preset.name,
        data=str(folder.root),
        images=int(result.labels.numel()),
        subset=subset,
        top1=None,
        per_class=[],
        model_classes=net.num_classes,
        attention=dict(net.attention) if net.attention_level is not None else None,
        attention_level=net.attention_level,
        skipped=result.skipped,
        ignored_folders=list(folder.ignored_folders),
    )
    if result.attention_effect is not None:  # --attend, or a sweep, that changed nothing: why
        swept = (attend_level or len(net.levels)) if oracle_scales else None
        warning = inert_attention_warning(net, result.attention_effect, level=swept)
        report.warnings += [warning] if warning else []
    key: float | None = main_key
    if oracle_scales:
        report.oracle = [
            {"scale": s, "top1": top1(result.preds[s], result.labels)} for s in oracle_scales
        ]
        report.attention_level = attend_level if attend_level is not None else len(net.levels)
        report.oracle_note = ORACLE_NOTE
        key = 1.0  # top-1 and the per-class table are those of the unamplified model
    preds = result.preds[key]
    position = torch.full((net.num_classes,), -1, dtype=torch.long)  # model index -> eval index
    position[idx] = torch.arange(len(idx))
    y = position[result.labels]
    assert result.probs is not None
    dist = lca_distances(yardstick, eval_ids)
    wide = min(max(AHD_KS), len(idx))
    rankings = {"argmax": result.probs.topk(wide, dim=1).indices}
    if decode != "argmax":
        rankings["crm"] = crm_rank(result.probs, dist, wide)
    model_index = torch.tensor(idx, dtype=torch.long)
    ranked = result.ranked[key] if result.ranked is not None else None
    if decode == "crm":
        preds = model_index[rankings["crm"][:, 0]]
        ranked = model_index[rankings["crm"][:, :TOP_K]]
    report.decode = "crm" if decode == "crm" else "argmax"
    measured = {
        name: hierarchical_metrics(r, y, yardstick, eval_ids).to_dict()
        for name, r in rankings.items()
    }
    report.hierarchical = measured[report.decode]
    if decode == "both":
        report.decodings = [
            {"decode": name, "top1": top1(r[:, 0], y), **measured[name]}
            for name, r in rankings.items()
        ]
    if metric_tree is not None:
        report.metric_tree = str(metric_tree if not isinstance(metric_tree, Tree) else "<tree>")
    report.top1 = top1(preds, result.labels)
    report.per_class = [
        c.to_dict() for c in per_class_accuracy(preds, result.labels, idx, eval_ids, names)
    ]
    assert ranked is not None
    # top-5 of 5 classes or fewer is always 100 %: meaningless, so None (shown as –)
    report.top5 = topk_accuracy(ranked, result.labels) if len(idx) > TOP_K else None
    p = position[preds]
    report.confusion = confusion_matrix(p, y, len(idx))
    anc = ancestors_by_level(yardstick, eval_ids)
    report.levels = [r.to_dict() for r in level_metrics(p, y, anc)]
    if project is not None:
        from nhlcli.evaluation.outputs import write_eval_dir

        out = write_eval_dir(
            project, name, report.to_dict(), tree, report.confusion, eval_ids, exist_ok
        )
        report.output_dir = str(out)
    return report


def _metric_tree(spec: Tree | str | Path, class_ids: Sequence[str]) -> Tree:
    """The tree of `--tree` (a file or shipped name), which must hold every evaluated class."""
    from nhlcli.hierarchy.shipped_trees import resolve_tree

    other = resolve_tree(spec)
    missing = [c for c in class_ids if not other.is_class(c)]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        what = "the tree" if isinstance(spec, Tree) else f"--tree {spec}"
        raise NhlError(f"{what}: {len(missing)} evaluated class(es) are not in it: {shown}")
    return other
