"""Issue 22's goal table: int8 / bf16 / fp32 experts and ResNet50, accuracy and speed.

An n3hl model (a folder, e.g. from `bench_train_imagenette.py --reuse`; without --model a random
one, then the accuracy rows mean nothing) and a ResNet50 (--resnet, or random) on Imagenette:

1. the 5-class expert is cut out; expert and ResNet50 are exported to fp32 ONNX and to int8 ONNX
   (`nhl export --quantize int8`, calibrated on --calibration-images TRAIN images, never val);
2. accuracy: top-1 of fp32 and int8 files on the val images of their classes (goal: within 1.0
   point);
   The full n3hl is checked the same way (fp32 vs int8 top-1 on all its classes' val images).
3. speed: `nhl.bench` of the expert (torch fp32/bf16), its fp32 and int8 ONNX files and both
   ResNet50 files, interleaved, at --batch-sizes (goals: int8 expert ≥ 2× fp32 ONNX at batch 32,
   ≥ 1.5× at batch 1; against int8 ResNet50 its latency ratio ≤ 1.05× its GMAC ratio).
4. the trunk's share of the expert's latency (torch fp32), unfused and fully fused (`fuse`: the
   trunk's batch norms folded too), trunk and whole expert timed interleaved.
5. with --wide: batch 1 of the wide models (phl-latesp k=100, n2hl k=1000, random weights at
   --wide-size) in torch fp32 (and bf16 where the CPU has it), fp32 ONNX and int8 ONNX, each
   with its efficiency (GMAC/s) against ResNet50 of the same runtime and precision.

    python benchmarks/bench_edge.py --data ../shared/data/imagenette [--model DIR] [--resnet DIR]
        [--img-size 224] [--batch-sizes 1 32] [--runs 20] [--calibration-images 300]
        [--val-per-class N] [--wide] [--wide-size 224] [--out DIR]
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


def trunk_share(expert: torch.nn.Module, size: int, batches: list[int], runs: int) -> None:
    """The trunk's share of the expert's forward time, unfused and fully fused (item 4)."""
    from nhlcli.model.fuse import fuse
    from nhlcli.profiling.latency import summary, time_runners, torch_runner

    cpu = torch.device("cpu")
    versions = {"unfused": expert, "fused": fuse(expert)}
    for b in batches:
        runners = {}
        for name, m in versions.items():
            runners[f"{name} expert"] = torch_runner(m, b, size, cpu)
            runners[f"{name} trunk"] = torch_runner(m.trunk, b, size, cpu)
        ms = {k: summary(v)["median"] for k, v in time_runners(runners, runs, 3).items()}
        for name in versions:
            whole, trunk = ms[f"{name} expert"], ms[f"{name} trunk"]
            print(f"trunk share batch {b} {name}: trunk {trunk:.1f} ms of {whole:.1f} ms "
                  f"= {100 * trunk / whole:.0f} %")  # fmt: skip
        print(f"trunk share batch {b}: fusing makes the trunk "
              f"{ms['unfused trunk'] / ms['fused trunk']:.2f}x and the expert "
              f"{ms['unfused expert'] / ms['fused expert']:.2f}x faster")  # fmt: skip


def wide_rows(data: Path, size: int, runs: int, tmp: Path) -> None:
    """Batch 1 of the wide models against ResNet50 at every precision (item 5)."""
    from bench_efficiency import tree_for

    from nhlcli.exporters.quantize import calibration_batch, quantize_onnx

    calib = calibration_batch(resolve_tree("imagenette-wordnet-L3"), data, 16, size)
    for arch, k in (("phl-latesp", 100), ("n2hl", 1000)):
        tree = tree_for(arch, k)
        targets: list[Path] = []
        for name in (arch, "resnet50"):
            folder = tmp / f"wide-{name}-{k}"
            nhl.save_model(nhl.build_model(name, tree, img_size=size, seed=0), folder)
            fp = nhl.export(folder, "onnx", tmp / f"wide-{name}-{k}.onnx", dynamic_batch=True)
            q = tmp / f"wide-{name}-{k}-int8.onnx"
            q.write_bytes(quantize_onnx(fp.path.read_bytes(), calib, min_agreement=0.0)[0])
            targets += [folder, fp.path, q]
        precisions = ["fp32", "int8"] + (["bf16"] if cpu_bf16_supported() else [])
        report = nhl.bench(
            targets, batch_sizes=[1], precisions=precisions, runtimes=["torch", "onnxruntime"],
            baseline=None, img_size=size, runs=runs,
        )  # fmt: skip
        # the folders give the torch rows, the files the ONNX Runtime rows
        rows = [r for r in report.rows if (r["runtime"] == "torch") != r["name"].endswith(".onnx")]
        for r in rows:
            if r["name"].startswith("wide-resnet50"):
                continue
            base = next(
                b for b in rows if b["name"].startswith("wide-resnet50")
                and (b["runtime"], b["precision"]) == (r["runtime"], r["precision"])
            )  # fmt: skip
            print(f"wide {r['name']} batch 1 {r['runtime']} {r['precision']}: "
                  f"{r['ms_median']:.1f} ms, {r['gmac_per_s']:.1f} GMAC/s vs ResNet50's "
                  f"{base['gmac_per_s']:.1f} ({base['ms_median']:.1f} ms): efficiency "
                  f"{r['gmac_per_s'] / base['gmac_per_s']:.2f}")  # fmt: skip


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
    ap.add_argument("--wide", action="store_true", help="also the wide models at batch 1")
    ap.add_argument("--wide-size", type=int, default=224)
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
    for m in (full, r50):  # a trained model timed at another size (convolutional throughout)
        if m.img_size != o.img_size:
            print(f"note: {m.preset.name} trained at {m.img_size} px, run at {o.img_size} px: its "
                  "accuracy rows are not its accuracy")  # fmt: skip
            m.img_size = o.img_size
    expert = nhl.cutout(full, EXPERT)
    nhl.save_model(expert, tmp / "expert")
    nhl.save_model(r50, tmp / "resnet50")
    nhl.save_model(full, tmp / "n3hl")
    files: dict[str, Path] = {}
    checked = (("expert", EXPERT), ("n3hl", full.class_ids), ("resnet50", r50.class_ids))
    for name, classes in checked:
        fp = nhl.export(tmp / name, "onnx", tmp / f"{name}.onnx", dynamic_batch=True)
        q = nhl.export(
            tmp / name, "onnx", tmp / f"{name}-int8.onnx", dynamic_batch=True, quantize="int8",
            calibration=o.data, calibration_images=o.calibration_images, min_agreement=0.0,
        )  # fmt: skip
        if name != "n3hl":  # the full model is checked for accuracy only
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
        runtimes=["torch", "onnxruntime"], baseline=str(tmp / "resnet50"), img_size=o.img_size,
        runs=o.runs,
        progress=lambda d, t: print(f"bench {d}/{t}", flush=True) if d % 50 == 0 else None,
    )  # fmt: skip
    report.write(o.out)
    for r in report.rows:
        print(f"bench {r['name']} {r['runtime']} {r['precision']} batch {r['batch_size']}: "
              f"{r['ms_median']:.1f} ms (spread {r['spread']:.2f}), {r['images_per_s']:.1f} img/s, "
              f"{r['gmacs']:.3f} GMACs, ratio {r['ratio']}")  # fmt: skip
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
    trunk_share(expert, full.img_size if o.model else o.img_size, o.batch_sizes, o.runs)
    if o.wide:
        wide_rows(o.data, o.wide_size, o.runs, tmp)
    print(json.dumps({"threads": torch.get_num_threads(), "bf16": cpu_bf16_supported(),
                      "out": str(o.out)}))  # fmt: skip


if __name__ == "__main__":
    main()
