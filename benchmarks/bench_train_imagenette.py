"""Train n3hl and resnet50 side by side on Imagenette and compare them (not run in CI).

Both networks go through the same loop (`nhlcli.training.engine.train`) with the same settings.
Reported:

* top-1 (best epoch) and training images/s of each; the images/s ratio n3hl / resnet50 next to the
  inverse of their GMAC ratio (fvcore MACs at the training size): the goal is
  ratio >= 0.85 x (GMAC resnet50 / GMAC n3hl);
* the 5-class expert cut out of the trained n3hl (the lower 5 Imagenette classes, as in the paper's
  Table 2) against the full n3hl restricted to the same 5 classes (softmax over them, eq. 3), and
  resnet50 restricted to them;
* top-down attention with the paper's oracle protocol (Sec. 4.4): each validation image's own class
  amplified, guided by its true label, swept over scales.

* the recipe (`--recipe`, default `fast`): every resolved setting from the runs' args.yaml, the
  curves (each run's results.png) and, with `--goal`, whether both networks reach the issue's goal
  (>= 60 % val top-1 each, n3hl within 2 points of resnet50).

The full benchmark (all 9,469 training images and 3,925 validation images, 64 px, 8 epochs:
`--train-per-class 0 --val-per-class 0 --epochs 8 --goal`) takes about 20 minutes per network on a
quiet 2-core CPU (80-95 training images/s; measured: n3hl 73.96 %, resnet50 73.50 %, see
docs/training.md); `--reuse` continues an interrupted benchmark with the runs already finished in
--out. The defaults below are a short version. Run it under the
shared lock so benchmarks do not overlap (give --out to keep the runs and their results.png):

    flock /tmp/nhl-bench.lock python benchmarks/bench_train_imagenette.py --img-size 64 --epochs 3 \
        --train-per-class 100 --val-per-class 50 --threads 2 --workers 1 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import os
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

from nhlcli.checkpoint import save_model  # noqa: E402
from nhlcli.data.folders import class_folders, scan_images  # noqa: E402
from nhlcli.evaluation.runner import evaluate  # noqa: E402
from nhlcli.hierarchy.shipped_trees import resolve_tree  # noqa: E402
from nhlcli.model.cutout import cutout  # noqa: E402
from nhlcli.model.network import build_model  # noqa: E402
from nhlcli.profiling.compose import compose_profile  # noqa: E402
from nhlcli.training.checkpointing import load_checkpoint_model  # noqa: E402
from nhlcli.training.config import build_config  # noqa: E402
from nhlcli.training.engine import TrainResult, train  # noqa: E402
from nhlcli.training.progress import RichReporter  # noqa: E402
from nhlcli.training.rundir import read_args, read_results  # noqa: E402

TREE = "imagenette-wordnet-L3"


def sample_dir(src: Path, dst: Path, train_n: int | None, val_n: int | None) -> Path:
    """dst/{train,val}/<class>/: symlinks to the first N images of each class (all when None)."""
    for split, n in (("train", train_n), ("val", val_n)):
        for cls in class_folders(src / split):
            out = dst / split / cls
            out.mkdir(parents=True, exist_ok=True)
            files = scan_images(src / split / cls)
            for f in files[:n] if n else files:
                os.symlink(f, out / Path(f).name)
    return dst


def train_one(
    arch: str, data: Path, runs: Path, args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    settings = {
        "arch": arch,
        "tree": TREE,
        "data": str(data),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "img_size": args.img_size,
        "workers": args.workers,
        "device": args.device,
        "project": str(runs),
        "name": arch,
        "recipe": args.recipe,
        "seed": 0,
    }
    if args.min_crop_scale is not None:
        settings["min_crop_scale"] = args.min_crop_scale
    if args.ema is not None:
        settings["ema"] = args.ema
    settings = {k: v for k, v in settings.items() if v is not None}
    console.rule(f"training {arch}")
    t0 = time.perf_counter()
    result = finished_run(runs / arch, args.epochs) if args.reuse else None
    if result is not None:
        console.print(f"reusing the finished run {result.run_dir} (--reuse)")
        wall = sum(float(r["epoch_time_s"]) for r in result.history)
    else:
        result = train(build_config(settings), reporter=RichReporter(console))
        wall = time.perf_counter() - t0
    rates = [r["images_per_s"] for r in result.history]
    steady = rates[1:] if len(rates) > 1 else rates  # the first epoch includes warm-up costs
    model = load_checkpoint_model(result.run_dir / "best")
    prof = compose_profile(model.preset, model.nodes_per_level(), model.num_classes, args.img_size)
    prof224 = compose_profile(model.preset, model.nodes_per_level(), model.num_classes, 224)
    return {
        "arch": arch,
        "run": result.run_dir,
        "top1": result.best_top1,
        "best_epoch": result.best_epoch,
        "images_per_s": sum(steady) / len(steady),
        "params": model.num_params(),
        "gmacs": prof.macs / 1e9,
        "gmacs224": prof224.macs / 1e9,
        "wall_s": wall,
        "args": read_args(result.run_dir),
    }


def finished_run(run: Path, epochs: int) -> TrainResult | None:
    """The result of a run that finished `epochs` epochs in `run` (results.csv, best/) or None.

    Lets a benchmark that stopped after training one network go on without training it again.
    """
    if not (run / "best").is_dir() or not (run / "results.csv").is_file():
        return None
    history = [
        {k: float(v) for k, v in row.items() if v not in ("", None)} for row in read_results(run)
    ]
    if len(history) != epochs:
        return None
    best = max(history, key=lambda r: r["val_top1"])
    return TrainResult(run, epochs, int(best["epoch"]), best["val_top1"], history)


def interleaved_step_rates(
    archs: list[str], img_size: int, batch: int, rounds: int, device: str | None
) -> dict[str, float]:
    """Training-step images/s of each arch, steps taken in turn (A B A B ...) on one batch.

    Taking the steps alternately exposes both networks to the same machine load, which drifts on a
    shared CPU; the loop's own images/s (per epoch, one model after the other) does not.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tree = resolve_tree(TREE)
    x = torch.randn(batch, 3, img_size, img_size, device=dev)
    y = torch.randint(0, tree.num_classes, (batch,), device=dev)
    nets, opts = {}, {}
    for a in archs:
        nets[a] = build_model(a, tree, img_size=img_size).to(dev).train()
        opts[a] = torch.optim.SGD(nets[a].parameters(), lr=0.01, momentum=0.9)
    spent = dict.fromkeys(archs, 0.0)
    for r in range(rounds + 1):
        for a in archs:
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(nets[a](x), y)
            opts[a].zero_grad(set_to_none=True)
            loss.backward()
            opts[a].step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if r > 0:  # round 0 warms up
                spent[a] += time.perf_counter() - t0
    return {a: rounds * batch / spent[a] for a in archs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "imagenette"))
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--min-crop-scale", type=float, default=None, help="default: the recipe's")
    ap.add_argument("--recipe", default="fast", help="fast, paper, or none (the plain defaults)")
    ap.add_argument("--ema", type=float, default=None, help="also train an EMA of the weights")
    ap.add_argument("--goal", action="store_true", help="check >= 60 %% each, n3hl within 2")
    ap.add_argument("--train-per-class", type=int, default=100, help="0 = all images")
    ap.add_argument("--val-per-class", type=int, default=50, help="0 = all images")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--device", default=None)
    ap.add_argument("--sweep", default="1.0:2.0:0.1", help="oracle attention scales")
    ap.add_argument("--step-rounds", type=int, default=8, help="interleaved timing rounds")
    ap.add_argument("--out", default=None, help="where the runs go (default: a temp folder)")
    ap.add_argument(
        "--reuse", action="store_true", help="reuse finished runs found in --out (no retraining)"
    )
    args = ap.parse_args()
    if args.recipe == "none":
        args.recipe = None
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=130)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nhl-bench-") as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        if args.reuse and (work / "data").exists():
            data = work / "data"
        else:
            data = sample_dir(
                Path(args.data),
                work / "data",
                args.train_per_class or None,
                args.val_per_class or None,
            )
        runs = work / "runs"
        console.print(
            f"Imagenette sample: {args.train_per_class or 'all'} train / "
            f"{args.val_per_class or 'all'} val images per class · {args.img_size} px · "
            f"{args.epochs} epochs · batch {args.batch_size} · "
            f"{torch.get_num_threads()} torch threads · {args.workers} workers"
        )
        res = {a: train_one(a, data, runs, args, console) for a in ("n3hl", "resnet50")}

        console.rule("experts and attention")
        tree = resolve_tree(TREE)
        lower5 = tree.class_ids[:5]
        full = load_checkpoint_model(res["n3hl"]["run"] / "best")
        expert = cutout(full, lower5)
        save_model(expert, work / "expert-lower5")
        common = {"workers": args.workers, "device": args.device, "batch_size": 64}
        ev_expert = evaluate(work / "expert-lower5", data, allow_extra=True, **common)
        ev_full5 = evaluate(res["n3hl"]["run"] / "best", data, classes=",".join(lower5), **common)
        ev_r50_5 = evaluate(
            res["resnet50"]["run"] / "best", data, classes=",".join(lower5), **common
        )
        from nhlcli.evaluation.runner import parse_sweep

        ev_oracle = evaluate(
            res["n3hl"]["run"] / "best", data, oracle_scales=parse_sweep(args.sweep), **common
        )
        exp_prof = compose_profile(expert.preset, expert.nodes_per_level(), 5, 224)
        console.rule("interleaved training steps")
        steps = interleaved_step_rates(
            ["n3hl", "resnet50"], args.img_size, args.batch_size, args.step_rounds, args.device
        )

    n3, r50 = res["n3hl"], res["resnet50"]
    t = Table(
        "model",
        "params",
        "GMACs @224",
        f"GMACs @{args.img_size}",
        "top-1 (val)",
        "train images/s",
        title="n3hl vs resnet50 (same loop, same settings)",
    )
    for r in (n3, r50):
        t.add_row(
            r["arch"],
            f"{r['params']:,}",
            f"{r['gmacs224']:.3f}",
            f"{r['gmacs']:.3f}",
            f"{r['top1']:.2f}% (epoch {r['best_epoch']})",
            f"{r['images_per_s']:.1f}",
        )
    console.print(t)
    inv_gmac = r50["gmacs"] / n3["gmacs"]
    g = Table(
        "measurement",
        "n3hl img/s",
        "resnet50 img/s",
        "ratio n3hl/r50",
        "inverse GMAC ratio",
        "ratio / inverse GMAC (goal >= 0.85)",
        title="throughput against compute",
    )
    for label, a, b in (
        ("training loop, mean of epochs 2+", n3["images_per_s"], r50["images_per_s"]),
        (
            f"training steps taken in turn ({args.step_rounds} each)",
            steps["n3hl"],
            steps["resnet50"],
        ),
    ):
        ratio = a / b
        g.add_row(
            label,
            f"{a:.1f}",
            f"{b:.1f}",
            f"{ratio:.3f}",
            f"{inv_gmac:.3f}",
            f"{ratio / inv_gmac:.3f}",
        )
    console.print(g)
    e = Table(
        "model",
        "params",
        "GMACs @224",
        "top-1 on the lower 5 classes",
        title="5-class expert (cutout) vs the full models restricted to the same 5 classes",
    )
    e.add_row(
        "n3hl expert (cutout)",
        f"{expert.num_params():,}",
        f"{exp_prof.macs / 1e9:.3f}",
        f"{ev_expert.top1:.2f}%",
    )
    e.add_row(
        "n3hl full, softmax over the 5",
        f"{n3['params']:,}",
        f"{n3['gmacs224']:.3f}",
        f"{ev_full5.top1:.2f}%",
    )
    e.add_row(
        "resnet50, softmax over the 5",
        f"{r50['params']:,}",
        f"{r50['gmacs224']:.3f}",
        f"{ev_r50_5.top1:.2f}%",
    )
    console.print(e)
    console.print(f"[bold yellow]note:[/] {ev_oracle.oracle_note}")
    o = Table("scale", "top-1", "change", title="n3hl, oracle top-down attention at the leaf level")
    for row in ev_oracle.oracle or []:
        o.add_row(
            f"{row['scale']:g}", f"{row['top1']:.2f}%", f"{row['top1'] - ev_oracle.top1:+.2f}"
        )
    console.print(o)
    args_yaml = n3["args"]
    recipe = {
        k: args_yaml[k]
        for k in ("recipe", "epochs", "batch_size", "lr", "optimizer", "weight_decay",
                  "label_smoothing", "warmup_epochs", "randaugment_n", "randaugment_m",
                  "min_crop_scale", "zero_init_residual", "ema", "mixup", "cutmix", "img_size",
                  "amp", "device")
    }  # fmt: skip
    console.print(
        "recipe (resolved, from args.yaml): " + ", ".join(f"{k}={v}" for k, v in recipe.items())
    )
    for r in (n3, r50):
        console.print(f"curves of {r['arch']}: {r['run'] / 'results.png'}")
    if args.goal:
        ok = n3["top1"] >= 60 and r50["top1"] >= 60 and n3["top1"] >= r50["top1"] - 2
        console.print(
            f"goal (>= 60 % each, n3hl within 2 points of resnet50): {'MET' if ok else 'NOT MET'} "
            f"(n3hl {n3['top1']:.2f} %, resnet50 {r50['top1']:.2f} %)"
        )
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
