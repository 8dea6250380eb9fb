"""Edge deployment of a small model trained a few steps on real Imagenette images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree
from model_helpers import tiny_preset

import nhlcli as nhl
from nhlcli.checkpoint import save_model
from nhlcli.data.augment import Normalize
from nhlcli.data.dataset import ImageFileDataset, collate_decoded
from nhlcli.data.folders import index_image_folder
from nhlcli.model.network import build_model

SIZE = 64
CLASSES = [c for c, _ in IMAGENETTE[:4]]
AGREEMENT = 0.9  # the stated share: int8 and fp32 agree on top-1 for at least 90 % of val images

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def _images(root: Path, tree) -> tuple[torch.Tensor, torch.Tensor]:
    folder = index_image_folder(root, tree)
    ds = ImageFileDataset(list(folder.samples), SIZE, mode="eval")
    batch = collate_decoded([ds[i] for i in range(len(ds))])
    return Normalize()(batch.images), batch.labels


@pytest.fixture(scope="module")
def trained(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, data folder): a tiny 3-level model, 30 Adam steps on 40 train images."""
    data = copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 10, 6, CLASSES)
    tree = small_tree(CLASSES)
    torch.manual_seed(0)
    model = build_model(tiny_preset(3), tree, img_size=SIZE)
    x, y = _images(data / "train", tree)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    folder = tmp_path_factory.mktemp("model") / "m"
    save_model(model.eval(), folder)
    return folder, data


def test_int8_export_agrees_with_fp32_on_real_images_and_predicts(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, data = trained
    fp32 = nhl.export(folder, "onnx", tmp_path / "fp32.onnx", dynamic_batch=True)
    int8 = nhl.export(
        folder, "onnx", tmp_path / "int8.onnx", dynamic_batch=True, quantize="int8",
        calibration=data, calibration_images=40,
    )  # fmt: skip
    q = int8.quantization
    assert q is not None and q["calibration_images"] == 40
    assert q["top1_agreement"] >= AGREEMENT and 0.0 <= q["max_softmax_diff"] < 0.5
    # the check is in the file, the stem stays fp32, the rest is really int8 (QDQ)
    proto = onnx.load(str(int8.path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["nhl.export"])
    assert meta["quantization"]["top1_agreement"] == q["top1_agreement"]
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("DequantizeLinear") > 10 and "QuantizeLinear" in ops
    stem = q["fp32_nodes"]["stem"][0]
    stem_node = next(n for n in proto.graph.node if n.name == stem)
    assert all("DequantizeLinear" not in i for i in stem_node.input[:1])
    assert int8.file_bytes > 0 and fp32.quantization is None  # (QDQ scales outweigh tiny weights)
    # on real validation images (not used to calibrate): top-1 agreement within the stated share
    val = sorted(str(p) for p in (data / "val").rglob("*.JPEG"))
    want = nhl.predict(fp32.path, val, top=1)
    got = nhl.predict(int8.path, val, top=1)
    assert got.kind == "onnx" and len(got.predictions) == len(val) == 24
    same = [
        a.top[0][0] == b.top[0][0] for a, b in zip(want.predictions, got.predictions, strict=True)
    ]
    assert np.mean(same) >= AGREEMENT, np.mean(same)
    # the CLI: the table names the check and what stayed fp32
    code, out, _ = run_cli(
        ["export", folder, "--format", "onnx", "--quantize", "int8", "--calibration", data,
         "--calibration-images", "20", "--dynamic-batch"],
        capsys,
    )  # fmt: skip
    assert code == 0, out
    assert "int8 check" in out and "kept fp32" in out
    assert (folder.parent / "m-int8.onnx").is_file()


def test_quantize_bad_inputs_exit_2_and_write_nothing(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, data = trained
    out = tmp_path / "q.onnx"
    cases = [
        (["--quantize", "int8"], "needs --calibration"),
        (["--quantize", "int4", "--calibration", str(data)], "unknown --quantize"),
        (["--calibration", str(data)], "needs --quantize"),
        (["--quantize", "int8", "--calibration", str(tmp_path / "none")], "not found"),
        (["--quantize", "int8", "--calibration", str(data), "--calibration-images", "0"], "least"),
        # an impossible floor: the check fails the export
        (
            [
                "--quantize",
                "int8",
                "--calibration",
                str(data),
                "--min-agreement",
                "1.01",
                "--calibration-images",
                "8",
            ],
            "agrees with fp32",
        ),
    ]
    for extra, message in cases:
        code, _, err = run_cli(["export", folder, "--format", "onnx", "-o", out, *extra], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
        assert not out.exists()
    code, _, err = run_cli(
        ["export", folder, "--format", "torchscript", "--quantize", "int8", "--calibration", data],
        capsys,
    )
    assert code == 2 and "--format onnx" in err


BF16_AGREEMENT = 0.9  # the stated share for bf16 autocast against fp32 on real val images


def test_bf16_unsupported_cpu_is_one_clear_error(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, data = trained
    monkeypatch.setenv("NHL_CPU_BF16", "0")  # the documented switch: the check says "unsupported"
    for args in (
        ["predict", folder, data / "val", "--precision", "bf16"],
        ["eval", folder, "--data", data, "--precision", "bf16"],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "Traceback" not in err, err
        assert "bf16 instructions" in err and "NHL_CPU_BF16=0" in err
        assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["predict", folder, data / "val", "--precision", "fp16"], capsys)
    assert code == 2 and "unknown --precision" in err


def test_bf16_agrees_with_fp32_on_real_images(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU without bf16 instructions NHL_CPU_BF16=1 lets the same autocast path run
    (emulated, slower, the same numbers)."""
    from nhlcli.precision import cpu_bf16_supported

    folder, data = trained
    if not cpu_bf16_supported():
        monkeypatch.setenv("NHL_CPU_BF16", "1")
    val = sorted(str(p) for p in (data / "val").rglob("*.JPEG"))
    want = nhl.predict(folder, val, top=3)
    got = nhl.predict(folder, val, top=3, precision="bf16")
    same = [
        a.top[0][0] == b.top[0][0] for a, b in zip(want.predictions, got.predictions, strict=True)
    ]
    assert np.mean(same) >= BF16_AGREEMENT, np.mean(same)
    # bf16 really ran: the probabilities differ from fp32 (bf16 keeps 8 bits of mantissa)
    diffs = [
        abs(a.top[0][2] - b.top[0][2])
        for a, b in zip(want.predictions, got.predictions, strict=True)
    ]
    assert 0 < max(diffs) < 0.1
    code, out, err = run_cli(
        ["eval", folder, "--data", data, "--precision", "bf16", "--json", "--workers", "0"], capsys
    )
    assert code == 0, err
    fp32_acc = nhl.evaluate(folder, data, workers=0).to_dict()
    assert abs(json.loads(out)["top1"] - fp32_acc["top1"]) <= 100 / 24 + 1e-6  # percent: 1 image
    with pytest.raises(nhl.NhlError, match="applies to model folders"):
        nhl.predict(folder.parent / "m-int8.onnx", val, precision="bf16")


def test_bench_a_folder_and_onnx_files_writes_its_csv(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    from nhlcli.profiling.bench import COLUMNS

    folder, data = trained
    fp32 = nhl.export(folder, "onnx", tmp_path / "m.onnx", dynamic_batch=True).path
    int8 = nhl.export(
        folder, "onnx", tmp_path / "m8.onnx", dynamic_batch=True, quantize="int8",
        calibration=data, calibration_images=16,
    ).path  # fmt: skip
    out = tmp_path / "bench"
    code, stdout, err = run_cli(
        ["bench", folder, fp32, int8, "--batch-size", "1,2", "--precision", "fp32",
         "--precision", "int8", "--runs", "2", "--warmup", "1", "-o", out],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "bench: " in err  # plain progress lines: stderr is not a terminal here
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert tuple(rows[0]) == COLUMNS
    got = sorted((r["name"], r["runtime"], r["precision"], r["batch_size"]) for r in rows)
    want = sorted(
        (n, rt, p, b)
        for b in ("1", "2")
        for n, rt, p in [
            ("m", "torch", "fp32"),
            ("m", "onnxruntime", "fp32"),
            ("m.onnx", "onnxruntime", "fp32"),
            ("m8.onnx", "onnxruntime", "int8"),
            ("resnet50 (baseline)", "torch", "fp32"),
        ]
    )
    assert got == want
    for r in rows:
        assert float(r["ms_median"]) > 0 and float(r["images_per_s"]) > 0
        assert float(r["gmacs"]) > 0  # the ONNX files' GMACs come from their config
        if r["precision"] == "fp32":
            assert float(r["ratio"]) > 0 and float(r["efficiency"]) > 0
        else:
            assert r["ratio"] == ""  # no int8 baseline row
    base = next(r for r in rows if r["baseline"] == "True")
    assert abs(float(base["ratio"]) - 1.0) < 1e-9
    report = json.loads((out / "bench.json").read_text())
    assert report["runs"] == 2 and len(report["rows"]) == 10
    assert "bench.csv" in stdout
    # bad input: one line, exit 2
    code, _, err = run_cli(["bench", fp32, "--runtime", "tensorrt", "-o", tmp_path / "x"], capsys)
    assert code == 2 and "unknown --runtime" in err and not (tmp_path / "x").exists()
