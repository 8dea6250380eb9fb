"""Hostile model files and names: tampered ONNX metadata, ONNX Runtime failures, NaN weights and
CSV formula injection, each against a real tiny model (64 px), real ONNX Runtime and real images."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, small_tree
from model_helpers import randomize_bn, tiny_preset
from onnx import helper, numpy_helper

from nhlcli.checkpoint import save_model
from nhlcli.csvsafe import csv_text, safe_cell
from nhlcli.exporters import export_model
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.network import HierNet, build_model

SIZE = 64
CLASSES = [c for c, _ in IMAGENETTE[:3]]  # tench, English springer, cassette player
EVIL_IMAGE = "=cmd|' /C calc'!A0.jpg"
EVIL_NAME = "@SUM(1)"


def tiny_model(names: dict[str, str] | None = None) -> HierNet:
    """A tiny-width N3HL over CLASSES; `names` renames classes (id -> name)."""
    tree = small_tree(CLASSES)
    if names:
        classes = [dataclasses.replace(c, name=names.get(c.id, c.name)) for c in tree.classes]
        tree = Tree(classes, tree.nodes, tree.provenance)
    torch.manual_seed(0)
    model = build_model(tiny_preset(3), tree, img_size=SIZE)
    randomize_bn(model)
    return model.eval()


@pytest.fixture(scope="module")
def data(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette3"), 0, 2, CLASSES)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real dynamic-batch ONNX export of the tiny model."""
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    export_model(tiny_model(), out, "onnx", dynamic_batch=True)
    return out


def edited(source: Path, out: Path, **metadata: object) -> Path:
    """`source` with some nhl metadata entries replaced (values as JSON), saved at `out`."""
    proto = onnx.load(str(source))
    for entry in proto.metadata_props:
        key = entry.key.removeprefix("nhl.")
        if key in metadata:
            entry.value = json.dumps(metadata[key])
    onnx.save(proto, str(out))
    return out


def metadata(source: Path, key: str) -> object:
    props = {m.key: m.value for m in onnx.load(str(source)).metadata_props}
    return json.loads(props[f"nhl.{key}"])


def assert_refused(args: list[object], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 2, (args, out, err)
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def predict_args(model: Path, images: Path, tmp: Path) -> list[object]:
    return ["predict", model, images, "--csv", tmp / "p.csv", "--save", "--project", tmp / "runs"]


def assert_nothing_written(tmp: Path) -> None:
    assert not (tmp / "p.csv").exists() and not (tmp / "runs").exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("fewer classes", ["2 classes", "3 outputs"]),
        ("empty list", ["class list is empty"]),
        ("10000 classes", ["10000 classes", "3 outputs"]),
        ("repeated class", ["listed twice"]),
        ("wrong img_size", ["img_size 96", "(?, 3, 64, 64)"]),
    ],
)
def test_tampered_metadata_is_refused_before_anything_is_written(
    change: str,
    words: list[str],
    exported: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    classes = metadata(exported, "classes")
    assert isinstance(classes, list) and len(classes) == 3
    prep = metadata(exported, "preprocess")
    assert isinstance(prep, dict)
    tampered = {
        "fewer classes": {"classes": classes[:2]},
        "empty list": {"classes": []},
        "10000 classes": {"classes": [{"id": f"c{i}", "name": f"c{i}"} for i in range(10_000)]},
        "repeated class": {"classes": [classes[0], classes[1], classes[0]]},
        "wrong img_size": {"preprocess": {**prep, "img_size": 96}},
    }[change]
    bad = edited(exported, tmp_path / "bad.onnx", **tampered)
    err = assert_refused(predict_args(bad, data / "val", tmp_path), capsys, *words)
    assert str(bad) in err
    assert_nothing_written(tmp_path)


def test_a_graph_that_fails_in_onnx_runtime_is_one_line(
    exported: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile graph whose declared shapes agree with its metadata but whose Reshape fails when
    ONNX Runtime runs it (3 images x 3 classes cannot be reshaped to 5 rows)."""
    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    logits = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 3])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("Reshape", ["pooled", "rows"], ["logits"]),
    ]
    rows = numpy_helper.from_array(np.array([5, -1], dtype=np.int64), "rows")
    graph = helper.make_graph(nodes, "hostile", [image], [logits], [rows])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    for entry in onnx.load(str(exported)).metadata_props:
        proto.metadata_props.add(key=entry.key, value=entry.value)
    hostile = tmp_path / "hostile.onnx"
    onnx.save(proto, str(hostile))
    args = predict_args(hostile, data / "val", tmp_path)
    assert_refused([*args, "--batch-size", "3"], capsys, str(hostile), "onnxruntime cannot run")
    assert_nothing_written(tmp_path)


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model folder whose head weights are NaN (saved with save_model)."""
    model = tiny_model()
    with torch.no_grad():
        model.heads.weight.fill_(float("nan"))  # type: ignore[union-attr]
    return save_model(model, tmp_path_factory.mktemp("nan") / "nan-model")


def test_predict_refuses_a_model_folder_with_nan_weights(
    nan_model: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = predict_args(nan_model, data / "val", tmp_path)
    assert_refused(args, capsys, str(nan_model), "not finite")
    assert_nothing_written(tmp_path)


def test_eval_refuses_a_model_folder_with_nan_weights(
    nan_model: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", nan_model, "--data", data, "--project", tmp_path / "runs", "--workers", "0"]
    assert_refused(args, capsys, str(nan_model), "not finite")
    assert_nothing_written(tmp_path)


def test_export_refuses_nan_weights_and_predict_an_onnx_file_with_nan_initializers(
    nan_model: Path,
    exported: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "nan.onnx"
    assert_refused(["export", nan_model, "-f", "onnx", "-o", out], capsys, "not finite")
    assert not out.exists()
    # export refuses such a model, so the ONNX file gets its NaN in an edited initializer
    proto = onnx.load(str(exported))
    for init in proto.graph.initializer:
        if init.name == "heads.weight":
            nan = np.full(numpy_helper.to_array(init).shape, np.nan, dtype=np.float32)
            init.CopyFrom(numpy_helper.from_array(nan, init.name))
    nan_onnx = tmp_path / "nan-init.onnx"
    onnx.save(proto, str(nan_onnx))
    args = predict_args(nan_onnx, data / "val", tmp_path)
    assert_refused(args, capsys, str(nan_onnx), "not finite")
    assert_nothing_written(tmp_path)


def test_predictions_csv_neutralises_formulas_in_names_and_paths(
    exported: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    classes = metadata(exported, "classes")
    assert isinstance(classes, list)
    classes[0]["name"] = EVIL_NAME
    evil = edited(exported, tmp_path / "evil.onnx", classes=classes)
    first = sorted((data / "val" / CLASSES[0]).iterdir())[0]
    (tmp_path / EVIL_IMAGE).parent.mkdir()  # the name holds a '/': a folder "=cmd|' " and a file
    shutil.copyfile(first, tmp_path / EVIL_IMAGE)
    monkeypatch.chdir(tmp_path)  # a relative image name: the path cell starts with '='
    code, _, err = run_cli(["predict", evil, EVIL_IMAGE, "--top", "3", "--csv", "p.csv"], capsys)
    assert code == 0, err
    with open("p.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {r["path"] for r in rows} == {"'" + EVIL_IMAGE}
    assert "'" + EVIL_NAME in {r["name"] for r in rows}
    assert all(not r["name"].startswith(("=", "+", "-", "@")) for r in rows)


def test_confusion_csv_neutralises_formulas_in_class_names(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = save_model(tiny_model({CLASSES[1]: "=HYPERLINK(1)"}), tmp_path / "model")
    args = ["eval", folder, "--data", data, "--project", tmp_path / "runs", "--workers", "0"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    with (tmp_path / "runs" / "exp" / "confusion.csv").open(newline="", encoding="utf-8") as f:
        names = [row["true_name"] for row in csv.DictReader(f)]
    assert "'=HYPERLINK(1)" in names


def test_safe_cell_quotes_every_formula_start_and_leaves_numbers() -> None:
    for text in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    assert safe_cell("tench") == "tench" and safe_cell(-3) == -3 and safe_cell(-0.5) == -0.5
    assert csv_text(["a", "b"], [["=x", 2]]) == "a,b\n'=x,2\n"
