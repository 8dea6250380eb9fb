"""Forward time of the grouped levels vs the plain per-branch implementation (issue 3, goal >= 10x).

Both compute the same function with the same weights: the per-branch model (`PerBranchNet`, one
`Bottleneck` module per node, a Python loop over nodes) shares every tensor with the grouped
HierNet (views, no extra memory). Each run times the trunk once, then, from its output, the branch
part (levels + heads) of each implementation; the whole forward is trunk + branch part. Median of
--runs after one warm-up; no_grad, eval mode, float32.

Trees: phl-latesp uses k flat classes; n3hl uses the shipped WordNet tree for k = 100 / 1000
(imagenet100-wordnet-L3, imagenet1k-wordnet-L3) and a synthetic levelled tree otherwise.

    python benchmarks/bench_grouped_vs_branches.py [--batch-size 8] [--img-size 224]
        [--classes 100 1000] [--archs phl-latesp n3hl] [--runs 3]

PHL_lateSP at k = 1000 holds 1.15 G parameters (4.6 GB of float32 weights): it needs ~8 GB of RAM.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nhlcli.hierarchy.tree import Tree
from nhlcli.model.network import HierNet, build_model
from nhlcli.model.reference import PerBranchNet, synthetic_tree

SHIPPED = {100: "imagenet100-wordnet-L3", 1000: "imagenet1k-wordnet-L3"}


def tree_for(arch: str, k: int) -> tuple[Tree, str]:
    if arch.startswith("phl"):
        return synthetic_tree([k], seed=0), "flat"
    if k in SHIPPED:
        try:
            from nhlcli.hierarchy.shipped_trees import resolve_tree

            return resolve_tree(SHIPPED[k]), SHIPPED[k]
        except Exception:  # no shipped tree in this checkout: fall back to a synthetic one
            pass
    counts = [max(2, k // 60), max(2, k // 6), k]
    return synthetic_tree(counts, seed=0), f"synthetic {counts}"


def grouped_branches(model: HierNet, h: torch.Tensor) -> torch.Tensor:
    for level in model.levels:
        h = level(h)
    assert model.heads is not None
    return model.heads(h)


def per_branch_branches(ref: PerBranchNet, h: torch.Tensor) -> torch.Tensor:
    outs = [h]
    for lv, level_nodes in enumerate(ref.nodes):
        outs = [node(outs[ref.parents[lv][i]]) for i, node in enumerate(level_nodes)]  # type: ignore[arg-type]
    assert ref.heads is not None
    return torch.cat([head(o) for head, o in zip(ref.heads, outs, strict=True)], 1)


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench(arch: str, k: int, batch: int, size: int, runs: int, device: str) -> dict:
    tree, tree_name = tree_for(arch, k)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(arch, tree, img_size=size, device=device).eval()
    ref = PerBranchNet.from_model(model, share=True).eval()
    build_s = time.perf_counter() - t0
    x = torch.randn(batch, 3, size, size, device=device)
    times: dict[str, list[float]] = {"trunk": [], "grouped": [], "branches": []}
    diff = 0.0
    with torch.no_grad():
        for r in range(runs + 1):  # run 0 is the warm-up
            dt_trunk, h = timed(lambda: model.trunk(x))
            dt_g, out_g = timed(lambda: grouped_branches(model, h))  # noqa: B023
            dt_b, out_b = timed(lambda: per_branch_branches(ref, h))  # noqa: B023
            if r:
                times["trunk"].append(dt_trunk)
                times["grouped"].append(dt_g)
                times["branches"].append(dt_b)
            diff = max(diff, float((out_g - out_b).abs().max() / out_g.abs().max()))
    med = {key: statistics.median(v) for key, v in times.items()}
    return {
        "arch": arch,
        "k": k,
        "tree": tree_name,
        "nodes": model.nodes_per_level(),
        "params": model.num_params(),
        "build_s": build_s,
        **med,
        "rel_diff": diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--archs", nargs="+", default=["phl-latesp", "n3hl"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} CPU threads, "
        f"batch {args.batch_size}, "
        f"{args.img_size} px, median of {args.runs} runs (after 1 warm-up)\n"
    )
    head = (
        f"{'arch':<11} {'k':>5} {'nodes/level':<15} {'params':>14} | {'trunk':>6} | "
        f"{'grouped':>8} {'branches':>8} {'ratio':>6} | {'grouped':>8} {'branches':>8} "
        f"{'ratio':>6} | {'rel diff':>8}"
    )
    print(f"{'':<57}| {'branch part (s)':^24} | {'whole forward (s)':^24} |")
    print(head)
    print("-" * len(head))
    for arch in args.archs:
        for k in args.classes:
            r = bench(arch, k, args.batch_size, args.img_size, args.runs, args.device)
            whole_g, whole_b = r["trunk"] + r["grouped"], r["trunk"] + r["branches"]
            print(
                f"{r['arch']:<11} {r['k']:>5} {r['nodes']!s:<15} {r['params']:>14,} | "
                f"{r['trunk']:>6.2f} | {r['grouped']:>8.3f} {r['branches']:>8.3f} "
                f"{r['branches'] / r['grouped']:>5.1f}x | {whole_g:>8.3f} {whole_b:>8.3f} "
                f"{whole_b / whole_g:>5.1f}x | {r['rel_diff']:>8.1e}",
                flush=True,
            )
    print(
        "\nbranch part: levels + heads from the same trunk output; whole forward = trunk + branch "
        "part (the trunk is the same module in both)."
    )


if __name__ == "__main__":
    main()
