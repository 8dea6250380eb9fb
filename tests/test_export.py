"""ONNX (onnxruntime on CPU) and TorchScript exports of a small random N3HL expert at 64 px."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import small_tree
from model_helpers import randomize_bn, tiny_preset

from nhlcli.checkpoint import save_model
from nhlcli.errors import NhlError
from nhlcli.exporters import export_model, read_onnx_info, read_torchscript_info
from nhlcli.model.attention import set_attention
from nhlcli.model.cutout import cutout
from nhlcli.model.network import build_model

SIZE = 64
KEEP = ["n03417042", "n01440764", "n03028079"]  # garbage truck, tench, church (given order)


@pytest.fixture(scope="module")
def expert() -> torch.nn.Module:
    torch.manual_seed(0)
    full = build_model("n3hl", small_tree(), img_size=SIZE)
    randomize_bn(full)
    return cutout(full.eval(), KEEP).eval()


@pytest.fixture(scope="module")
def tiny_expert() -> torch.nn.Module:
    """A tiny-width model of the same kind: quick to trace, for the CLI and failure paths."""
    torch.manual_seed(1)
    full = build_model(tiny_preset(3), small_tree(), img_size=SIZE)
    randomize_bn(full)
    return cutout(full.eval(), KEEP).eval()


def torch_logits(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def batch(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_onnx_export_runs_in_onnxruntime_like_pytorch_with_attention_baked_in(
    expert: torch.nn.Module, tmp_path: Path
) -> None:
    set_attention(expert, {"tench": 1.8})
    try:
        res = export_model(expert, tmp_path / "e.onnx", "onnx", dynamic_batch=True)
        x = batch(4, seed=7)  # another batch size and other inputs than the export's own check
        attended = torch_logits(expert, x)
    finally:
        set_attention(expert, {"tench": 1.0})
    plain = torch_logits(expert, x)
    assert res.exporter in ("legacy", "dynamo") and res.opset is not None and res.opset >= 17
    assert res.max_abs_diff <= res.tolerance and res.check_batch == 3
    assert res.file_bytes == (tmp_path / "e.onnx").stat().st_size
    assert res.params == sum(p.numel() for p in expert.parameters())
    session = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": x.numpy()})[0]
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out, attended, rtol=1e-3, atol=1e-3 * np.abs(attended).max())
    tench = KEEP.index("n01440764")
    assert not np.allclose(out[:, tench], plain[:, tench], rtol=1e-3, atol=1e-4)  # baked in
    np.testing.assert_allclose(np.delete(out, tench, 1), np.delete(plain, tench, 1), rtol=1e-3,
                               atol=1e-3 * np.abs(plain).max())  # fmt: skip
    info = read_onnx_info(tmp_path / "e.onnx")
    assert info.class_ids == KEEP
    assert [c["name"] for c in info.classes] == ["garbage truck", "tench", "church"]
    assert info.img_size == SIZE and info.preprocess["resize"] == 74
    assert info.config is not None and info.config["attention"]["scales"] == {"n01440764": 1.8}
    meta = {p.key for p in onnx.load(str(tmp_path / "e.onnx")).metadata_props}
    assert {"nhl.classes", "nhl.preprocess", "nhl.config", "nhl.export"} <= meta


def test_torchscript_export_and_a_failed_check_writes_nothing(
    expert: torch.nn.Module, tiny_expert: torch.nn.Module, tmp_path: Path
) -> None:
    res = export_model(expert, tmp_path / "e.pt", "torchscript", dynamic_batch=True)
    info, module = read_torchscript_info(tmp_path / "e.pt", trusted=True)
    assert info.class_ids == KEEP and info.export["file_format"] == "torchscript"
    x = batch(5, seed=3)
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), torch_logits(expert, x), rtol=1e-5, atol=1e-5)
    assert res.max_abs_diff <= res.tolerance
    with pytest.raises(NhlError, match=r"does not match PyTorch.*nothing was written"):
        export_model(tiny_expert, tmp_path / "never.pt", "torchscript", atol=-1.0, rtol=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.pt"]


def test_export_cli_static_batch_and_bad_inputs(
    tiny_expert: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = save_model(tiny_expert, tmp_path / "cats")
    code, out, _ = run_cli(["export", folder, "--format", "onnx", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["path"] == str(tmp_path / "cats.onnx") and report["batch"] == 1
    assert report["classes"] == 3 and report["gmacs"] > 0 and report["params"] > 0
    shape = ort.InferenceSession(report["path"]).get_inputs()[0].shape
    assert shape == [1, 3, SIZE, SIZE]  # fixed batch without --dynamic-batch
    for args in (
        ["export", folder, "--format", "tflite"],
        ["export", tmp_path / "missing", "--format", "onnx"],
        ["export", folder, "--format", "onnx", "--opset", "11", "-o", tmp_path / "o.onnx"],
        ["export", folder, "--format", "onnx", "--attend", "zebra=2", "-o", tmp_path / "z.onnx"],
        ["export", folder, "--format", "onnx", "--img-size", "8", "-o", tmp_path / "s.onnx"],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2, args
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cats", "cats.onnx"]


def test_export_format_comes_from_the_suffix_and_a_mismatch_is_one_line(
    tiny_expert: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = save_model(tiny_expert, tmp_path / "cats")
    out_file = tmp_path / "x.onnx"
    code, out, err = run_cli(["export", folder, "-o", out_file, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["format"] == "onnx" and report["path"] == str(out_file)
    session = ort.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": batch(1, seed=2).numpy()})[0]
    np.testing.assert_allclose(logits, torch_logits(tiny_expert, batch(1, seed=2)), atol=1e-3)
    code, out, err = run_cli(["export", folder, "-o", tmp_path / "x.ts", "--json"], capsys)
    assert code == 0 and json.loads(out)["format"] == "torchscript", err
    for args, needle in (
        (["-o", tmp_path / "y.onnx", "--format", "torchscript"], "does not match y.onnx"),
        (["-o", tmp_path / "y.pt", "-f", "onnx"], "does not match y.pt"),
        (["-o", tmp_path / "y.bin"], "cannot tell the export format of y.bin"),
    ):
        code, out, err = run_cli(["export", folder, *args], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cats", "x.onnx", "x.ts"]


def test_export_of_a_training_run_names_its_checkpoint_and_writes_into_the_run(
    tiny_expert: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run folder stands for its best/ checkpoint: the export says so (with the epoch) and goes
    into the run, as `RUN/best.onnx`, the name `nhl export RUN/best` gives too."""
    run = tmp_path / "runs" / "train" / "six"
    for tag, epoch in (("best", 7), ("last", 9)):
        extra = {"training": {"run": str(run), "epoch": epoch, "val_top1": 52.5}}
        save_model(tiny_expert, run / tag, extra=extra)
    code, out, err = run_cli(["export", run], capsys)
    assert code == 0, err
    assert (run / "best.onnx").is_file() and not (run.parent / "six.onnx").exists()
    said = f"from {run / 'best'} (the run's best checkpoint: epoch 7, val top-1 52.50%)"
    assert said in out.splitlines()
    code, out, _ = run_cli(["export", run / "last", "-o", tmp_path / "l.onnx", "--json"], capsys)
    source = json.loads(out)["source"]
    assert code == 0 and source["path"] == str(run / "last") and source["epoch"] == 9
    assert source["run_checkpoint"] is None  # named directly, not through the run


def test_export_says_its_fused_count_against_the_checkpoints(
    tiny_expert: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nhlcli.checkpoint import load_model

    folder = save_model(tiny_expert, tmp_path / "cats")
    checkpoint = load_model(folder).num_params()  # what `nhl cutout` and `nhl profile` count
    args = ["export", folder, "--format", "onnx", "-o", tmp_path / "cats.onnx"]
    code, out, _ = run_cli([*args, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    fewer = checkpoint - report["params"]
    assert report["checkpoint_params"] == checkpoint and fewer > 0  # the folded batch norms
    note = f"fused: batch norms folded, {fewer:,} fewer parameters than the checkpoint's "
    assert report["fused"] == f"{note}{checkpoint:,}"
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and f"{report['params']:,} ({note}{checkpoint:,})" in " ".join(out.split())
