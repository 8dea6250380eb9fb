"""A training run's checkpoints are real folders of real files: `best/` and `last/` copy with
`cp -r` or `shutil.copytree` and evaluate the same; a run folder copied whole resumes; runs of the
older layout (symlinks into `.checkpoints/`) still load, resume, and are converted."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import copy_sample, one_thread
from safetensors.torch import load_file

import nhlcli as nhl
from nhlcli.training.checkpointing import OLD_STORE, link_tree, load_train_state

CLASSES = ["n01440764", "n02102040"]  # two classes keep phl-small's checkpoints small (12 MB)
FILES = ("model.safetensors", "config.json", "train_state.pt")

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def tiny(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("tiny"), 4, 2, CLASSES)


@pytest.fixture(autouse=True)
def _outputs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nhl eval` writes runs/eval/NAME under the working directory: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)


def without(report: dict[str, object]) -> dict[str, object]:
    """An evaluation report less what names the model folder and the output folder."""
    return {k: v for k, v in report.items() if k not in ("checkpoint", "output_dir")}


def train_args(data: Path, project: Path, name: str, epochs: int) -> list[object]:
    return [
        "train", "--arch", "phl-small", "--data", data, "--epochs", epochs, "--batch-size", "4",
        "--max-train-batches", "2", "--randaugment-n", "0", "--deterministic", "--img-size", "32",
        "--workers", "0", "--max-val-batches", "1", "--project", project, "--name", name,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run with EMA and a kept checkpoint of every epoch."""
    from nhlcli.cli.app import main

    project = tmp_path_factory.mktemp("runs")
    args = [*train_args(tiny, project, "exp", 2), "--ema", "0.5", "--save-every", "1", "--json"]
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 0
    return project / "exp"


def regular_files(folder: Path) -> dict[str, os.stat_result]:
    """Every entry under `folder` by relative path, asserting none is a link."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        assert not stat.S_ISLNK(st.st_mode), f"{p} is a symlink"
        out[str(p.relative_to(folder))] = st
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoints_are_real_folders_of_real_files(run: Path) -> None:
    names = sorted(os.listdir(run))
    for tag in ("last", "best", "last-ema", "best-ema", "epoch-0001", "epoch-0002"):
        assert tag in names
        assert not (run / tag).is_symlink() and (run / tag).is_dir(), tag
        entries = regular_files(run / tag)
        for f in ("model.safetensors", "config.json"):
            assert stat.S_ISREG(entries[f].st_mode), f"{tag}/{f}"
    for tag in ("last", "best", "epoch-0001", "epoch-0002"):
        assert set(FILES) | {"ema", "ema/model.safetensors", "ema/config.json"} == set(
            regular_files(run / tag)
        )
    # no hidden store, no leftovers of a save: what `ls -a` shows is what there is
    assert [n for n in names if n.startswith(".")] == [".lock"]
    # one epoch written once: its names share the files (hard links on one file system)
    assert os.path.samefile(
        run / "last" / "model.safetensors", run / "epoch-0002" / "model.safetensors"
    )
    assert os.path.samefile(run / "last-ema" / "config.json", run / "last" / "ema" / "config.json")
    assert load_train_state(run / "last")["epoch"] == 2
    assert load_train_state(run / "epoch-0001")["epoch"] == 1


def test_a_copied_best_folder_evaluates_the_same(
    run: Path, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(run / "best", tmp_path / "tree-copy")
    (tmp_path / "cp").mkdir()
    subprocess.run(["cp", "-r", str(run / "best"), str(tmp_path / "cp")], check=True)
    copies = [tmp_path / "tree-copy", tmp_path / "cp" / "best"]

    def report(model: Path) -> dict[str, object]:
        return without(nhl.evaluate(model, tiny, workers=0).to_dict())

    original = report(run / "best")
    code, out, err = run_cli(
        ["eval", run / "best", "--data", tiny, "--workers", "0", "--json"], capsys
    )
    assert code == 0, err
    cli_original = without(json.loads(out))
    for copy in copies:
        assert same_weights(copy, run / "best")
        assert report(copy) == original
        code, out, err = run_cli(["eval", copy, "--data", tiny, "--workers", "0", "--json"], capsys)
        assert code == 0, err
        assert without(json.loads(out)) == cli_original


def old_layout(run: Path, dest: Path) -> Path:
    """`run` as the older code wrote it: tags are relative symlinks into `.checkpoints/`."""
    dest.mkdir()
    for name in ("args.yaml", "results.csv", "results.png", "data.json"):
        shutil.copy2(run / name, dest / name)
    store = dest / OLD_STORE
    store.mkdir()
    best_epoch = load_train_state(run / "best")["epoch"]
    for epoch in (1, 2):
        shutil.copytree(run / f"epoch-{epoch:04d}", store / f"epoch-{epoch:04d}")
    os.symlink(f"{OLD_STORE}/epoch-0002", dest / "last", target_is_directory=True)
    os.symlink(f"{OLD_STORE}/epoch-{best_epoch:04d}", dest / "best", target_is_directory=True)
    os.symlink(f"{OLD_STORE}/epoch-0002/ema", dest / "last-ema", target_is_directory=True)
    os.symlink(f"{OLD_STORE}/epoch-0001", dest / "epoch-0001", target_is_directory=True)
    os.symlink(f"{OLD_STORE}/epoch-0001", dest / ".last.link-99", target_is_directory=True)
    (store / ".tmp-epoch-0003-x").mkdir()  # what a kill during that layout's save left
    return dest


def test_an_old_symlink_run_loads_resumes_and_is_converted(
    run: Path, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = old_layout(run, tmp_path / "old")
    assert nhl.load_model(old).num_classes == 2  # the run stands for its best checkpoint
    assert same_weights(old / "best", run / "best")
    code, _, err = run_cli(["eval", old, "--data", tiny, "--workers", "0", "--json"], capsys)
    assert code == 0, err
    code, _, err = run_cli(
        ["train", "--resume", old, "--epochs", "3", "--ema", "0.5", "--json"], capsys
    )
    assert code == 0, err
    assert load_train_state(old / "last")["epoch"] == 3
    # the first save turned every link into a folder of the same files and removed the store
    assert not (old / OLD_STORE).exists()
    assert sorted(n for n in os.listdir(old) if n.startswith(".")) == [".lock"]
    for tag in ("last", "best", "last-ema", "epoch-0001"):
        assert not (old / tag).is_symlink() and (old / tag / "model.safetensors").is_file(), tag
        regular_files(old / tag)
    assert same_weights(old / "epoch-0001", run / "epoch-0001")


def test_files_on_another_file_system_are_copied(tmp_path: Path) -> None:
    """Where a hard link is impossible (here: across two file systems, EXDEV), files are copied."""
    from test_write_failures import tmpfs

    source = tmp_path / "source"
    (source / "ema").mkdir(parents=True)
    (source / "model.safetensors").write_bytes(b"weights")
    (source / "ema" / "config.json").write_text("{}")
    with tmpfs(tmp_path / "other", "size=1m") as other:
        (other / "last").mkdir()
        link_tree(source, other / "last")
        assert (other / "last" / "model.safetensors").read_bytes() == b"weights"
        assert (other / "last" / "ema" / "config.json").read_text() == "{}"
        assert set(regular_files(other / "last")) == {"model.safetensors", "ema", "ema/config.json"}


def test_a_run_folder_copied_with_cp_resumes(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(Last in this file: it resumes the module's run itself, as the reference.)"""
    subprocess.run(["cp", "-r", str(run), str(tmp_path / "moved")], check=True)
    moved = tmp_path / "moved"
    # and as a save killed between its two renames (where no atomic exchange exists) leaves it
    os.rename(moved / "last", moved / ".last.old")
    (moved / ".tmp-epoch-0003-x").mkdir()
    before = weights(run / "last")
    code, _, err = run_cli(["train", "--resume", moved, "--epochs", "3", "--json"], capsys)
    assert code == 0, err
    assert load_train_state(moved / "last")["epoch"] == 3
    assert not same_weights(moved / "last", moved / "epoch-0002")
    regular_files(moved / "last")
    assert sorted(n for n in os.listdir(moved) if n.startswith(".")) == [".lock"]
    # the original is untouched, and resumed in its own place it ends where the copy ended
    assert all(torch.equal(v, weights(run / "last")[k]) for k, v in before.items())
    code, _, err = run_cli(["train", "--resume", run, "--epochs", "3", "--json"], capsys)
    assert code == 0, err
    assert same_weights(moved / "last", run / "last")
    assert same_weights(moved / "last-ema", run / "last-ema")
