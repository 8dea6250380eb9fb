"""Does `nhl tree compare` pick the tree a nested network learns better with? (not run in CI)

On a sample of the Imagenette images (../shared/data/imagenette; there are no Imagewoof images
here, so only the ten Imagenette classes are used):

1. train a resnet50 briefly at low resolution;
2. induce trees from it (`--source induced`, features and confusion embeddings) from TRAINING
   images, so that the comparison on the validation images is not scored on the data the tree was
   made from;
3. compare them (`nhl.compare_trees`, with the resnet50 and the validation images) with the shipped
   WordNet tree, the superclass-table tree and a random control tree (the induced tree's group sizes
   with the classes shuffled, seed 0). The hybrid tree needs a chat model, which this machine cannot
   reach: it is left out;
4. train n3hl on the best and on the worst 3-level tree by fit (mean confusion gain), with the same
   budget and seed, and report the top-1 of each.

Run it under the shared benchmark lock (2 shared CPU cores, ~20-30 minutes with the defaults):

    flock /tmp/nhl-bench.lock python benchmarks/bench_tree_compare.py --out /tmp/bench-tc
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_imagenette import sample_dir  # noqa: E402

import nhlcli as nhl  # noqa: E402
from nhlcli.hierarchy.tree import Tree, TreeNode  # noqa: E402
from nhlcli.training.config import build_config  # noqa: E402
from nhlcli.training.engine import train  # noqa: E402

WORDNET = "imagenette-wordnet-L3"


def settings(arch: str, tree: str | None, data: Path, runs: Path, name: str, args: Any) -> dict:
    return {
        "arch": arch,
        "tree": tree,
        "data": str(data),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "img_size": args.img_size,
        "workers": args.workers,
        "project": str(runs),
        "name": name,
        "min_crop_scale": 0.35,
        "seed": 0,
    }


def run_training(cfg: dict, console: Console) -> dict[str, Any]:
    console.rule(f"training {cfg['arch']} ({cfg['name']})")
    t0 = time.perf_counter()
    result = train(build_config(cfg))
    assert result.run_dir is not None
    last = result.history[-1]["val_top1"] if result.history else None
    return {
        "run": str(result.run_dir),
        "best_top1": result.best_top1,
        "best_epoch": result.best_epoch,
        "last_top1": last,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def shuffled(tree: Tree, seed: int) -> Tree:
    """The same nodes, each class moved to the place of another (a random grouping of equal
    sizes)."""
    order = list(range(tree.num_classes))
    random.Random(seed).shuffle(order)
    parents = [tree.classes[j].parent for j in order]
    classes = [TreeNode(c.id, c.name, p) for c, p in zip(tree.classes, parents, strict=True)]
    nodes = [TreeNode(n.id, f"random {n.id}", n.parent) for n in tree.nodes]
    return Tree(classes, nodes, {"source": "random", "seed": seed})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "imagenette"))
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--induce-per-class", type=int, default=50, help="training images to induce")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="where runs, trees and results go")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=140)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nhl-bench-tc-") as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = sample_dir(Path(args.data), work / "data", args.train_per_class, args.val_per_class)
        induce = sample_dir(Path(args.data), work / "induce", args.induce_per_class, 1) / "train"
        runs = work / "runs"
        console.print(
            f"Imagenette sample: {args.train_per_class} train / {args.val_per_class} val images "
            f"per class, {args.img_size} px, {args.epochs} epochs, batch {args.batch_size}, "
            f"{torch.get_num_threads()} torch threads"
        )
        r50 = run_training(settings("resnet50", None, data, runs, "resnet50", args), console)
        model = Path(r50["run"]) / "best"

        console.rule("trees")
        train_ev = nhl.collect_evidence(model, induce, batch_size=64)
        trees: dict[str, Tree] = {}
        for kind in ("features", "confusion"):
            trees[f"induced-{kind}"] = nhl.build_tree(
                "induced", "imagenette", 3, evidence=train_ev, embedding=kind
            )
        trees["wordnet"] = nhl.load_tree(WORDNET)
        trees["superclass"] = nhl.build_tree("superclass", "imagenette")
        trees["random"] = shuffled(trees["induced-features"], seed=0)
        for name, tree in trees.items():
            tree.save(work / f"tree-{name}.json")

        val_ev = nhl.collect_evidence(model, data, batch_size=64)
        cmp = nhl.compare_trees(trees, evidence=val_ev)
        table = Table(
            "tree", "level", "nodes", "single", "balance", "wordnet", "inside", "chance", "gain",
            "silhouette", "group top-1 (sum)", "fit", title="tree compare (resnet50, val images)",
        )  # fmt: skip

        def f(v: float | None, pct: bool = False) -> str:
            return "-" if v is None else (f"{v:.1f}%" if pct else f"{v:.3f}")

        for t in cmp.trees:
            for r in t.rows:
                table.add_row(
                    t.name, str(r.level), str(r.nodes), str(r.singletons), f(r.balance),
                    f(r.wordnet), f(r.confusion_share), f(r.confusion_chance),
                    f(r.confusion_gain), f(r.silhouette), f(r.group_top1, True), f(t.fit),
                )  # fmt: skip
        console.print(table)
        three = [n for n in cmp.ranking if trees[n].levels == 3]
        best, worst = three[0], three[-1]
        console.print(f"ranking (3-level trees): {' > '.join(three)}; best {best}, worst {worst}")

        n3hl = {}
        for name in (best, worst):
            tree_file = str(work / f"tree-{name}.json")
            cfg = settings("n3hl", tree_file, data, runs, f"n3hl-{name}", args)
            n3hl[name] = run_training(cfg, console)
        out = Table("tree", "fit", "n3hl best top-1", "best epoch", "last top-1", "wall s")
        fits = {t.name: t.fit for t in cmp.trees}
        for name, res in n3hl.items():
            out.add_row(
                name, f(fits[name]), f(res["best_top1"], True), str(res["best_epoch"]),
                f(res["last_top1"], True), str(res["wall_s"]),
            )  # fmt: skip
        console.print(out)
        predicted = n3hl[best]["best_top1"] > n3hl[worst]["best_top1"]
        console.print(
            f"resnet50 top-1 {r50['best_top1']:.1f}%. The comparison "
            f"{'predicted' if predicted else 'did NOT predict'} the better tree "
            f"({best} {n3hl[best]['best_top1']:.1f}% vs {worst} {n3hl[worst]['best_top1']:.1f}%)."
        )
        summary = {
            "settings": vars(args),
            "resnet50": r50,
            "comparison": cmp.to_dict(),
            "best": best,
            "worst": worst,
            "n3hl": n3hl,
            "predicted_better": predicted,
            "wall_s": round(time.perf_counter() - start, 1),
        }
        (work / "results.json").write_text(json.dumps(summary, indent=1, default=str))
        console.print(f"results: {work / 'results.json'} ({summary['wall_s']} s)")


if __name__ == "__main__":
    main()
