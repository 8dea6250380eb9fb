"""Expert (5-class cutout) vs ResNet50 on CPU: measured latency ratio next to the GMAC ratio.

For each expert, the full model is built for its tree (100 or 1000 classes), a 5-class cutout is
cut from it with `cutout()`, and the cutout and a ResNet50 with the full model's k classes are timed
at 224 px, batch 1 and batch 32, with the runs of the models interleaved (so that load changes on
the machine hit all models alike); the median ms per batch is reported. GMACs come from
`profile_report` (fvcore, composed). Goal (issue 3): latency ratio <= 1.15 x GMAC ratio at batch 32.

    python benchmarks/bench_expert_latency.py [--runs 5] [--batch-sizes 1 32] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.cutout import cutout
from nhlcli.model.network import build_model
from nhlcli.profiling.latency import time_interleaved
from nhlcli.profiling.report import profile_report
from nhlcli.profiling.targets import flat_tree

CATS = ["n02123045", "n02123159", "n02123394", "n02123597", "n02124075"]  # the five domestic cats


def experts() -> list[tuple[str, str, Tree, list[str]]]:
    """(label, arch, full tree, expert classes): 5-class experts of 100-class models."""
    in100 = builtin_set("imagenet100")
    first5 = in100.wnids[:5]
    return [
        ("n3hl cutout 5/100", "n3hl", resolve_tree("imagenet100-wordnet-L3"), first5),
        ("phl-latesp cutout 5/100", "phl-latesp", flat_tree(in100), first5),
        ("n3hl cutout 5 cats/1000", "n3hl", resolve_tree("imagenet1k-wordnet-L3"), CATS),
    ]


def interleaved_ms(models: list[torch.nn.Module], batch: int, runs: int) -> list[float]:
    times = time_interleaved(
        {str(i): m for i, m in enumerate(models)}, batch, 224, torch.device("cpu"), runs, 1
    )
    return [statistics.median(t) for t in times.values()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    opts = ap.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(0)

    print(f"CPU, {torch.get_num_threads()} threads, 224 px, median of {opts.runs} interleaved runs")
    header = (
        f"{'expert':26} {'batch':>5} {'expert ms':>10} {'resnet50 ms':>12} "
        f"{'latency ratio':>14} {'GMAC ratio':>11} {'lat/GMAC':>9}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for label, arch, tree, classes in experts():
        report = profile_report(arch, tree, classes, 224)
        gmac_ratio = report.row("cutout").macs / report.row("baseline").macs
        full = build_model(arch, tree).eval()
        expert = cutout(full, classes, "given").eval()
        del full
        baseline = build_model("resnet50", tree).eval()
        for batch in opts.batch_sizes:
            exp_ms, base_ms = interleaved_ms([expert, baseline], batch, opts.runs)
            lat_ratio = exp_ms / base_ms
            print(
                f"{label:26} {batch:5d} {exp_ms:10.1f} {base_ms:12.1f} "
                f"{lat_ratio:14.3f} {gmac_ratio:11.3f} {lat_ratio / gmac_ratio:9.3f}"
            )
            if batch == 32:
                verdicts.append((label, lat_ratio / gmac_ratio))
    print()
    for label, r in verdicts:
        ok = "meets" if r <= 1.15 else "MISSES"
        print(f"{label}: latency ratio = {r:.2f} x GMAC ratio at batch 32 ({ok} the 1.15 goal)")


if __name__ == "__main__":
    main()
