"""Images decoded right and image folders read right, on real files made here with Pillow/numpy:
16-bit and float images, EXIF orientation, nhl's pixel bound, links in class folders, and the
warning when a resumed run's image folders changed."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread
from PIL import Image

from nhlcli.data.dataset import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageFileDataset,
    ImageRefused,
    decode_square,
)
from nhlcli.data.folders import index_image_folder, scan_images, tree_from_folders
from nhlcli.errors import NhlError
from nhlcli.prediction import list_images

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def decoded(path: Path, size: int = 64) -> np.ndarray:
    """HWC uint8 of a square image decoded at its own size (no resampling)."""
    return decode_square(str(path), size, size).permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------- bit depths
def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = (np.arange(64 * 64, dtype=np.uint32) * 16).astype(np.uint16).reshape(64, 64)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16"  # what Pillow reads a 16-bit grayscale PNG as
    expected = np.rint(values / 257.0).astype(np.uint8)  # 65535 -> 255
    rgb = decoded(path)
    for channel in range(3):
        assert np.array_equal(rgb[:, :, channel], expected)
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) == 256  # a gradient


def test_16_bit_pgm_read_as_mode_i_is_scaled_too(tmp_path: Path) -> None:
    values = (np.arange(32 * 32, dtype=np.uint32) * 64).astype(np.uint16).reshape(32, 32)
    path = tmp_path / "deep.pgm"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode == "I"
    assert np.array_equal(decoded(path, 32)[:, :, 1], np.rint(values / 257.0).astype(np.uint8))


def test_float_tiff_in_0_1_is_scaled_to_0_255(tmp_path: Path) -> None:
    values = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode == "F"
    rgb = decoded(path)
    expected = np.rint(values.astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(rgb[:, :, 0], expected) and np.array_equal(rgb[:, :, 2], expected)
    assert rgb.min() == 0 and rgb.max() == 255


# ---------------------------------------------------------------------------------- orientation
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Stored top half red, bottom half blue, tagged 'rotate 90° clockwise to display' (6): the
    decoded image has red on the right and blue on the left."""
    stored = np.zeros((64, 64, 3), np.uint8)
    stored[:32, :, 0] = 255
    stored[32:, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    with Image.open(path) as img:
        assert img.getexif()[0x0112] == 6
    rgb = decoded(path).astype(int)
    left, right = rgb[:, :24], rgb[:, 40:]
    assert left[..., 2].mean() > 200 and left[..., 0].mean() < 50  # blue
    assert right[..., 0].mean() > 200 and right[..., 2].mean() < 50  # red
    # a wide photo (64 x 32 stored) tagged 6 is tall once upright: the crop keeps its middle rows
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :32, 1] = 255  # left half green: after the rotation it is the top half
    Image.fromarray(wide).save(tmp_path / "wide.jpg", quality=95, exif=exif)
    square = decode_square(str(tmp_path / "wide.jpg"), 32, 32).permute(1, 2, 0).numpy()
    top, bottom = square[:8].astype(int), square[-8:].astype(int)
    assert top[..., 1].mean() > 200 and bottom[..., 1].mean() < 50


def test_corrupt_exif_decodes_as_stored_without_warnings(tmp_path: Path) -> None:
    path = tmp_path / "odd.jpg"
    truncated = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path, exif=truncated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns "Corrupt EXIF data" for this file
        image = decode_square(str(path), 16, 16)
    assert abs(int(image.float().mean()) - 200) <= 2


# --------------------------------------------------------------------------------- pixel bound
def empty_png(path: Path, width: int, height: int) -> Path:
    """A real PNG whose header says width x height; all black, so it compresses to a few KB."""
    Image.new("L", (width, height)).save(path)
    return path


def test_pixel_bound_is_checked_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = empty_png(tmp_path / "big.png", 3000, 2000)
    small = empty_png(tmp_path / "small.png", 100, 80)
    assert big.stat().st_size < 64 * 1024
    monkeypatch.setenv("NHL_MAX_IMAGE_PIXELS", "1000000")
    dataset = ImageFileDataset([(str(big), 0), (str(small), 0)], 32, "eval")
    assert dataset[0].bad_path == str(big)  # in a folder: skipped like an unreadable file
    assert dataset[1].bad_path is None
    with pytest.raises(ImageRefused, match=r"3000x2000 pixels, more than nhl decodes \(1,000,000"):
        decode_square(str(big), 37, 32, dataset.max_pixels)
    with pytest.raises(NhlError) as given:  # named directly: an error, one line
        list_images([big])
    assert "\n" not in str(given.value) and "NHL_MAX_IMAGE_PIXELS" in str(given.value)
    assert list_images([small]) == [str(small)]
    # a JPEG counts at the size draft mode decodes it to: 4000x3000 is 500x375 for 32 px
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (4000, 3000)).save(photo)
    assert list_images([photo], img_size=32) == [str(photo)]
    assert ImageFileDataset([(str(photo), 0)], 32, "eval")[0].bad_path is None
    with pytest.raises(NhlError, match="4000x3000 pixels"):
        list_images([photo])  # the size it decodes to is unknown: counted whole
    # extreme aspect ratios would grow past the bound when resized: refused too
    thin = empty_png(tmp_path / "thin.png", 20000, 2)
    with pytest.raises(ImageRefused, match="would be resized to"):
        decode_square(str(thin), 37, 32, 1_000_000)


def test_default_pixel_bound_and_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NHL_MAX_IMAGE_PIXELS", raising=False)
    assert DEFAULT_MAX_IMAGE_PIXELS == 40_000_000
    over = empty_png(tmp_path / "over.png", 8000, 5001)  # 40,008,000 pixels
    under = empty_png(tmp_path / "under.png", 8000, 4999)
    dataset = ImageFileDataset([(str(over), 0), (str(under), 0)], 32, "eval")
    assert dataset[0].bad_path == str(over) and dataset[1].bad_path is None
    monkeypatch.setenv("NHL_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(NhlError, match="NHL_MAX_IMAGE_PIXELS must be a positive whole number"):
        ImageFileDataset([(str(under), 0)], 32, "eval")


def test_pillow_warning_is_silenced_and_its_hard_limit_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # Pillow's own threshold, lowered
    monkeypatch.setenv("NHL_MAX_IMAGE_PIXELS", "1500000")
    warned = empty_png(tmp_path / "warned.png", 1200, 1000)  # Pillow warns above 1,000,000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert ImageFileDataset([(str(warned), 0)], 32, "eval")[0].bad_path is None
    beyond = empty_png(tmp_path / "beyond.png", 2100, 1000)  # Pillow refuses above 2,000,000
    with pytest.raises(ImageRefused, match=r"more than 2,000,000 pixels \(Pillow's limit\)"):
        decode_square(str(beyond), 37, 32, 10_000_000)


# ----------------------------------------------------------------------------- links in folders
def make_classes(root: Path, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            empty_png(root / name / f"{name}{i}.png", 8, 8)


def test_a_link_back_up_does_not_pull_in_other_classes(tmp_path: Path) -> None:
    val = tmp_path / "val"
    make_classes(val, {"alpha": 3, "beta": 2})
    (val / "alpha" / "back").symlink_to("..")  # val/alpha/back -> val
    (val / "alpha" / "sub").mkdir()
    empty_png(val / "alpha" / "sub" / "deep.png", 8, 8)
    (val / "alpha" / "again").symlink_to("sub")  # a link that stays inside: followed, read once
    (val / "alpha" / "twice.png").symlink_to("alpha0.png")  # the same file twice: counted once
    outside = tmp_path / "store"
    outside.mkdir()
    empty_png(outside / "kept.png", 8, 8)
    (val / "alpha" / "kept.png").symlink_to(outside / "kept.png")  # a dataset built from links
    files = scan_images(val / "alpha")
    names = sorted(Path(f).name for f in files)
    assert names == ["alpha0.png", "alpha1.png", "alpha2.png", "deep.png", "kept.png"]
    folder = index_image_folder(val, tree_from_folders(val))
    assert folder.counts() == [5, 2]  # not beta's images counted as alpha's


# ---------------------------------------------------------------------------- resume on changes
def test_resume_says_what_changed_in_the_image_folders(
    imagenette_dir: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy_sample(imagenette_dir, tmp_path / "data", 2, 2)
    common = ["--img-size", "32", "--workers", "0", "--max-val-batches", "1"]
    first = [
        "train", "--arch", "n3hl", "--tree", tree_file, "--data", data, "--batch-size", "8",
        "--max-train-batches", "1", "--epochs", "1", "--project", tmp_path, "--name", "run",
        *common,
    ]  # fmt: skip
    assert run_cli(first, capsys)[0] == 0
    run = tmp_path / "run"
    tench = IMAGENETTE[0][0]
    extra = sorted((imagenette_dir / "train" / tench).iterdir())[5:7]
    for f in extra:
        shutil.copyfile(f, data / "train" / tench / f.name)
    next(iter(sorted((data / "val" / tench).iterdir()))).unlink()
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "2"], capsys)
    assert code == 0, err
    lines = [line for line in (out + err).splitlines() if "image folders changed" in line]
    assert lines == [
        "warning: the image folders changed since this run last trained: "
        "train: 2 image(s) added (20 -> 22); val: 1 image(s) removed (20 -> 19)"
    ]
    # unchanged since the last resume: nothing said
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "3"], capsys)
    assert code == 0 and "image folders changed" not in out + err
    # the same count, other files: said too
    moved = data / "train" / tench / extra[0].name
    moved.rename(moved.with_name("renamed.JPEG"))
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "4"], capsys)
    assert "train: the same number of images (22) but other files" in out + err
