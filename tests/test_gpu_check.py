"""The GPU check runs on the CPU (`--smoke`), so it cannot rot before a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section_on_the_cpu(
    tmp_path: Path, imagenette_dir: Path
) -> None:
    out = tmp_path / "check"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
         "--data", str(imagenette_dir), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    failed = {
        n: s.get("error") or s.get("steps") for n, s in report["sections"].items() if not s["ok"]
    }
    assert proc.returncode == 0, (failed, proc.stderr[-2000:])
    assert set(report["sections"]) == {
        "parity", "bf16_step", "efficiency", "grouped_vs_branches", "training",
    }  # fmt: skip
    sections = report["sections"]
    parity = {row["model"] for row in sections["parity"]["rows"]}
    assert {"n3hl", "convnextv2-nhl", "resnet50", "n3hl 3-class cutout"} <= parity
    assert all(row["finite"] for row in sections["bf16_step"]["rows"])
    modes = {(row["model"], row["mode"]) for row in sections["efficiency"]["rows"]}
    assert ("n3hl k=10 5-class expert", "train2") in modes
    assert [row["model"] for row in sections["training"]["rows"]] == ["n3hl", "resnet50"]
    assert (out / "expert5.onnx").is_file()
    assert "## training: ok" in (out / "report.md").read_text()
