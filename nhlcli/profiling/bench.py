"""`nhl bench`: images per second of models, experts and exported files, against a baseline.

Targets are model/expert folders (or training runs), exported `.onnx` files (fp32 or int8), or
preset names (random weights, e.g. ``resnet50``). For every batch size, every (target, runtime,
precision) row and the baseline at each precision are timed **interleaved** with the timing code
of `nhlcli.profiling.latency` (`time_runners`: warm-up runs, then run r of every row before run
r + 1), so a change of the machine's load hits all rows alike.

* runtime ``torch``: the PyTorch model (folders and presets), fp32 or bf16 (autocast,
  `nhlcli.precision`; refused on CPUs without bf16). An ONNX file has no torch runtime.
* runtime ``onnxruntime``: an `.onnx` file as it is (its precision is the file's: int8 when
  `nhl export --quantize int8` wrote it), or a folder exported to a temporary fp32 ONNX file.
* precision ``int8`` selects int8 ONNX files; a folder is not quantised here (that needs
  calibration images: export it with `nhl export --quantize int8` and bench the file).

Each row: median / min / max ms per batch and the spread (slowest runs above the median), images
per second, GMACs per image (nhl's analytic count for the network; the same for every precision)
and GMAC/s; `ratio` is the row's images/s over the baseline's at the same batch size and precision
(None where the baseline has no such row, e.g. int8), `efficiency` its GMAC/s over the baseline's.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nhlcli.errors import NhlError
from nhlcli.precision import PRECISIONS, check_precision
from nhlcli.profiling.latency import BUSY_SPREAD, summary, time_runners, torch_runner

RUNTIMES = ("torch", "onnxruntime")
BENCH_PRECISIONS = (*PRECISIONS, "int8")
COLUMNS = (
    "name", "runtime", "precision", "batch_size", "ms_median", "ms_min", "ms_max", "spread",
    "images_per_s", "gmacs", "gmac_per_s", "ratio", "efficiency", "baseline",
)  # fmt: skip


@dataclass
class Target:
    """One thing to time: a torch model or an ONNX file, with its GMACs per image."""

    name: str
    kind: str  # torch | onnx
    img_size: int
    gmacs: float | None
    model: Any = None  # HierNet (torch)
    onnx_path: Path | None = None
    onnx_precision: str = "fp32"
    tree: Any = None


@dataclass
class BenchReport:
    rows: list[dict[str, Any]]
    runs: int
    warmup: int
    threads: int
    baseline: str | None
    noisy: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def csv_text(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: r.get(k) for k in COLUMNS})
        return buf.getvalue()

    def write(self, folder: str | Path) -> Path:
        """bench.csv and bench.json in `folder` (created), written atomically."""
        from nhlcli.fileio import write_bytes_atomic

        out = Path(folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(out / "bench.csv", self.csv_text().encode())
            write_bytes_atomic(out / "bench.json", json.dumps(self.to_dict(), indent=2).encode())
        except OSError as e:
            raise NhlError(f"cannot write {out}: {e.strerror or e}") from None
        return out


def _gmacs(model: Any, size: int) -> float:
    from nhlcli.profiling.compose import compose_profile

    return compose_profile(model.preset, model.nodes_per_level(), model.num_classes, size).gmacs


def open_target(spec: str, img_size: int | None = None, tree: Any = None) -> Target:
    """A folder / run, an .onnx file, or a preset name (built on `tree`, random weights)."""
    from nhlcli.checkpoint import load_model
    from nhlcli.checkpoint_dirs import resolve_checkpoint
    from nhlcli.model.config import check_img_size
    from nhlcli.model.network import build_model
    from nhlcli.model.rebuild import model_from_config

    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        from nhlcli.exporters.metadata import read_onnx_info

        info = read_onnx_info(path)
        gmacs = None
        if info.config:
            with torch.device("meta"):
                gmacs = _gmacs(model_from_config(info.config, meta=True), info.img_size)
        precision = "int8" if info.export.get("quantization") else "fp32"
        return Target(path.name, "onnx", info.img_size, gmacs, onnx_path=path,
                      onnx_precision=precision)  # fmt: skip
    if path.exists():
        model = load_model(resolve_checkpoint(path))
        name = path.name or str(path)
    else:
        from nhlcli.model.presets import get_preset

        preset = get_preset(spec)  # NhlError for an unknown name
        if tree is None:
            raise NhlError(f"{spec}: a preset needs a model or expert to take its classes from")
        model = build_model(preset, tree, img_size=img_size or 224)
        name = spec
    size = check_img_size(img_size or model.img_size, "--img-size")
    return Target(name, "torch", size, _gmacs(model, size), model=model.eval(), tree=model.tree)


def _onnx_runner(path: Path, batch: int, size: int) -> Callable[[], float]:
    import time

    from nhlcli.exporters.onnx_runtime import fixed_batch, open_session

    # ONNX Runtime's threads spin-wait after each run by default; interleaved with torch rows,
    # that spinning takes the cores of the next row's run. Timing here is one run at a time.
    session = open_session(path, path.name, spinning=False)
    inp = session.get_inputs()[0]
    fixed = fixed_batch(session)
    if fixed is not None and fixed != batch:
        raise NhlError(f"{path.name} was exported for batch {fixed}; bench it with --batch-size "
                       f"{fixed} or export it with --dynamic-batch")  # fmt: skip
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)

    def run() -> float:
        t0 = time.perf_counter()
        session.run(None, {inp.name: x})
        return (time.perf_counter() - t0) * 1000.0

    return run


def bench(
    targets: Sequence[str],
    batch_sizes: Sequence[int] = (1, 32),
    precisions: Sequence[str] = ("fp32",),
    runtimes: Sequence[str] = ("torch", "onnxruntime"),
    baseline: str | None = "resnet50",
    img_size: int | None = None,
    runs: int = 20,
    warmup: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> BenchReport:
    """Time every target at every batch size, runtime and precision that applies (module doc)."""
    from nhlcli.exporters.exporter import export_model

    if not targets:
        raise NhlError("give at least one model, expert or .onnx file to bench")
    for p in precisions:
        if p not in BENCH_PRECISIONS:
            raise NhlError(f"unknown --precision '{p}' (choose from {', '.join(BENCH_PRECISIONS)})")
        if p != "int8":
            check_precision(p)
    for r in runtimes:
        if r not in RUNTIMES:
            raise NhlError(f"unknown --runtime '{r}' (choose from {', '.join(RUNTIMES)})")
    if any(b < 1 for b in batch_sizes) or not batch_sizes:
        raise NhlError("--batch-size must be at least 1")
    opened = [open_target(t, img_size) for t in targets]
    tree = next((t.tree for t in opened if t.tree is not None), None)
    size = img_size or opened[0].img_size
    if baseline:
        if tree is None:  # only ONNX files: a flat tree of the first file's classes
            from nhlcli.exporters.metadata import read_onnx_info
            from nhlcli.hierarchy.tree import Tree, TreeNode

            info = read_onnx_info(opened[0].onnx_path or "")
            tree = Tree([TreeNode(c["id"], c["name"], None) for c in info.classes])
        base = open_target(baseline, size, tree)
        base.name = f"{baseline} (baseline)"
    skipped: list[str] = []
    rows: list[dict[str, Any]] = []
    noisy: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nhl-bench-") as tmp:
        plans: list[tuple[Target, str, str]] = []  # (target, runtime, precision)
        for t in opened:
            for runtime in runtimes:
                for p in precisions:
                    if t.kind == "onnx":
                        if runtime == "onnxruntime" and p == t.onnx_precision:
                            plans.append((t, runtime, p))
                    elif runtime == "torch" and p in PRECISIONS:
                        plans.append((t, runtime, p))
                    elif runtime == "onnxruntime" and p == "fp32":
                        t.onnx_path = Path(tmp) / f"{len(plans)}.onnx"
                        export_model(t.model, t.onnx_path, "onnx", dynamic_batch=True)
                        plans.append((t, runtime, p))
            if not any(pl[0] is t for pl in plans):
                skipped.append(f"{t.name}: no row for runtime {'/'.join(runtimes)} and precision "
                               f"{'/'.join(precisions)}")  # fmt: skip
        if baseline:
            for p in precisions:
                if p in PRECISIONS and "torch" in runtimes:
                    plans.append((base, "torch", p))
        total = len(batch_sizes) * len(plans) * (runs + warmup)
        done = 0

        def step(n: int, _total: int) -> None:
            if progress is not None:
                progress(done + n, total)

        for batch in batch_sizes:
            runners: dict[str, Callable[[], float]] = {}
            for i, (t, runtime, p) in enumerate(plans):
                key = f"{i}"
                if runtime == "torch":
                    runners[key] = torch_runner(t.model, batch, t.img_size, torch.device("cpu"), p)
                else:
                    runners[key] = _onnx_runner(t.onnx_path, batch, t.img_size)  # type: ignore[arg-type]
            times = time_runners(runners, runs, warmup, step)
            done += len(plans) * (runs + warmup)
            base_rate: dict[str, tuple[float, float | None]] = {}
            for i, (t, runtime, p) in enumerate(plans):
                st = summary(times[str(i)])
                ips = batch / (st["median"] / 1000.0)
                rate = ips * t.gmacs if t.gmacs is not None else None
                row: dict[str, Any] = {
                    "name": t.name, "runtime": runtime, "precision": p, "batch_size": batch,
                    "ms_median": st["median"], "ms_min": st["min"], "ms_max": st["max"],
                    "spread": st["spread"], "images_per_s": ips, "gmacs": t.gmacs,
                    "gmac_per_s": rate,
                    "ratio": None, "efficiency": None, "baseline": baseline and t is base,
                }  # fmt: skip
                if baseline and t is base:
                    base_rate[p] = (ips, rate)
                if st["spread"] > BUSY_SPREAD:
                    noisy.append(f"{t.name} {runtime} {p} batch {batch}")
                rows.append(row)
            for row in rows[-len(plans) :]:
                if row["precision"] in base_rate:
                    b_ips, b_rate = base_rate[row["precision"]]
                    row["ratio"] = row["images_per_s"] / b_ips
                    if b_rate and row["gmac_per_s"] is not None:
                        row["efficiency"] = row["gmac_per_s"] / b_rate
    return BenchReport(rows, runs, warmup, torch.get_num_threads(), baseline, noisy, skipped)
