"""Before/after speed of checkouts of nhl: the same models timed in each, alternating, one table.

Each checkout (``LABEL=FOLDER``, a worktree or a plain copy of the project) is timed in its own
subprocess with PYTHONPATH set to that folder, so each runs its own code. A round times every
model once in every checkout (the order of the checkouts alternates from round to round), so
load changes hit all checkouts alike. A subprocess builds one model (seed 0), runs each mode
once untimed and once timed, and prints its milliseconds; the table gives the median over the
rounds per checkout and each checkout's ratio to the first (> 1: slower).

Models: bench_efficiency's (n3hl on the WordNet trees, PHL on flat class sets, 5-class experts
cut to the 5 domestic cats), built only through the API every checkout since 1dc6cc8 has
(`build_model`, `cutout`, `resolve_tree`). Modes: ``fwd<B>`` (forward at batch B, 224 px, eval
mode, inference mode; models that have `prepare_inference` are prepared, as `nhl eval` does)
and ``train<B>`` (forward + backward + SGD step at batch B, 112 px).

    flock /tmp/nhl-cpu.lock python benchmarks/bench_commits.py start=/work/bench-start \\
        end=. --extra 1dc6cc8=/work/bench-1dc6cc8 --runs 3 --threads 2

``--extra`` checkouts time only the rows whose model matches ``--extra-rows`` (default:
phl-latesp), for code that predates the other presets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CATS = ["n02123045", "n02123159", "n02123394", "n02123597", "n02124075"]  # the 5 domestic cats
TRAIN_IMG = 112

# (arch, k, role, modes): the rows of the issue-18 comparison
DEFAULT_MODELS = [
    *(
        (arch, k, role, ("fwd1", "fwd32", "train32"))
        for arch in ("n3hl", "convnextv2-nhl")
        for k in (100, 1000)
        for role in ("full", "expert")
    ),
    ("phl-latesp", 100, "full", ("fwd8", "fwd32")),
]


def child(arch: str, k: int, role: str, modes: list[str], threads: int) -> None:
    """Runs in the checkout's interpreter: time `modes` of one model, print JSON {mode: ms}."""
    import torch

    from nhlcli.hierarchy.classsets import builtin_set
    from nhlcli.hierarchy.shipped_trees import resolve_tree
    from nhlcli.hierarchy.tree import Tree, TreeNode
    from nhlcli.model.cutout import cutout
    from nhlcli.model.network import build_model
    from nhlcli.model.presets import get_preset

    torch.set_num_threads(threads)
    name = {10: "imagenette", 100: "imagenet100", 1000: "imagenet1k"}[k]
    preset = get_preset(arch)
    if preset.num_levels > 1 and preset.head != "shared":
        tree = resolve_tree(f"{name}-wordnet-L{preset.num_levels}")
    else:
        classes = builtin_set(name).classes
        tree = Tree([TreeNode(c.wnid, c.name, None) for c in classes], (), {"source": "list"})
    torch.manual_seed(0)
    model = build_model(arch, tree, img_size=224)
    if role == "expert":
        keep = CATS if all(tree.is_class(c) for c in CATS) else tree.class_ids[:5]
        model = cutout(model, keep)
    out: dict[str, float] = {}
    for mode in modes:
        batch = int(mode.removeprefix("fwd").removeprefix("train"))
        if mode.startswith("fwd"):
            prepare = getattr(model, "prepare_inference", None)
            model.eval() if prepare is None else prepare()
            x = torch.randn(batch, 3, 224, 224)

            def run(x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    model(x)
        else:
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
            x = torch.randn(batch, 3, TRAIN_IMG, TRAIN_IMG)
            y = torch.randint(0, model.num_classes, (batch,))

            def run(x: torch.Tensor = x, y: torch.Tensor = y, opt=opt) -> None:  # type: ignore[no-untyped-def]
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

        run()  # warm-up
        t0 = time.perf_counter()
        run()
        out[mode] = (time.perf_counter() - t0) * 1000.0
    print("RESULT " + json.dumps(out), flush=True)


def time_in(folder: Path, model: tuple, threads: int) -> dict[str, float] | str:
    arch, k, role, modes = model
    env = {**os.environ, "PYTHONPATH": str(folder), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", arch, str(k), role, ",".join(modes)]
    cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))  # type: ignore[no-any-return]
    return (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkouts", nargs="*", help="LABEL=FOLDER; the first is the reference")
    ap.add_argument("--extra", action="append", default=[], help="LABEL=FOLDER, --extra-rows only")
    ap.add_argument("--extra-rows", default="phl-latesp")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", help="comma-separated archs to keep (default: all rows)")
    ap.add_argument("--child", nargs=4, metavar=("ARCH", "K", "ROLE", "MODES"))
    args = ap.parse_args()
    if args.child:
        arch, k, role, modes = args.child
        child(arch, int(k), role, modes.split(","), args.threads)
        return

    def parse(spec: str) -> tuple[str, Path]:
        label, _, folder = spec.partition("=")
        return label, Path(folder or label).resolve()

    main_cos = [parse(s) for s in args.checkouts]
    extra = [parse(s) for s in args.extra]
    models = [m for m in DEFAULT_MODELS if not args.models or m[0] in args.models.split(",")]
    labels = [label for label, _ in main_cos + extra]
    times: dict[tuple, dict[str, list[float]]] = {}
    errors: dict[tuple, str] = {}
    for r in range(args.runs):
        for model in models:
            cos = main_cos + [c for c in extra if model[0] in args.extra_rows.split(",")]
            order = cos if r % 2 == 0 else cos[::-1]
            for label, folder in order:
                got = time_in(folder, model, args.threads)
                if isinstance(got, str):
                    errors[(model[:3], label)] = got
                    continue
                for mode, ms in got.items():
                    times.setdefault((*model[:3], mode), {}).setdefault(label, []).append(ms)
            print(f"round {r + 1}/{args.runs}: {model[0]} k={model[1]} {model[2]} done", flush=True)

    # ratios: every checkout to the first; the last checkout to each extra one
    last = main_cos[-1][0]
    pairs = [(lb, labels[0]) for lb, _ in main_cos[1:]] + [(last, lb) for lb, _ in extra]
    head = ["model", "mode", *(f"{lb} ms" for lb in labels), *(f"{a}/{b}" for a, b in pairs)]
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (arch, k, role, mode), per in times.items():
        med = {lb: statistics.median(v) for lb, v in per.items()}
        name = f"{arch} k={k}" + (" 5-cat expert" if role == "expert" else "")
        cells = [f"{med[lb]:,.0f}" if lb in med else "" for lb in labels]
        ratios = [f"{med[a] / med[b]:.2f}" if a in med and b in med else "" for a, b in pairs]
        print(f"| {name} | {mode} | " + " | ".join(cells + ratios) + " |")
    print(f"\nmedians of {args.runs} alternating rounds, {args.threads} threads, torch eval")
    for (model, label), why in errors.items():
        print(f"{label}: {model}: {why}")


if __name__ == "__main__":
    main()
