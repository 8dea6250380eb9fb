"""Does the data pipeline keep up with training? Images/s of loading alone vs a training step.

Measures, on real Imagenette files, in this run:

* decoding in the main process (Pillow, JPEG draft mode, resize, centre square);
* the DataLoader with worker processes (pinned memory on CUDA);
* the DataLoader plus batch augmentation on the device (kornia: random resized crop, flip,
  RandAugment, normalisation);
* training steps (forward, backward, SGD) of n3hl and resnet50 on already decoded batches;

and prints the ratio (loading + augmentation) / training: above 1 the GPU/CPU never waits for data.
Not run in CI. Example:

    python benchmarks/bench_data_loading.py --img-size 64 --workers 1 --images 384 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nhlcli.data.augment import TrainAugment  # noqa: E402
from nhlcli.data.dataset import ImageFileDataset  # noqa: E402
from nhlcli.data.folders import index_image_folder  # noqa: E402
from nhlcli.data.loader import default_workers, make_loader, train_sampler  # noqa: E402
from nhlcli.hierarchy.shipped_trees import resolve_tree  # noqa: E402
from nhlcli.model.network import build_model  # noqa: E402


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def time_loader(loader, n_batches: int, augment=None, device=None) -> tuple[int, float]:
    it = iter(loader)
    next(it)  # workers started, first batch ready: not part of the steady state
    seen, t0 = 0, time.perf_counter()
    for _ in range(n_batches):
        try:
            b = next(it)
        except StopIteration:
            break
        x = b.images
        if augment is not None:
            x = augment(x.to(device, non_blocking=True))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        seen += x.shape[0]
    return seen, time.perf_counter() - t0


def time_training(arch: str, tree, img_size: int, batch: int, steps: int, device) -> float:
    model = build_model(arch, tree, img_size=img_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, tree.num_classes, (batch,), device=device)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return rate(steps * batch, time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "imagenette"))
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--images", type=int, default=384, help="images per loading measurement")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    workers = args.workers if args.workers is not None else default_workers()
    tree = resolve_tree("imagenette-wordnet-L3")
    folder = index_image_folder(Path(args.data) / "train", tree)
    ds = ImageFileDataset(folder.samples, args.img_size, "train")
    n_batches = max(1, args.images // args.batch_size)
    console = Console(width=130)
    console.print(
        f"{len(ds)} train images · {args.img_size} px · batch {args.batch_size} · "
        f"{workers} workers · device {device} · {torch.get_num_threads()} torch threads"
    )

    sampler = train_sampler(len(ds), seed=0)
    sampler.set_epoch(0)
    order = list(sampler)[: args.images]
    t0 = time.perf_counter()
    for i in order:
        ds[i]
    decode_rate = rate(len(order), time.perf_counter() - t0)

    loader = make_loader(ds, args.batch_size, sampler, workers, pin_memory=device.type == "cuda")
    seen, secs = time_loader(loader, n_batches)
    loader_rate = rate(seen, secs)
    augment = TrainAugment(args.img_size).to(device)
    augment(torch.zeros(2, 3, ds.out_size, ds.out_size, dtype=torch.uint8, device=device))
    loader2 = make_loader(ds, args.batch_size, sampler, workers, pin_memory=device.type == "cuda")
    seen, secs = time_loader(loader2, n_batches, augment, device)
    pipeline_rate = rate(seen, secs)

    rows = [
        ("decode, main process", decode_rate),
        (f"DataLoader, {workers} workers", loader_rate),
        ("DataLoader + device augmentation", pipeline_rate),
    ]
    train_rates = {}
    for arch in ("n3hl", "resnet50"):
        train_rates[arch] = time_training(
            arch, tree, args.img_size, args.batch_size, args.train_steps, device
        )
        rows.append((f"training step {arch} (decoded batches)", train_rates[arch]))

    table = Table("stage", "images/s", title="data pipeline vs training")
    for name, r in rows:
        table.add_row(name, f"{r:,.1f}")
    console.print(table)
    for arch, r in train_rates.items():
        console.print(
            f"pipeline / training ({arch}): [bold]{pipeline_rate / r:.2f}×[/] "
            f"({'keeps up' if pipeline_rate >= r else 'data-bound: add --workers'})"
        )


if __name__ == "__main__":
    main()
