"""MAC rate of every preset and its 5-class expert against a dense baseline, in the same run.

For each preset at k classes (a WordNet tree for NHL presets, the class set for PHL), the full
model and a 5-class expert are timed with the dense baseline of their family (ResNet50; ResNet152
for n3hl152; ConvNeXtV2-tiny for the ConvNeXt presets), the models interleaved run by run so that
load changes hit all alike. Per model and mode it prints the median ms (with min-max), GMACs
(fvcore, composed), the MAC rate (GMACs x batch / s), the efficiency (rate / the baseline's rate;
goal >= 0.9), and for experts the latency ratio next to the GMAC ratio (goal: latency ratio <=
1.05 x GMAC ratio). Modes: `fwd1`, `fwd32` (forward at batch 1 / 32, inference mode) and
`train32` (forward + backward + SGD step at batch 32; its MACs are ~3x the forward's for every
model alike, so the forward GMACs give the ratios). `--fused` also times the fused expert (BN
folded into the convolutions, `nhl cutout --fuse`) in the forward modes. `--onnx` also times the
exported experts in ONNX Runtime against an exported baseline.

    python benchmarks/bench_efficiency.py                      # every preset, k = 100 and 1000
    python benchmarks/bench_efficiency.py --presets n3hl --k 1000 --modes fwd1 train32 --runs 5
    python benchmarks/bench_efficiency.py --quick              # small sizes: a smoke run

Models whose weights exceed --max-params (PHL-small/big at k = 1000: 0.8 / 2.6 G parameters)
are not allocated; their rows say so. Run it on a quiet machine (`flock /tmp/nhl-bench.lock ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.cutout import cutout
from nhlcli.model.fuse import fuse
from nhlcli.model.network import build_model
from nhlcli.model.presets import PRESETS, get_preset
from nhlcli.profiling.compose import compose_profile
from nhlcli.profiling.latency import summary, time_interleaved
from nhlcli.profiling.targets import flat_tree

PRESET_ORDER = (
    "n2hl", "n3hl", "n3hl152", "phl-small", "phl-big", "phl-latesp", "phl-1branch",
    "convnextv2-nhl",
)  # fmt: skip
CATS = ["n02123045", "n02123159", "n02123394", "n02123597", "n02124075"]  # the 5 domestic cats
CPU = torch.device("cpu")
ROLE_SUFFIX = {"full": "", "expert": " 5-class expert", "fused": " 5-class fused"}


def baseline_of(arch: str) -> str:
    if "convnext" in arch:
        return "convnextv2-tiny"
    return "resnet152" if "152" in arch else "resnet50"


def tree_for(arch: str, k: int) -> Tree:
    name = {100: "imagenet100", 1000: "imagenet1k", 10: "imagenette"}[k]
    preset = get_preset(arch)
    if preset.num_levels > 1 and preset.head != "shared":
        return resolve_tree(f"{name}-wordnet-L{preset.num_levels}")
    return flat_tree(builtin_set(name))


def expert_classes(tree: Tree) -> list[str]:
    return CATS if all(tree.is_class(c) for c in CATS) else tree.class_ids[:5]


def gmacs(model: Any, img: int) -> float:
    return compose_profile(model.preset, model.nodes_per_level(), model.num_classes, img).gmacs


def device_of(opts: Any) -> torch.device:
    return torch.device(getattr(opts, "device", "cpu"))


@contextlib.contextmanager
def precision(opts: Any) -> Iterator[None]:
    """bf16 autocast on the benchmark's device when `--amp bf16`, else full precision."""
    amp = getattr(opts, "amp", "none") == "bf16"
    with torch.autocast(device_of(opts).type, dtype=torch.bfloat16, enabled=amp):
        yield


def placed(model: nn.Module, opts: Any) -> nn.Module:
    """The model on the benchmark's device (channels-last when `--channels-last`)."""
    model = model.to(device_of(opts))
    if getattr(opts, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_runner(model: nn.Module, batch: int, img: int, opts: Any) -> Callable[[], float]:
    model.train()
    dev = device_of(opts)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    x = torch.randn(batch, 3, img, img, device=dev)
    if getattr(opts, "channels_last", False):
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.num_classes, (batch,), device=dev)  # type: ignore[arg-type]
    loss_fn = nn.CrossEntropyLoss()

    def run() -> float:
        sync(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with precision(opts):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sync(dev)
        return (time.perf_counter() - t0) * 1000.0

    return run


def time_training(models: dict[str, nn.Module], batch: int, img: int, opts: Any):
    runs, warmup = opts.runs, opts.warmup
    runners = {role: train_step_runner(m, batch, img, opts) for role, m in models.items()}
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {role: [] for role in runners}
    for _ in range(runs):
        for role, run in runners.items():
            times[role].append(run())
    return times


def onnx_runner(model: nn.Module, batch: int, img: int) -> Callable[[], float]:
    import numpy as np
    import onnxruntime as ort

    buf = io.BytesIO()
    model.eval()
    torch.onnx.export(
        model, (torch.randn(1, 3, img, img),), buf, input_names=["image"],
        dynamic_axes={"image": {0: "n"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, img, img)).astype("float32")

    def run() -> float:
        t0 = time.perf_counter()
        session.run(None, {"image": x})
        return (time.perf_counter() - t0) * 1000.0

    return run


def measure(mode: str, models: dict[str, nn.Module], img: int, opts: Any) -> dict[str, list[float]]:
    batch = int(mode.removeprefix("fwd").removeprefix("train").removeprefix("onnx"))
    if mode.startswith("train"):
        return time_training(models, batch, opts.train_img_size, opts)
    if mode.startswith("onnx"):
        runners = {r: onnx_runner(m, batch, img) for r, m in models.items()}
        for run in runners.values():
            run()
        times: dict[str, list[float]] = {r: [] for r in runners}
        for _ in range(opts.runs):
            for r, run in runners.items():
                times[r].append(run())
        return times
    with precision(opts):
        return time_interleaved(models, batch, img, device_of(opts), opts.runs, opts.warmup)


def rows_for(arch: str, k: int, opts: Any) -> list[dict[str, Any]]:
    tree = tree_for(arch, k)
    preset = get_preset(arch)
    nodes = [1] * len(preset.levels) if preset.head == "shared" else None
    full_params = preset.params(
        nodes or [len(tree.level(i)) for i in range(1, preset.num_levels + 1)], k
    )
    base_arch = baseline_of(arch)
    torch.manual_seed(0)
    base = placed(build_model(base_arch, tree, img_size=opts.img_size), opts)
    models: dict[str, nn.Module] = {"baseline": base}
    skipped = []
    if full_params <= opts.max_params:
        full = build_model(arch, tree, img_size=opts.img_size)
        models["full"] = placed(full, opts)
        models["expert"] = placed(cutout(full, expert_classes(tree)), opts)
    else:
        skipped.append(f"full model not allocated ({full_params / 1e6:,.0f} M parameters)")
        models["expert"] = placed(
            build_model(arch, tree.subtree(expert_classes(tree)), img_size=opts.img_size), opts
        )
    fused = {"fused": fuse(models["expert"])} if opts.fused else {}
    out = []
    for mode in opts.modes:
        if mode.startswith("onnx"):
            chosen = {"baseline": base, "expert": models["expert"]}
        elif mode.startswith("train"):
            chosen = models
        else:  # inference: also the fused expert (BN folded into the convolutions)
            chosen = {**models, **fused}
        img = opts.train_img_size if mode.startswith("train") else opts.img_size
        times = measure(mode, chosen, opts.img_size, opts)
        batch = int("".join(ch for ch in mode if ch.isdigit()))
        g = {role: gmacs(m, img) for role, m in chosen.items()}
        st = {role: summary(t) for role, t in times.items()}
        rate = {role: g[role] * batch / (st[role]["median"] / 1e3) for role in chosen}
        for role in chosen:
            if role == "baseline":
                continue
            lat_ratio = st[role]["median"] / st["baseline"]["median"]
            gmac_ratio = g[role] / g["baseline"]
            out.append(
                {
                    "model": f"{arch} k={k}" + ROLE_SUFFIX[role],
                    "baseline": base_arch,
                    "mode": mode,
                    "ms": st[role]["median"],
                    "ms_min": st[role]["min"],
                    "ms_max": st[role]["max"],
                    "base_ms": st["baseline"]["median"],
                    "gmacs": g[role],
                    "efficiency": rate[role] / rate["baseline"],
                    "latency_ratio": lat_ratio,
                    "gmac_ratio": gmac_ratio,
                    "tracks": lat_ratio <= 1.05 * gmac_ratio,
                }
            )
    for why in skipped:
        out.append({"model": f"{arch} k={k}", "mode": "-", "note": why})
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'model':34} {'mode':8} {'ms (min-max)':>22} {'base ms':>9} {'GMACs':>8} "
        f"{'eff.':>5} {'lat/base':>8} {'GMAC/base':>9} tracks"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if "note" in r:
            print(f"{r['model']:34} {r['mode']:8} {r['note']}")
            continue
        span = f"{r['ms']:,.1f} ({r['ms_min']:,.1f}-{r['ms_max']:,.1f})"
        print(
            f"{r['model']:34} {r['mode']:8} {span:>22} {r['base_ms']:>9,.1f} {r['gmacs']:>8.2f} "
            f"{r['efficiency']:>5.2f} {r['latency_ratio']:>8.2f} {r['gmac_ratio']:>9.2f} "
            f"{'yes' if r['tracks'] else 'no'}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(p for p in PRESET_ORDER if p in PRESETS))
    ap.add_argument("--k", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--modes", nargs="+", default=["fwd1", "fwd32", "train32"])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--train-img-size", type=int, default=112)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-params", type=int, default=400_000_000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--amp", choices=["none", "bf16"], default="none", help="bf16 autocast")
    ap.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    ap.add_argument("--onnx", action="store_true", help="also time exported experts (onnx32)")
    ap.add_argument("--fused", action="store_true", help="also time the fused expert (fwd modes)")
    ap.add_argument("--quick", action="store_true", help="64 px, k=10, batch 4: a smoke run")
    opts = ap.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.quick:
        opts.k, opts.img_size, opts.train_img_size, opts.runs = [10], 64, 64, 2
        opts.modes = ["fwd1", "fwd4", "train4"]
    if opts.onnx:
        opts.modes = [*opts.modes, "onnx1", "onnx32"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {opts.runs} runs")
    rows: list[dict[str, Any]] = []
    for arch in [p.strip() for p in opts.presets.split(",") if p.strip()]:
        for k in opts.k:
            t0 = time.perf_counter()
            rows += rows_for(arch, k, opts)
            print(f"# {arch} k={k}: {time.perf_counter() - t0:.0f} s", flush=True)
    print_table(rows)
    effs = [r["efficiency"] for r in rows if "efficiency" in r]
    if effs:
        print(f"\nmedian efficiency {statistics.median(effs):.2f}; "
              f"rows >= 0.9: {sum(e >= 0.9 for e in effs)}/{len(effs)}")  # fmt: skip


if __name__ == "__main__":
    main()
