"""The GPU check: does nhl compute the same on a GPU, train in bf16, and how fast is it there?

One command, about 8 minutes on one H100, writing `OUT/report.md` and `OUT/report.json`:

    python benchmarks/gpu_check.py --device cuda --out gpu-check
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu-check   # CPU, < 1 minute

Sections (each runs even when an earlier one failed; each records pass/fail, its figures and the
error of a failure):

1. `parity`: every preset (10 classes, a synthetic tree of the preset's depth) and a cutout give
   the same logits on the device as on the CPU in float32 (TF32 off), within `PARITY_TOL` of the
   largest logit.
2. `bf16_step`: a bf16-autocast training step, channels-last, of n3hl, convnextv2-nhl and
   resnet50: finite loss and gradients; channels-last logits equal contiguous ones (float32).
3. `efficiency`: `bench_efficiency.py` rows in bf16 and channels-last at k = 1000 (forward at
   batch 1 and 256, training step at batch 128) for n3hl and convnextv2-nhl and their 5-class
   experts, against resnet50 and convnextv2-tiny in the same run.
4. `grouped_vs_branches`: n3hl's grouped levels against the per-branch reference (one module per
   node), same weights.
5. `training`: a short real training of n3hl and resnet50 on the image folder (`--data`,
   `--amp bf16` on CUDA), then `nhl eval`, `nhl cutout` and `nhl export --format onnx` of the n3hl
   run: top-1 and training images/s of both.

`--smoke` shrinks every size (k = 10, 64 px, batch 4, a few training batches) so that the whole
check runs on the CPU in under a minute; tests/test_gpu_check.py runs it, so the script cannot rot
before a GPU is lent.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's nhlcli

import bench_efficiency
import bench_grouped_vs_branches

from nhlcli.hierarchy.tree import Tree
from nhlcli.model.cutout import cutout
from nhlcli.model.network import build_model
from nhlcli.model.presets import PRESETS, get_preset
from nhlcli.model.reference import synthetic_tree

PARITY_TOL = 1e-3  # largest |device - cpu| logit difference over the largest |cpu| logit
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette"
COUNTS_BY_DEPTH = {1: [10], 2: [3, 10], 3: [2, 4, 10], 4: [2, 3, 5, 10]}
EXPERT5 = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079"]  # Imagenette's first 5


def sizes(smoke: bool) -> SimpleNamespace:
    """Every size of the check; `--smoke` makes each small enough for a CPU."""
    if smoke:
        return SimpleNamespace(
            img=64, batch=2, k=[10], modes=["fwd1", "train2"], train_img=64, runs=1,
            warmup=0, branches_k=10, branches_batch=2, train_img_size=32, epochs=1,
            train_batches=2, val_batches=1, train_batch_size=8,
        )  # fmt: skip
    return SimpleNamespace(
        img=224, batch=4, k=[1000], modes=["fwd1", "fwd256", "train128"], train_img=224, runs=10,
        warmup=3, branches_k=1000, branches_batch=8, train_img_size=128, epochs=2,
        train_batches=None, val_batches=None, train_batch_size=128,
    )  # fmt: skip


def tree_for(arch: str) -> Tree:
    """10 classes in a synthetic tree of the preset's depth (a shared head uses the class list)."""
    preset = get_preset(arch)
    depth = len(preset.levels) if preset.head == "per_class" else 1
    return synthetic_tree(COUNTS_BY_DEPTH[depth], seed=0)


# ------------------------------------------------------------------------------------ sections
def check_parity(device: torch.device, s: SimpleNamespace) -> dict[str, Any]:
    """Each preset's logits on the device against the CPU's, float32, TF32 off; and a cutout."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    x = torch.randn(s.batch, 3, s.img, s.img, generator=torch.Generator().manual_seed(0))
    for arch in PRESETS:
        torch.manual_seed(0)
        model = build_model(arch, tree_for(arch), img_size=s.img).eval()
        rows.append(_parity_row(arch, model, model, x, device, None))
        if arch == "n3hl":
            keep = model.tree.class_ids[:3]
            idx = [model.tree.class_ids.index(c) for c in keep]
            rows.append(
                _parity_row("n3hl 3-class cutout", model, cutout(model, keep), x, device, idx)
            )
    return {"ok": all(r["ok"] for r in rows), "tolerance": PARITY_TOL, "rows": rows}


def _parity_row(
    name: str, full: nn.Module, tested: nn.Module, x: torch.Tensor, device: torch.device,
    idx: list[int] | None,
) -> dict[str, Any]:  # fmt: skip
    with torch.no_grad():
        ref = full(x)
        if idx is not None:
            ref = ref[:, idx]
        out = copy.deepcopy(tested).to(device).eval()(x.to(device)).float().cpu()
    rel = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    return {"model": name, "rel_diff": rel, "ok": rel <= PARITY_TOL}


def check_bf16_step(device: torch.device, s: SimpleNamespace) -> dict[str, Any]:
    """One bf16-autocast SGD step in channels-last: finite loss and gradients."""
    rows = []
    for arch in ("n3hl", "convnextv2-nhl", "resnet50"):
        tree = tree_for(arch)
        torch.manual_seed(0)
        model = build_model(arch, tree, img_size=s.img).to(device)
        x = torch.randn(s.batch, 3, s.img, s.img, device=device)
        with torch.no_grad():
            plain = model.eval()(x)
        model = model.to(memory_format=torch.channels_last).train()
        xl = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            cl = model.eval()(xl)
        cl_rel = float((cl - plain).abs().max() / plain.abs().max().clamp_min(1e-12))
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        y = torch.randint(0, tree.num_classes, (s.batch,), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(xl)
            loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        grads_finite = all(
            bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None
        )
        opt.step()
        rows.append(
            {
                "model": arch,
                "loss": float(loss.detach()),
                "logits_dtype": str(logits.dtype),
                "finite": bool(torch.isfinite(loss)) and grads_finite,
                "channels_last_rel_diff": cl_rel,
                "ok": bool(torch.isfinite(loss)) and grads_finite and cl_rel <= PARITY_TOL,
            }
        )
    return {"ok": all(r["ok"] for r in rows), "rows": rows}


def check_efficiency(device: torch.device, s: SimpleNamespace) -> dict[str, Any]:
    """bench_efficiency rows in bf16 + channels-last on the device."""
    opts = SimpleNamespace(
        device=str(device), amp="bf16", channels_last=True, img_size=s.img,
        train_img_size=s.train_img, runs=s.runs, warmup=s.warmup, modes=s.modes,
        max_params=2_000_000_000, fused=False,
    )  # fmt: skip
    rows = []
    for arch in ("n3hl", "convnextv2-nhl"):
        for k in s.k:
            rows += bench_efficiency.rows_for(arch, k, opts)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"ok": True, "amp": "bf16", "channels_last": True, "rows": rows}


def check_grouped_vs_branches(device: torch.device, s: SimpleNamespace) -> dict[str, Any]:
    row = bench_grouped_vs_branches.bench(
        "n3hl", s.branches_k, s.branches_batch, s.img, s.runs, str(device)
    )
    row["speedup"] = row["branches"] / row["grouped"] if row["grouped"] else None
    return {"ok": row["rel_diff"] <= PARITY_TOL, "rows": [row]}


def check_training(device: torch.device, s: SimpleNamespace, data: Path, out: Path) -> dict:
    """Real `nhl train` of n3hl and resnet50, then eval, cutout and ONNX export of n3hl."""
    if not (data / "train").is_dir():
        return {"ok": False, "skipped": f"no image folder at {data} (--data)"}
    runs = out / "runs"
    common = [
        "--data", str(data), "--device", str(device), "--epochs", str(s.epochs),
        "--img-size", str(s.train_img_size), "--batch-size", str(s.train_batch_size),
        "--recipe", "fast", "--project", str(runs), "--exist-ok",
    ]  # fmt: skip
    if device.type == "cuda":
        common += ["--amp", "bf16", "--channels-last"]
    if s.train_batches:
        common += ["--max-train-batches", str(s.train_batches)]
    if s.val_batches:
        common += ["--max-val-batches", str(s.val_batches)]
    result: dict[str, Any] = {"ok": True, "rows": [], "steps": []}
    for name, arch_args in (
        ("n3hl", ["--arch", "n3hl", "--tree", "imagenette-wordnet-L3"]),
        ("resnet50", ["--arch", "resnet50", "--tree", "imagenette-wordnet-L3"]),
    ):
        t0 = time.perf_counter()
        _nhl(["train", *arch_args, *common, "--name", name], result)
        row = {"model": name, "wall_s": time.perf_counter() - t0, **_last_epoch(runs / name)}
        result["rows"].append(row)
    run = runs / "n3hl"
    val = data / "val"
    cap = ["--max-val-batches", str(s.val_batches)] if s.val_batches else []
    ev = _nhl(
        ["eval", str(run), "--data", str(val), "--device", str(device), *cap, "--json"], result
    )
    if ev is not None:
        report = json.loads(ev)
        result["eval_top1"] = report.get("top1")
    expert = out / "expert5"
    _nhl(["cutout", str(run), "-c", ",".join(EXPERT5), "-o", str(expert)], result)
    _nhl(["export", str(expert), "--format", "onnx", "-o", str(out / "expert5.onnx")], result)
    result["ok"] = all(step["rc"] == 0 for step in result["steps"])
    return result


def _nhl(args: list[str], result: dict[str, Any]) -> str | None:
    """Run `python -m nhlcli ARGS`; record its exit code (and the tail of stderr when it failed)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "nhlcli", *args], capture_output=True, text=True, env=env
    )
    step = {"command": "nhl " + " ".join(args[:3]), "rc": proc.returncode}
    if proc.returncode != 0:
        step["stderr"] = proc.stderr[-2000:]
    result["steps"].append(step)
    return proc.stdout if proc.returncode == 0 else None


def _last_epoch(run: Path) -> dict[str, Any]:
    """The last row of a run's results.csv (top-1, images/s, ...), as numbers where they are."""
    path = run / "results.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out: dict[str, Any] = {}
    for key, value in rows[-1].items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


# ------------------------------------------------------------------------------------- report
def run_section(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as e:  # a failed section is a finding: record it and go on
        result = {
            "ok": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{name}: {'ok' if result.get('ok') else 'FAILED'} ({result['seconds']} s)", flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# nhl GPU check ({report['device_name']})", ""]
    lines += [f"- {k}: {report[k]}" for k in ("device", "torch", "smoke", "total_s")]
    for name, section in report["sections"].items():
        state = "ok" if section.get("ok") else "FAILED"
        lines += ["", f"## {name}: {state} ({section['seconds']} s)", ""]
        for key in ("error", "skipped", "eval_top1", "tolerance"):
            if key in section:
                lines.append(f"- {key}: {section[key]}")
        rows = section.get("rows") or []
        if rows:
            keys = [k for k in rows[0] if not isinstance(rows[0][k], dict | list)]
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            for row in rows:
                lines.append("| " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
        for step in section.get("steps", []):
            lines.append(f"- `{step['command']}`: exit {step['rc']}")
            if "stderr" in step:
                lines.append("  ```\n  " + step["stderr"].strip().replace("\n", "\n  ") + "\n  ```")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: the whole check in < 1 min")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="train/ and val/ folders")
    ap.add_argument("--out", type=Path, default=Path("gpu-check"))
    ap.add_argument(
        "--sections", nargs="+",
        default=["parity", "bf16_step", "efficiency", "grouped_vs_branches", "training"],
    )  # fmt: skip
    opts = ap.parse_args(argv)
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    s = sizes(opts.smoke)
    opts.out.mkdir(parents=True, exist_ok=True)
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "parity": lambda: check_parity(device, s),
        "bf16_step": lambda: check_bf16_step(device, s),
        "efficiency": lambda: check_efficiency(device, s),
        "grouped_vs_branches": lambda: check_grouped_vs_branches(device, s),
        "training": lambda: check_training(device, s, opts.data, opts.out),
    }
    t0 = time.perf_counter()
    results = {name: run_section(name, sections[name]) for name in opts.sections}
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "smoke": opts.smoke,
        "total_s": round(time.perf_counter() - t0, 1),
        "sections": results,
    }
    (opts.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (opts.out / "report.md").write_text(markdown(report))
    print(f"report: {opts.out / 'report.md'}")
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
