"""Which experts are worth cutting? The expert frontier, argmax vs CRM decoding, and tree compare
with a random control, on the shared Imagenette (not run in CI).

1. train n3hl and resnet50 with `--recipe fast` on a sample (or `--reuse RUNS`: the finished runs
   RUNS/n3hl and RUNS/resnet50, e.g. those of bench_train_imagenette.py);
2. `nhl.experts` of n3hl over tree levels 1 and 2 plus the two five-class sets (the lower
   and the upper five Imagenette classes): closed-set top-1, FPR@95%TPR, AUROC, GMACs Δ %;
3. argmax vs CRM decoding (`nhl.evaluate(decode="both")`) of n3hl and resnet50 under the WordNet
   tree: top-1, mistake severity, AHD@1 and AHD@5;
4. `nhl.compare_trees` of the WordNet tree with the random control of the same shape, on n3hl.

Run it under the shared benchmark lock, e.g. a reduced scale:

    flock /tmp/nhl-bench.lock python benchmarks/bench_experts.py --img-size 64 --epochs 3 \
        --train-per-class 100 --val-per-class 50 --out /tmp/bench-experts
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from bench_train_imagenette import finished_run, sample_dir
from rich.console import Console
from rich.table import Table

import nhlcli as nhl

TREE = "imagenette-wordnet-L3"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette"


def trained(arch: str, data: Path, runs: Path, args: argparse.Namespace, console: Console) -> Path:
    """The best checkpoint of RUNS/ARCH: reused when finished (--reuse), else trained now."""
    if args.reuse is not None:
        done = finished_run(Path(args.reuse) / arch, args.epochs)
        if done is not None:
            console.print(f"reusing {done.run_dir}")
            return Path(done.run_dir) / "best"
    console.rule(f"training {arch}")
    result = nhl.train(
        {"arch": arch, "tree": TREE, "data": str(data), "epochs": args.epochs,
         "img_size": args.img_size, "recipe": args.recipe, "workers": args.workers,
         "project": str(runs), "name": arch, "seed": 0, "batch_size": args.batch_size},
    )  # fmt: skip
    assert result is not None
    return Path(result.run_dir) / "best"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here")
    ap.add_argument("--reuse", default=None, help="folder with finished runs n3hl/ and resnet50/")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-experts-"))
    data = out / "data"
    if not data.exists():
        sample_dir(args.data, data, args.train_per_class or None, args.val_per_class or None)
    runs = out / "runs"
    models = {a: trained(a, data, runs, args, console) for a in ("n3hl", "resnet50")}
    tree = nhl.load_tree(TREE)
    sets = [",".join(tree.class_ids[:5]), ",".join(tree.class_ids[5:])]
    common: dict[str, Any] = {"workers": args.workers, "batch_size": 64}

    for level in (1, 2):
        front = nhl.experts(
            models["n3hl"], data, level=level, sets=sets if level == 1 else (),
            project=out / "experts", name=f"level{level}", **common,
        )  # fmt: skip
        t = Table("expert", "classes", "top-1 %", "FPR@95%TPR %", "AUROC", "GMACs Δ %",
                  "params Δ %", title=f"n3hl expert frontier, level {level}")  # fmt: skip
        for r in front.rows:
            name = r.name if r.kind != "set" else ("lower five" if r.classes == sets[0].split(",")
                                                   else "upper five")  # fmt: skip
            t.add_row(name, str(len(r.classes)), pct(r.top1), pct(r.fpr_at_95tpr),
                      "-" if r.auroc is None else f"{r.auroc:.3f}", f"{r.gmacs_delta_pct:+.1f}",
                      f"{r.params_delta_pct:+.1f}")  # fmt: skip
        console.print(t)
        console.print(f"frontier.png: {front.output_dir}", markup=False)

    t = Table("model", "decoding", "top-1 %", "mistake severity", "AHD@1", "AHD@5",
              title=f"argmax vs CRM under {TREE}")  # fmt: skip
    for arch, ckpt in models.items():
        report = nhl.evaluate(ckpt, data, decode="both", metric_tree=TREE, project=None, **common)
        for row in report.decodings or []:
            t.add_row(arch, row["decode"], f"{row['top1']:.2f}", f"{row['mistake_severity']:.3f}",
                      f"{row['ahd']['@1']:.3f}", f"{row['ahd']['@5']:.3f}")  # fmt: skip
    console.print(t)

    cmp = nhl.compare_trees([TREE], models["n3hl"], data, random_control=True, seed=0, **common)
    t = Table("tree", "level", "nodes", "inside %", "chance %", "gain", "group top-1 %",
              title="tree compare on n3hl, with the random control")  # fmt: skip
    for ts in cmp.trees:
        for r in ts.rows:
            share, chance = r.confusion_share, r.confusion_chance
            t.add_row(
                ts.name, str(r.level), str(r.nodes),
                "-" if share is None else f"{100 * share:.1f}",
                "-" if chance is None else f"{100 * chance:.1f}",
                "-" if r.confusion_gain is None else f"{r.confusion_gain:.3f}", pct(r.group_top1),
            )  # fmt: skip
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
