"""Issue 22's goal table: int8 / bf16 / fp32 experts and ResNet50, accuracy and speed.

An n3hl model (a folder, e.g. from `bench_train_imagenette.py --reuse`; without --model a random
one, then the accuracy rows mean nothing) and a ResNet50 (--resnet, or random) on Imagenette:

1. the 5-class expert is cut out; expert and ResNet50 are exported to fp32 ONNX and to int8 ONNX
   (`nhl export --quantize int8`, calibrated on --calibration-images TRAIN images, never val);
2. accuracy: top-1 of fp32 and int8 files on the val images of their classes (goal: within 1.0
   point);
3. speed: `nhl.bench` of the expert (torch fp32/bf16), its fp32 and int8 ONNX files and both
   ResNet50 files, interleaved, at --batch-sizes (goals: int8 expert ≥ 2× fp32 ONNX at batch 32,
   ≥ 1.5× at batch 1; against int8 ResNet50 its latency ratio ≤ 1.05× its GMAC ratio).

    python benchmarks/bench_edge.py --data ../shared/data/imagenette [--model DIR] [--resnet DIR]
        [--img-size 224] [--batch-sizes 1 32] [--runs 20] [--calibration-images 300]
        [--val-per-class N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

import nhlcli as nhl
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.precision import cpu_bf16_supported

EXPERT = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079"]


def top1(model_file: Path, val: Path, classes: list[str], per_class: int | None) -> float:
    files = [str(p) for c in classes for p in sorted((val / c).iterdir())[:per_class]]
    report = nhl.predict(model_file, files, top=1, batch_size=32)
    right = sum(Path(p.path).parent.name == p.top[0][0] for p in report.predictions)
    return 100.0 * right / len(report.predictions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--resnet", type=Path)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--calibration-images", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, help="reduced scale: the first N val images")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/edge"))
    o = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    tree = resolve_tree("imagenette-wordnet-L3")
    full = (
        nhl.load_model(o.model)
        if o.model
        else nhl.build_model("n3hl", tree, img_size=o.img_size, seed=0)
    )
    r50 = (
        nhl.load_model(o.resnet)
        if o.resnet
        else nhl.build_model("resnet50", tree, img_size=o.img_size, seed=0)
    )
    expert = nhl.cutout(full, EXPERT)
    nhl.save_model(expert, tmp / "expert")
    nhl.save_model(r50, tmp / "resnet50")
    files: dict[str, Path] = {}
    for name, classes in (("expert", EXPERT), ("resnet50", r50.class_ids)):
        fp = nhl.export(tmp / name, "onnx", tmp / f"{name}.onnx", dynamic_batch=True)
        q = nhl.export(
            tmp / name, "onnx", tmp / f"{name}-int8.onnx", dynamic_batch=True, quantize="int8",
            calibration=o.data, calibration_images=o.calibration_images, min_agreement=0.0,
        )  # fmt: skip
        files[name], files[f"{name}-int8"] = fp.path, q.path
        acc_fp, acc_q = (
            top1(fp.path, o.data / "val", classes, o.val_per_class),
            top1(q.path, o.data / "val", classes, o.val_per_class),
        )
        agree = q.quantization["top1_agreement"] if q.quantization else None
        print(f"accuracy {name}: fp32 {acc_fp:.1f} int8 {acc_q:.1f} (Δ {acc_q - acc_fp:+.1f} "
              f"points; goal |Δ| ≤ 1.0: {'met' if abs(acc_q - acc_fp) <= 1.0 else 'MISSED'}); "
              f"calibration agreement {agree}")  # fmt: skip
    precisions = ["fp32", "int8"] + (["bf16"] if cpu_bf16_supported() else [])
    report = nhl.bench(
        [tmp / "expert", *files.values()], batch_sizes=o.batch_sizes, precisions=precisions,
        runtimes=["torch", "onnxruntime"], baseline="resnet50", img_size=o.img_size, runs=o.runs,
        progress=lambda d, t: print(f"bench {d}/{t}", flush=True) if d % 50 == 0 else None,
    )  # fmt: skip
    report.write(o.out)
    rows = {(r["name"], r["precision"], r["batch_size"]): r for r in report.rows}
    for b in o.batch_sizes:
        fp, q = rows[("expert.onnx", "fp32", b)], rows[("expert-int8.onnx", "int8", b)]
        rq = rows[("resnet50-int8.onnx", "int8", b)]
        speed = fp["ms_median"] / q["ms_median"]
        goal = 2.0 if b >= 32 else 1.5
        lat_ratio = q["ms_median"] / rq["ms_median"]
        mac_ratio = q["gmacs"] / rq["gmacs"]
        print(f"batch {b}: int8 expert {speed:.2f}× fp32 ONNX (goal ≥ {goal}: "
              f"{'met' if speed >= goal else 'MISSED'}); vs int8 ResNet50 latency ratio "
              f"{lat_ratio:.3f} = {lat_ratio / mac_ratio:.2f}× GMAC ratio {mac_ratio:.3f} "
              f"(goal ≤ 1.05: "
              f"{'met' if lat_ratio <= 1.05 * mac_ratio else 'MISSED'})")  # fmt: skip
    print(json.dumps({"threads": torch.get_num_threads(), "bf16": cpu_bf16_supported(),
                      "out": str(o.out)}))  # fmt: skip


if __name__ == "__main__":
    main()
