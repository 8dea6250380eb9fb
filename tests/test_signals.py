"""Ctrl-C (SIGINT) and SIGTERM sent to real `nhl` processes.

A training run keeps its folder once it has a checkpoint, says where it stopped and how to resume,
exits 130 (SIGINT) or 143 (SIGTERM), and resumes to the same weights as an uninterrupted run.
Before its first checkpoint, and for every other command, an interrupt leaves nothing half-written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import copy_sample, one_thread
from safetensors.torch import load_file

from nhlcli.training.checkpointing import load_train_state
from nhlcli.training.rundir import read_results

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["n01440764", "n02102040"]  # two classes keep phl-small's checkpoints small (12 MB)
EPOCHS = 3

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def tiny(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("tiny"), 4, 2, CLASSES)


def train_args(data: Path, project: Path, name: str) -> list[str]:
    return [
        "train", "--arch", "phl-small", "--data", str(data), "--epochs", str(EPOCHS),
        "--batch-size", "4", "--max-train-batches", "2", "--randaugment-n", "0",
        "--deterministic", "--img-size", "32", "--workers", "0", "--max-val-batches", "1",
        "--project", str(project), "--name", name,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The final weights of the same run, never interrupted."""
    from nhlcli.cli.app import main

    project = tmp_path_factory.mktemp("straight")
    with pytest.raises(SystemExit) as exit_:
        main([*train_args(tiny, project, "straight"), "--json"])
    assert exit_.value.code == 0
    return load_file(str(project / "straight" / "last" / "model.safetensors"))


def start(args: list[str], **env: str) -> subprocess.Popen[str]:
    """`nhl ARGS` in a subprocess, with `env` added to this one's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "nhlcli", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], signum: int, timeout: float = 240
) -> str:
    """Send `signum` to `proc` as soon as `ready()`; return its stderr once it has exited."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"exited with {proc.returncode} first: {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.002)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def stopped_by(
    proc: subprocess.Popen[str], ready: Callable[[], bool], signum: int, code: int
) -> tuple[str, str]:
    """`signal_when`, then: `proc` exited with `code` and no traceback; (stderr, its last line)."""
    err = signal_when(proc, ready, signum)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    return err, err.strip().splitlines()[-1]


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of unfinished writes anywhere under `folder`."""
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_training_keeps_its_run_and_resumes_exactly(
    tiny: Path,
    uninterrupted: dict[str, torch.Tensor],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    code: int,
) -> None:
    run = tmp_path / "run"
    proc = start(train_args(tiny, tmp_path, "run"))
    err, message = stopped_by(proc, lambda: (run / "last").exists(), signum, code)
    done = load_train_state(run / "last")["epoch"]
    assert 1 <= done < EPOCHS, err
    assert message == (
        f"interrupted: {run} has {done} of {EPOCHS} epochs checkpointed; "
        f"continue with: nhl train --resume {run}"
    )
    # the run folder is kept whole: settings, results of every checkpointed epoch, the picture
    assert (run / "args.yaml").is_file()
    assert [int(r["epoch"]) for r in read_results(run)] == list(range(1, done + 1))
    assert (run / "results.png").is_file()
    assert not (run / ".incomplete").exists()
    assert leftovers(run) == []
    # the printed command continues it to the end, to the weights of an uninterrupted run
    resume = message.split("continue with: ")[1].split()
    assert resume[:3] == ["nhl", "train", "--resume"]
    rc, _, err = run_cli(resume[1:], capsys)
    assert rc == 0, err
    assert load_train_state(run / "last")["epoch"] == EPOCHS
    resumed = load_file(str(run / "last" / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    different = [k for k, v in uninterrupted.items() if not torch.equal(resumed[k], v)]
    assert different == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_before_the_first_checkpoint_removes_the_new_run(
    tiny: Path, tmp_path: Path, signum: int, code: int
) -> None:
    run = tmp_path / "early"
    proc = start(train_args(tiny, tmp_path, "early"))
    _, message = stopped_by(proc, lambda: (run / "args.yaml").exists(), signum, code)
    assert message == (
        f"interrupted before the first checkpoint: nothing to resume "
        f"(removed what it had created: {run})"
    )
    assert not run.exists()


def test_sigterm_during_a_checkpoint_write_leaves_nothing(tmp_path: Path) -> None:
    """`nhl init` of a 60-million-parameter model, stopped while its folder is being written."""
    out = tmp_path / "model"
    proc = start(["init", "--arch", "resnet152", "--classes", "imagenette", "-o", str(out)])
    _, message = stopped_by(proc, lambda: bool(leftovers(tmp_path)), signal.SIGTERM, 143)
    assert message == "interrupted"
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_build_tree_exits_143_and_writes_nothing(tmp_path: Path) -> None:
    from llm_server import LLMServer, Reply

    out = tmp_path / "tree.json"
    args = [
        "build-tree", "--source", "llm", "--classes", "imagenette", "--levels", "2",
        "--cache-dir", str(tmp_path / "cache"), "-o", str(out),
    ]  # fmt: skip
    with LLMServer([Reply.text("{}", delay=30)]) as server:
        proc = start([*args, "--base-url", server.url], OPENAI_API_KEY="local")
        _, message = stopped_by(proc, lambda: bool(server.requests), signal.SIGTERM, 143)
    assert message == "interrupted"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
