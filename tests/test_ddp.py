"""Distributed training on CPU: `nhl train --devices 2` starts torchrun, 2 gloo processes on
127.0.0.1, DistributedDataParallel; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from imagenette_sample import copy_sample, small_tree

from nhlcli.training.checkpointing import load_checkpoint_model, load_train_state
from nhlcli.training.rundir import read_args, read_results

REPO = Path(__file__).resolve().parents[1]
# `nhl train --devices 2` on the CPU, as a user starts it
PY = sys.executable
LAUNCH = [PY, "-m", "nhlcli", "train", "--devices", "2", "--device", "cpu", "--arch", "n3hl"]


def test_two_process_gloo_run(imagenette_dir: Path, tmp_path: Path) -> None:
    data = copy_sample(imagenette_dir, tmp_path / "nette", 2, 1)
    tree = tmp_path / "tree.json"
    small_tree().save(tree)
    cmd = [
        *LAUNCH,
        "--tree",
        str(tree),
        "--data",
        str(data),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--img-size",
        "32",
        "--workers",
        "0",
        "--max-train-batches",
        "2",
        "--project",
        str(tmp_path / "runs"),
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # rank 0 alone prints
    run = tmp_path / "runs" / "exp"
    assert result["run_dir"] == str(run)
    assert sorted(os.listdir(tmp_path / "runs")) == ["exp"]  # rank 1 made no run directory
    # each of 2 ranks took 2 batches of 8/2 = 4 images per epoch: 16 images, all counted
    assert [r["train_images"] for r in result["history"]] == [16, 16]
    assert len(read_results(run)) == 2
    # the given settings reached the ranks: recipe auto decided there, as in one process
    assert read_args(run)["recipe_auto"]["reason"] == "4 optimizer steps < 10,000"
    state = load_train_state(run / "last")
    assert state["epoch"] == 2 and len(state["rng"]) == 2  # both ranks' RNG states
    model = load_checkpoint_model(run / "last")
    assert model.num_classes == 10 and not any(k.startswith("module.") for k in model.state_dict())


def test_devices_rejects_bad_input_before_launch(tmp_path: Path) -> None:
    cmd = [
        *LAUNCH,
        "--data",
        str(tmp_path / "missing"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "data folder not found" in proc.stderr


pytestmark = pytest.mark.slow
