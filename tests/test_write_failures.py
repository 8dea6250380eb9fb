"""Writes the disk refuses, and data nothing can be learned or measured from: one line, exit 2,
nothing half-written.

Real file systems: a path whose parent is a file, a read-only tmpfs and a full 1 MB tmpfs (tmpfs
needs root and a working `mount`; otherwise those tests skip and say why).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import copy_sample, one_thread
from model_helpers import named_tree, randomize_bn, tiny_preset

from nhlcli.checkpoint import save_model
from nhlcli.model.network import HierNet

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)

INIT = ["init", "--arch", "phl-small", "--classes", "imagenette", "--img-size", "32"]  # 38 MB
TRAIN = [
    "train", "--arch", "phl-small", "--epochs", "1", "--batch-size", "4",
    "--max-train-batches", "1", "--img-size", "32", "--workers", "0", "--max-val-batches", "1",
]  # fmt: skip


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at `where` with `options` (skips the test where mount is refused)."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a tmpfs needs root (mount -t tmpfs)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused: {done.stderr.strip()}")
    try:
        yield where
    finally:  # lazily where a file is still open, so no mount outlives the test
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


@contextlib.contextmanager
def read_only_dir(where: Path) -> Iterator[Path]:
    """A folder nothing can be written into: a read-only tmpfs as root, chmod 555 otherwise."""
    if os.geteuid() != 0:
        where.mkdir()
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)
        return
    with tmpfs(where, "ro,size=1m") as folder:
        yield folder


def one_line_error(args: list[object], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.strip().startswith("error: "), err
    return err.strip()


def tiny_model_dir(where: Path) -> Path:
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), named_tree(), img_size=32)
    randomize_bn(model)
    return save_model(model, where)


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ----------------------------------------------------------------------------- checkpoint folders
def test_init_and_cutout_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    err = one_line_error([*INIT, "-o", blocker / "model"], capsys)
    assert err == f"error: cannot write {blocker / 'model'}: {blocker} is a file, not a folder"
    model = tiny_model_dir(tmp_path / "m")
    err = one_line_error(["cutout", model, "-c", "tabby", "-o", blocker / "sub" / "e"], capsys)
    assert err == f"error: cannot write {blocker / 'sub' / 'e'}: {blocker} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m"]
    assert blocker.read_text() == "not a folder"


def test_init_and_cutout_into_a_read_only_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_model_dir(tmp_path / "m")
    with read_only_dir(tmp_path / "ro") as ro:
        err = one_line_error([*INIT, "-o", ro / "model"], capsys)
        assert err in (
            f"error: cannot write {ro / 'model'}: Read-only file system",
            f"error: cannot write {ro / 'model'}: Permission denied",  # chmod 555, not root
        )
        err = one_line_error(["cutout", model, "-c", "tabby", "-o", ro / "e"], capsys)
        assert f"cannot write {ro / 'e'}: " in err
        assert everything_under(ro) == []


def test_init_onto_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tmpfs(tmp_path / "small", "size=1m") as small:
        err = one_line_error([*INIT, "-o", small / "model"], capsys)
        assert err == f"error: cannot write {small / 'model'}: No space left on device"
        assert everything_under(small) == []  # no half-written temporary folder


@pytest.fixture(scope="module")
def tiny(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(
        imagenette_dir, tmp_path_factory.mktemp("tiny"), 2, 1, ["n01440764", "n02102040"]
    )


# 1 MB: the weights (12.4 MB) do not fit; 16 MB: they do, the training state (12.4 MB) does not
@pytest.mark.parametrize("size", ["1m", "16m"])
def test_a_full_disk_during_a_training_checkpoint(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    with tmpfs(tmp_path / "small", f"size={size}") as small:
        err = one_line_error([*TRAIN, "--data", tiny, "--project", small, "--name", "r"], capsys)
        checkpoint = small / "r" / "last"
        assert err == f"error: cannot write checkpoint {checkpoint}: No space left on device"
        # nothing half-written: the run is marked incomplete, without a checkpoint or a temporary
        assert everything_under(small) == [
            "r", "r/.incomplete", "r/.lock", "r/args.yaml", "r/data.json",
        ]  # fmt: skip


# ----------------------------------------------------------------------------- unreadable data
def garbage_folder(root: Path, classes: list[str], per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                (root / split / c / f"{i}.jpg").write_bytes(b"not a JPEG at all " * 20)
    return root


def test_training_on_only_unreadable_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = garbage_folder(tmp_path / "data", ["n01440764", "n02102040"])
    err = one_line_error([*TRAIN, "--data", data, "--project", tmp_path / "runs"], capsys)
    assert err.startswith("error: no readable image in training batch 1 of epoch 1: ")
    assert str(data / "train") in err


def test_eval_on_only_unreadable_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_model_dir(tmp_path / "m")
    data = garbage_folder(tmp_path / "data", named_tree().class_ids)
    runs = tmp_path / "runs"
    err = one_line_error(["eval", model, "--data", data, "--project", runs], capsys)
    assert err.startswith(f"error: no readable image in {data / 'val'}: all 10 evaluated file(s) ")
    assert not runs.exists()
