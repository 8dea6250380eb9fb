"""Where one forward or training step of a preset spends its time: a `torch.profiler` table (CPU).

The evidence behind docs/profiling.md ("what limits the rows that miss"): the ops sorted by self
CPU time, optionally grouped by input shape, after warm-up steps. Not run in CI.

    python benchmarks/profile_step.py --arch n3hl --k 1000 --mode train \\
        --img-size 112 --batch-size 32
    python benchmarks/profile_step.py --arch n3hl --mode fwd --batch-size 1
    python benchmarks/profile_step.py --arch phl-latesp --k 100 --mode fwd --shapes
    python benchmarks/profile_step.py --arch n2hl --k 100 --expert --batch-size 32  # 5-cat expert

Models and experts are those of `bench_efficiency.py` (`--k`: its trees and class sets).
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_efficiency import expert_classes, tree_for  # this folder is on sys.path
from torch.profiler import ProfilerActivity, profile

from nhlcli.model.cutout import cutout
from nhlcli.model.network import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="n3hl")
    ap.add_argument("--k", type=int, default=1000, choices=(10, 100, 1000), help="classes")
    ap.add_argument("--expert", action="store_true", help="profile the 5-class expert instead")
    ap.add_argument("--mode", choices=("fwd", "train"), default="fwd")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--shapes", action="store_true", help="also group the ops by input shape")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tree = tree_for(args.arch, args.k)
    model = build_model(args.arch, tree, img_size=args.img_size)
    if args.expert:
        model = cutout(model, expert_classes(tree))
    model.train(args.mode == "train")
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    y = torch.randint(0, model.num_classes, (args.batch_size,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        if args.mode == "fwd":
            with torch.inference_mode():
                model(x)
            return
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    step()
    ms = (time.perf_counter() - t0) * 1e3
    print(f"{args.arch} {args.mode} batch {args.batch_size} at {args.img_size} px: {ms:,.1f} ms")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if args.shapes:
        by_shape = prof.key_averages(group_by_input_shape=True)
        print(by_shape.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
