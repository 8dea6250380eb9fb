"""Checkpoint directories: round trip, atomic writes, and one-line errors for unusable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_helpers import images, logits, named_tree, randomize_bn, tiny_preset

from nhlcli.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, read_config, save_model
from nhlcli.cli.app import main
from nhlcli.errors import NhlError
from nhlcli.model.attention import set_attention
from nhlcli.model.cutout import cutout
from nhlcli.model.network import HierNet


def model() -> HierNet:
    torch.manual_seed(0)
    m = HierNet(tiny_preset(3), named_tree(), img_size=32)
    randomize_bn(m)
    return m.eval()


def test_round_trip(tmp_path: Path) -> None:
    m = model()
    set_attention(m, {"domestic cat": 1.7})
    path = save_model(m, tmp_path / "ckpt", extra={"epoch": 3})
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config() == m.config()
    assert read_config(path)["extra"] == {"epoch": 3}
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = images(2, 32)
    assert torch.equal(logits(loaded, x), logits(m, x))
    # an expert saved and loaded is still the same function
    expert = cutout(loaded, ["tabby", "pug"])
    saved = save_model(expert, tmp_path / "expert")
    again = load_model(saved / WEIGHTS_FILE)  # a file inside the directory works too
    assert again.cut_from is not None and again.cut_from["classes"] == 5
    assert torch.equal(logits(again, x), logits(expert, x))
    assert all(p.requires_grad for p in again.parameters())


def test_overwrite_and_nothing_half_written(tmp_path: Path) -> None:
    m = model()
    target = save_model(m, tmp_path / "ckpt")
    before = (target / WEIGHTS_FILE).read_bytes()
    (target / "train_state.pt").write_bytes(b"unrelated file")  # another part's file is ignored
    assert load_model(target).num_classes == 5
    # a failure while writing the weights (tensors sharing memory) leaves the old checkpoint intact
    broken = model()
    broken.trunk.bn1.bias = broken.trunk.bn1.weight
    with pytest.raises(RuntimeError):
        save_model(broken, target)
    assert (target / WEIGHTS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dirs left behind
    expert = cutout(m, ["tabby"])
    save_model(expert, target)  # replacing a checkpoint is fine
    assert load_model(target).class_ids == ["c_tabby"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(NhlError, match="not an nhl checkpoint; not overwriting"):
        save_model(m, tmp_path / "other")


def write_ckpt(tmp_path: Path) -> Path:
    return save_model(model(), tmp_path / "ckpt")


def corrupt_truncated(p: Path) -> str:
    data = (p / WEIGHTS_FILE).read_bytes()
    (p / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    return "not a readable safetensors file"


def corrupt_wrong_kind(p: Path) -> str:
    (p / WEIGHTS_FILE).write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    return "not a readable safetensors file"


def corrupt_shape(p: Path) -> str:
    cfg = json.loads((p / CONFIG_FILE).read_text())
    cfg["tree"]["classes"].pop()  # the config now describes 4 classes, the weights hold 5
    (p / CONFIG_FILE).write_text(json.dumps(cfg))
    return "does not match config.json"


def corrupt_names(p: Path) -> str:
    from safetensors.torch import load_file, save_file

    state = load_file(str(p / WEIGHTS_FILE))
    state["levels.9.extra"] = state.pop("heads.bias")
    save_file(state, str(p / WEIGHTS_FILE))
    return "missing heads.bias"


def corrupt_format(p: Path) -> str:
    cfg = json.loads((p / CONFIG_FILE).read_text())
    cfg["format"] = "nhl-model/2"
    (p / CONFIG_FILE).write_text(json.dumps(cfg))
    return "not an nhl model config"


def corrupt_json(p: Path) -> str:
    (p / CONFIG_FILE).write_text("{not json")
    return "not a readable JSON config"


def corrupt_missing(p: Path) -> str:
    (p / WEIGHTS_FILE).unlink()
    return "missing model.safetensors"


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_truncated,
        corrupt_wrong_kind,
        corrupt_shape,
        corrupt_names,
        corrupt_format,
        corrupt_json,
        corrupt_missing,
    ],
)
def test_unusable_checkpoints_are_one_line_errors(
    corrupt, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_ckpt(tmp_path)
    message = corrupt(path)
    with pytest.raises(NhlError, match=message):
        load_model(path)
    with pytest.raises(SystemExit) as e:
        main(["cutout", str(path), "--classes", "tabby"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NhlError, match="model not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(NhlError, match="is a file, not an nhl model"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(NhlError, match=r"missing config\.json and model\.safetensors"):
        load_model(tmp_path)
