"""Time and peak memory of `nhl profile` (composition) at k = 1000, against whole-model fvcore.

Every measurement runs in a fresh Python process (so peak RSS is that command's own, imports
included) and is repeated; the table shows the median wall time and the largest peak RSS.

Rows:
* `nhl --help`: the start-up floor (Python, torch and the CLI imported; nothing profiled);
* `nhl profile` for PHL_big on ImageNet-1k (2.6 G parameters, 442 GMACs) and for N3HL on the shipped
  ImageNet-1k WordNet tree (k = 1000), composed per distinct shape, never allocated;
* the baseline: fvcore on the whole N3HL model, allocated (what composition replaces; PHL_big would
  need 10.4 GB for its weights alone, so it is not run whole).

Goal (issue 3): PHL_big at k = 1000 in <= 10 s and <= 2 GB peak.

    python benchmarks/bench_profile.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
kind, args = sys.argv[1], sys.argv[2:]
info = {}
if kind == "cli":
    from nhlcli.cli.app import main
    try:
        main(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
else:  # whole-model fvcore: allocate the network and trace it at once
    import torch
    from fvcore.nn import FlopCountAnalysis
    from nhlcli.hierarchy.shipped_trees import resolve_tree
    from nhlcli.model.network import build_model
    model = build_model(args[0], resolve_tree(args[1])).eval()
    fa = FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        info["macs"] = int(fa.total())
    info["params"] = sum(p.numel() for p in model.parameters())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
info.update(peak_mib=peak / 1024, inner_s=time.perf_counter() - t0)
print("BENCH " + json.dumps(info), file=sys.stderr)
"""

CASES = [
    ("startup floor: nhl --help", "cli", ["--help"]),
    (
        "nhl profile phl-big, imagenet1k (k=1000)",
        "cli",
        ["profile", "--arch", "phl-big", "--classes", "imagenet1k", "--json"],
    ),
    (
        "nhl profile n3hl, imagenet1k-wordnet-L3",
        "cli",
        ["profile", "--arch", "n3hl", "--tree", "imagenet1k-wordnet-L3", "--json"],
    ),
    (
        "baseline: whole-model fvcore n3hl (allocated)",
        "whole",
        ["n3hl", "imagenet1k-wordnet-L3"],
    ),
]


def run_once(kind: str, args: list[str]) -> tuple[float, dict, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, *args], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t0
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH "))
    return wall, json.loads(line[len("BENCH ") :]), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()

    results = []
    for label, kind, args in CASES:
        walls, peaks = [], []
        out = ""
        info: dict = {}
        for _ in range(opts.repeat):
            wall, info, out = run_once(kind, args)
            walls.append(wall)
            peaks.append(info["peak_mib"])
        what = ""
        if out.strip().startswith("{"):
            full = next(r for r in json.loads(out)["models"] if r["role"] == "full")
            what = f"{full['params']:,} params, {full['macs']:,} MACs"
        elif "macs" in info:
            what = f"{info['params']:,} params, {info['macs']:,} MACs"
        results.append((label, statistics.median(walls), max(peaks), what))

    print(f"{'command':48} {'median s':>9} {'peak MiB':>9}  model")
    for label, wall, peak, what in results:
        print(f"{label:48} {wall:9.2f} {peak:9.0f}  {what}")
    floor = results[0]
    comp, whole = results[2], results[3]
    big = results[1]
    print()
    print(f"phl-big k=1000: {big[1]:.2f} s (goal <= 10 s), {big[2]:.0f} MiB peak (goal <= 2048)")
    print(
        f"n3hl k=1000, composed vs whole-model fvcore: time ratio {comp[1] / whole[1]:.2f}, "
        f"peak-memory ratio {comp[2] / whole[2]:.2f}"
    )
    print(f"start-up floor (import torch + CLI): {floor[1]:.2f} s, {floor[2]:.0f} MiB")


if __name__ == "__main__":
    main()
