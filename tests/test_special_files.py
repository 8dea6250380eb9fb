"""Files that are not regular files: real FIFOs (mkfifo) and character devices (mknod, as root).

No writer replaces one, and no reader opens one (a FIFO blocks the opener until a writer comes;
/dev/zero never ends). Every test that could hang runs under an alarm, so a regression fails
instead of hanging the suite.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE

from nhlcli.cli.app import main
from nhlcli.data.dataset import ImageFileDataset
from nhlcli.errors import NhlError
from nhlcli.fileio import check_output, write_text_atomic
from nhlcli.textio import read_text

TENCH = IMAGENETTE[0][0]


class Hung(BaseException):
    """Not an OSError: the readers under test must not be able to swallow it."""


@contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """`Hung` in the main thread when the block takes longer (a blocked open of a FIFO)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s: a special file was opened")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def char_device(path: Path, minor: int = 3) -> Path:
    """A character device node: 1,3 is what /dev/null is, 1,5 what /dev/zero is."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("creating a device node needs root (mknod)")
    return path


def is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture(scope="module")
def model(tree_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 32 px model folder (predictions need not be good, only produced)."""
    out = tmp_path_factory.mktemp("model") / "m"
    args = ["init", "--arch", "n3hl", "--tree", tree_file, "--img-size", "32", "-o", out]
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    assert not done.value.code
    return out


@pytest.fixture
def images(imagenette_dir: Path, tmp_path: Path) -> Path:
    """A folder of two real tench images."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in sorted((imagenette_dir / "val" / TENCH).iterdir())[:2]:
        shutil.copyfile(f, folder / f.name)
    return folder


# ------------------------------------------------------------------------------------------ writers
def test_writers_never_replace_a_fifo_or_a_folder(tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "out.csv")
    with pytest.raises(NhlError, match=r"is a FIFO \(named pipe\), not a regular file"):
        write_text_atomic(pipe, "path,rank\n")
    assert is_fifo(pipe)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(NhlError, match="is a folder, not a regular file"):
        write_text_atomic(folder, "x")
    check_output(folder, whole_dir=True)  # a folder where a folder output is expected: fine
    with pytest.raises(NhlError, match="is a FIFO"):
        check_output(pipe, whole_dir=True)
    # a regular file, a missing path and a link to a regular file are replaced as before
    (tmp_path / "old.csv").write_text("old", encoding="utf-8")
    write_text_atomic(tmp_path / "old.csv", "new")
    write_text_atomic(tmp_path / "new.csv", "new")
    assert (tmp_path / "old.csv").read_text(encoding="utf-8") == "new"


def test_writers_never_replace_a_character_device(tmp_path: Path) -> None:
    null = char_device(tmp_path / "null")  # what /dev/null is, made here rather than touched
    with pytest.raises(NhlError, match="is a character device, not a regular file"):
        write_text_atomic(null, "x")
    assert is_char_device(null)
    link = tmp_path / "link.csv"
    link.symlink_to(null)  # `--csv /dev/stdout`-style links are judged by what they point to
    with pytest.raises(NhlError, match="is a character device"):
        write_text_atomic(link, "x")
    assert link.is_symlink() and is_char_device(null)


def test_predict_csv_refuses_a_device_and_a_fifo(
    model: Path,
    images: Path,
    tree_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipe = fifo(tmp_path / "n")
    with no_hang():
        code, _, err = run_cli(["predict", model, images, "--csv", pipe], capsys)
    one_line_error(code, err, "refusing to write", "FIFO")
    assert is_fifo(pipe)
    device = char_device(tmp_path / "d")
    code, _, err = run_cli(["predict", model, images, "--csv", device], capsys)
    one_line_error(code, err, "refusing to write", "character device")
    assert is_char_device(device)
    init = ["init", "--arch", "n3hl", "--tree", tree_file, "--img-size", "32", "-o", device]
    code, _, err = run_cli(init, capsys)  # a checkpoint folder output (`-o /dev/null`)
    one_line_error(code, err, "refusing to write", "character device")
    assert is_char_device(device)


def test_predict_csv_dash_prints_the_csv_to_stdout(
    model: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["predict", model, images, "--csv", "-", "--top", "2"], capsys)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "rank", "class", "name", "probability"]
    assert len(rows) == 1 + 2 * 2  # nothing but the CSV: two images, two ranks each
    assert {r[0] for r in rows[1:]} == {str(p) for p in images.iterdir()}
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    code, _, err = run_cli(["predict", model, images, "--csv", "-", "--json"], capsys)
    one_line_error(code, err, "--csv - and --json")


# ------------------------------------------------------------------------------------------ readers
def test_text_readers_refuse_a_fifo(tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "classes.txt")
    with no_hang(), pytest.raises(NhlError, match="is a FIFO"):
        read_text(pipe, "class file")


def test_image_decoding_counts_special_files_as_unreadable(
    imagenette_dir: Path, tmp_path: Path
) -> None:
    good = str(sorted((imagenette_dir / "val" / TENCH).iterdir())[0])
    pipe = str(fifo(tmp_path / "p.jpg"))
    for mode in ("eval", "train"):  # the dataset that evaluation, prediction and training use
        dataset = ImageFileDataset([(pipe, 0), (good, 1)], 32, mode)
        with no_hang():
            item = dataset[0]
        assert item.bad_path == pipe
        assert item.substituted == (mode == "train")  # train: a readable neighbour stands in
        assert dataset[1].bad_path is None
    zero = str(char_device(tmp_path / "z.png", minor=5))  # /dev/zero: reading never ends
    with no_hang():
        assert ImageFileDataset([(zero, 0)], 32, "eval")[0].bad_path == zero


def test_predict_skips_a_fifo_in_a_folder_and_refuses_one_given_directly(
    model: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = fifo(images / "p.jpg")
    with no_hang():
        code, out, err = run_cli(["predict", model, images, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 2 and report["skipped"] == [str(pipe)]
    with no_hang():
        code, _, err = run_cli(["predict", model, pipe], capsys)
    one_line_error(code, err, str(pipe), "is a FIFO")


def test_a_fifo_as_onnx_model_is_one_line(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = fifo(tmp_path / "model.onnx")
    with no_hang():
        code, _, err = run_cli(["predict", pipe, images], capsys)
    one_line_error(code, err, "is a FIFO")
    from nhlcli.exporters.metadata import read_onnx_info

    with no_hang(), pytest.raises(NhlError, match="is a FIFO"):
        read_onnx_info(pipe)
