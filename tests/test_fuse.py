"""Fused experts: batch norms folded into the convolutions, equal to the unfused model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import images, logits, randomize_bn, set_chunks, tiny_preset

import nhlcli as nhl
from nhlcli.errors import NhlError
from nhlcli.model.fuse import Folded, check_fused, fuse
from nhlcli.model.network import HierNet, build_model
from nhlcli.model.reference import synthetic_tree


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def tiny_model(seed: int = 0) -> HierNet:
    torch.manual_seed(seed)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 5, 9], seed=3), img_size=32)
    randomize_bn(model, seed=seed)
    return model.eval()


def batch_norms(model: torch.nn.Module) -> int:
    return sum("BatchNorm" in type(m).__name__ for m in model.modules())


@pytest.mark.parametrize("chunk_bytes", [None, 1])
def test_fused_logits_equal_unfused(chunk_bytes: int | None) -> None:
    model = tiny_model()
    set_chunks(model, chunk_bytes)
    fused = fuse(model)
    assert fused.fused and not model.fused and batch_norms(model) > 0
    assert batch_norms(fused) == 0 and sum(isinstance(m, Folded) for m in fused.modules()) > 0
    assert fused.num_params() < model.num_params()
    assert_close(logits(fused, images(3, 32)), logits(model, images(3, 32)))


def test_fused_basic_block_baseline() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", synthetic_tree([4], seed=1), img_size=64)
    randomize_bn(model)
    model.eval()
    fused = fuse(model)
    assert batch_norms(fused) == 0
    assert_close(logits(fused, images(2, 64)), logits(model, images(2, 64)))


def test_mismatch_is_one_line_error() -> None:
    with pytest.raises(NhlError) as e:
        check_fused(tiny_model(0), fuse(tiny_model(1)))
    assert "does not match the unfused" in str(e.value) and "\n" not in str(e.value)


def test_fused_expert_round_trip_cutout_and_export(tmp_path: Path) -> None:
    model = tiny_model()
    classes = model.class_ids[:3]
    plain = nhl.cutout(model, classes)
    expert = nhl.cutout(model, classes, fuse=True)
    x = images(2, 32)
    assert expert.fused and batch_norms(expert) == 0
    assert_close(logits(expert, x), logits(plain, x))
    nhl.save_model(expert, tmp_path / "fast")
    loaded = nhl.load_model(tmp_path / "fast")
    assert loaded.fused and loaded.config()["fused"] is True and batch_norms(loaded) == 0
    torch.testing.assert_close(logits(loaded, x), logits(expert, x))
    again = nhl.cutout(loaded, classes[:2])  # a fused expert cuts out like any other
    assert again.fused
    assert_close(logits(again, x), logits(plain, x)[:, :2])
    result = nhl.export(tmp_path / "fast", "onnx", tmp_path / "fast.onnx")
    assert result.path.is_file() and result.max_abs_diff <= result.tolerance
    unfused = tmp_path / "plain"
    nhl.save_model(plain, unfused)
    result = nhl.export(unfused, "onnx", tmp_path / "plain.onnx")  # export always fuses
    assert result.params == expert.num_params()


def test_cli_cutout_fuse_writes_a_fused_expert(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cli_helpers import run_cli

    model = tiny_model()
    nhl.save_model(model, tmp_path / "full")
    classes = ",".join(model.class_ids[:2])
    code, _, err = run_cli(
        ["cutout", tmp_path / "full", "-c", classes, "--fuse", "-o", tmp_path / "x"], capsys
    )
    assert code == 0, err
    fast = nhl.load_model(tmp_path / "x")
    assert fast.fused and batch_norms(fast) == 0
    assert_close(
        logits(fast, images(2, 32)), logits(nhl.cutout(model, model.class_ids[:2]), images(2, 32))
    )


def test_fused_expert_trunk_included_equals_unfused() -> None:
    """The trunk's batch norms (stem and stages) are folded too, not only the levels'."""
    model = tiny_model(2)
    expert = nhl.cutout(model, model.tree.class_ids[:3])
    assert batch_norms(expert.trunk) > 0
    fused = fuse(expert)
    assert batch_norms(fused.trunk) == 0 and batch_norms(fused) == 0
    assert sum(isinstance(m, Folded) for m in fused.trunk.modules()) >= batch_norms(expert.trunk)
    x = images(3, 32, seed=5)
    with torch.no_grad():
        assert_close(fused.trunk(x), expert.trunk(x))
    assert_close(logits(fused, x), logits(expert, x))
