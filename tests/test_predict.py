"""`nhl predict` on real Imagenette images with a tiny N3HL trained for a few steps (32 px)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, small_tree

from nhlcli.prediction import list_images, open_predictor, predict_images
from nhlcli.training.config import build_config
from nhlcli.training.engine import train

CLASSES = [c for c, _ in IMAGENETTE[:3]]  # tench, English springer, cassette player


@pytest.fixture(scope="module")
def data(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette3"), 4, 2, CLASSES)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for 2 steps: its best checkpoint is what predict reads."""
    root = tmp_path_factory.mktemp("predict-run")
    tree = root / "tree.json"
    small_tree(CLASSES).save(tree)
    cfg = build_config(
        {
            "arch": "n3hl", "tree": str(tree), "data": str(data), "epochs": 1, "batch_size": 6,
            "img_size": 32, "workers": 0, "device": "cpu", "randaugment_n": 0,
            "max_train_batches": 2, "max_val_batches": 1, "project": str(root), "name": "run",
        }
    )  # fmt: skip
    result = train(cfg)
    assert result.run_dir is not None
    return result.run_dir


def test_checkpoint_predictions_are_sorted_probabilities(trained: Path, data: Path) -> None:
    files = list_images([data / "val"])
    assert len(files) == 6
    predictor = open_predictor(trained)
    report = predict_images(predictor, files, top=2, batch_size=4)
    assert report.kind == "checkpoint" and report.classes == 3 and report.img_size == 32
    assert [p.path for p in report.predictions] == files
    names = dict(IMAGENETTE)
    for p in report.predictions:
        probs = [q for _, _, q in p.top]
        assert len(p.top) == 2 and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-9
        assert all(cid in CLASSES and name == names[cid] for cid, name, _ in p.top)
    full = predict_images(predictor, files, top=10)
    assert full.top_k == 3  # --top larger than the model: all its classes
    for p in full.predictions:
        assert abs(sum(q for _, _, q in p.top) - 1.0) < 1e-6


def test_onnx_and_checkpoint_agree_on_real_images(
    trained: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    shutil.copytree(data / "val", images)
    (images / "n01440764" / "broken.jpg").write_bytes(b"not a jpeg")
    onnx_file = tmp_path / "model.onnx"
    export = ["export", trained, "--format", "onnx", "--dynamic-batch", "-o", onnx_file]
    code, _, _ = run_cli(export, capsys)
    assert code == 0
    reports = []
    for model in (trained, onnx_file):
        code, out, _ = run_cli(
            ["predict", model, images, "--top", "3", "--json", "--csv", tmp_path / "p.csv"], capsys
        )
        assert code == 0
        reports.append(json.loads(out))
    ckpt, exported = reports
    assert ckpt["kind"] == "checkpoint" and exported["kind"] == "onnx"
    assert ckpt["images"] == exported["images"] == 6
    assert exported["skipped"] == [str(images / "n01440764" / "broken.jpg")]
    for a, b in zip(ckpt["predictions"], exported["predictions"], strict=True):
        assert a["path"] == b["path"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        for ta, tb in zip(a["top"], b["top"], strict=True):
            assert abs(ta["probability"] - tb["probability"]) < 1e-4
    with (tmp_path / "p.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 3 and [r["rank"] for r in rows[:3]] == ["1", "2", "3"]
    first = exported["predictions"][0]["top"][0]
    assert rows[0]["class"] == first["class"]
    assert abs(float(rows[0]["probability"]) - first["probability"]) < 1e-6


def test_bad_inputs_exit_2_with_one_line(
    trained: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    val = data / "val"
    for args in (
        ["predict", trained, tmp_path / "missing.jpg"],
        ["predict", trained, empty],
        ["predict", trained, val, "--top", "0"],
        ["predict", trained, val, "--attend", "zebra=2"],
        ["predict", tmp_path / "notes.txt", val],
        ["predict", tmp_path / "nothing.onnx", val],
        ["predict", trained, tmp_path / "notes.txt"],  # nothing decodable
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2, args
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


def test_predict_save_writes_a_numbered_folder(
    trained: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", trained, data / "val", "--top", "2", "--save", "--project", tmp_path]
    for expected in ("exp", "exp-2"):
        code, out, _ = run_cli(args, capsys)
        assert code == 0 and f"{tmp_path / expected}" in out
    saved = json.loads((tmp_path / "exp" / "predictions.json").read_text())
    assert saved["images"] == 6 and saved["top"] == 2
    with (tmp_path / "exp-2" / "predictions.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 12  # 6 images x 2 ranks
