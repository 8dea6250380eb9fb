"""How long does the WordNet tree of ImageNet-1k take, WordNet load included? (goal: <= 3 s)

Each measurement is a fresh Python process (cold start: imports, WordNet load, hypernym paths,
levelling), repeated and the median taken:

* nhl: `build_wordnet_tree(imagenet1k, 3)` with nhl's WordNet loader (NLTK's reader, minus the OMW
  sense map, with the lemma index read in one go);
* baseline: the same build with NLTK's stock loader (`nltk.corpus.wordnet`), measured in this run;
* the whole command `nhl build-tree --classes imagenet1k --levels 3 -o ...` (adds the CLI's
  imports).

A stage breakdown of one nhl run follows. Not run in CI. Example (NLTK_DATA must point at WordNet):

    NLTK_DATA=../shared/data/nltk_data python benchmarks/bench_wordnet_tree.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import time
t0 = time.perf_counter()
STOCK = {stock}
if STOCK:
    import functools
    import nhlcli.hierarchy.wordnet_data as wd
    from nltk.corpus import wordnet
    @functools.cache
    def stock():
        wordnet.ensure_loaded()
        return wordnet
    wd.get_wordnet = stock
    import nhlcli.hierarchy.wordnet_source as ws
    ws.get_wordnet = stock
from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.wordnet_source import build_wordnet_tree
tree = build_wordnet_tree(builtin_set("imagenet1k"), 3, date=None)
assert tree.levels == 3 and tree.num_classes == 1000
print(time.perf_counter() - t0)
"""

STAGES = """
import time
t = [time.perf_counter()]
import nltk
t.append(time.perf_counter())
from nhlcli.hierarchy.wordnet_data import get_wordnet
get_wordnet()
t.append(time.perf_counter())
from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.wordnet_source import wordnet_class_paths, build_wordnet_tree
classes = builtin_set("imagenet1k")
paths = wordnet_class_paths(classes)
t.append(time.perf_counter())
build_wordnet_tree(classes, 3, date=None)
t.append(time.perf_counter())
print(" ".join(str(b - a) for a, b in zip(t, t[1:])))
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of a fresh process running cmd."""
    c0, t0 = os.times(), time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall_s, c1 = time.perf_counter() - t0, os.times()
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return wall_s, (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)


def median_timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    runs = [timed(cmd) for _ in range(repeats)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not os.environ.get("NLTK_DATA"):
        shared = REPO.parent / "shared" / "data" / "nltk_data"
        if shared.is_dir():
            os.environ["NLTK_DATA"] = str(shared)
    py = sys.executable
    nhl_s, nhl_cpu = median_timed([py, "-c", BUILD.format(stock=False)], args.repeats)
    stock_s, stock_cpu = median_timed([py, "-c", BUILD.format(stock=True)], args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "in1k.json")
        cli_s, cli_cpu = median_timed(
            [
                py,
                "-m",
                "nhlcli",
                "build-tree",
                "--classes",
                "imagenet1k",
                "--levels",
                "3",
                "--no-date",
                "-o",
                out,
            ],
            args.repeats,
        )
    stages = subprocess.run([py, "-c", STAGES], cwd=REPO, capture_output=True, text=True)
    parts = [float(x) for x in stages.stdout.split()]

    console = Console()
    t = Table(
        title=f"WordNet tree of imagenet1k, 3 levels (fresh process, median of {args.repeats})"
    )
    t.add_column("run")
    t.add_column("wall s", justify="right")
    t.add_column("CPU s", justify="right")
    t.add_column("wall vs baseline", justify="right")
    t.add_row(
        "baseline: NLTK stock WordNet loader + build", f"{stock_s:.2f}", f"{stock_cpu:.2f}", "1.00x"
    )
    t.add_row(
        "nhl: build_wordnet_tree (library)",
        f"{nhl_s:.2f}",
        f"{nhl_cpu:.2f}",
        f"{stock_s / nhl_s:.2f}x faster",
    )
    t.add_row(
        "nhl build-tree (whole CLI command)",
        f"{cli_s:.2f}",
        f"{cli_cpu:.2f}",
        f"{stock_s / cli_s:.2f}x faster",
    )
    console.print(t)
    s = Table(title="stages of one nhl run (in process)")
    for name in ("import nltk", "load WordNet", "hypernym paths (1000)", "levelling + tree"):
        s.add_column(name, justify="right")
    s.add_row(*(f"{x:.2f} s" for x in parts))
    console.print(s)
    goal = "met" if nhl_s <= 3.0 else "NOT met"
    console.print(
        f"goal <= 3 s for the library build including WordNet load: {goal} by wall time "
        f"({nhl_s:.2f} s wall, {nhl_cpu:.2f} s CPU); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs (on a busy machine wall time exceeds CPU time)"
    )


if __name__ == "__main__":
    main()
