"""Checkpoint directories: round trip, atomic writes, and one-line errors for unusable files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
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
    del cfg["nodes_per_level"], cfg["params"]  # (these would give it away first)
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


def _edit(key_path: str, value: object):
    """An edit of one config.json field (dotted path, list indices as numbers)."""

    def edit(cfg: dict) -> None:
        *head, last = key_path.split(".")
        node: object = cfg
        for k in head:
            node = node[int(k)] if isinstance(node, list) else node[k]  # type: ignore[index]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value  # type: ignore[index]

    return edit


def _drop(key: str):
    """An edit that removes one top-level config.json field."""

    def edit(cfg: dict) -> None:
        del cfg[key]

    return edit


BAD_CONFIGS = {
    "no tree": (_drop("tree"), "invalid model config: no 'tree'"),
    "no preset": (_drop("preset"), "'preset' must be an object"),
    "width 1e9": (_edit("preset.levels.0.0.mid", 1e9), "must be an integer"),
    "width -5": (_edit("preset.levels.0.0.mid", -5), "must be in 1..8192"),
    "width 32.5": (_edit("preset.levels.0.0.mid", 32.5), "must be an integer"),
    "huge width": (_edit("preset.trunk.stages.0.mid", 10**9), "must be in 1..8192"),
    "1e7 blocks": (_edit("preset.trunk.stages.0.blocks", 10**7), "blocks must be in 1..64"),
    "stride 0": (_edit("preset.levels.0.0.stride", 0), "stride must be 1 or 2"),
    "stride true": (_edit("preset.levels.0.0.stride", True), "must be an integer"),
    "img_size 1e12": (_edit("img_size", 10**12), "too large (at most 1024 px)"),
    "img_size 7": (_edit("img_size", 7), "too small (at least 32 px)"),
    "img_size string": (_edit("img_size", "224"), "must be an integer"),
    "widths do not chain": (_edit("preset.levels.0.0.cin", 48), "the layer before gives"),
    "unknown head": (_edit("preset.head", "mlp"), "preset.head must be one of"),
    "preset a list": (_edit("preset", [1, 2]), "'preset' must be an object"),
    "extra block key": (_edit("preset.levels.0.0.groups", 2), "must be an object with"),
    "arch edited": (_edit("arch", "n3hl"), "arch 'n3hl' but the preset is"),
    "nodes_per_level edited": (_edit("nodes_per_level", [1, 1, 1]), "'nodes_per_level' says"),
    "params edited": (_edit("params", 1), "'params' says 1"),
    "attention nan": (_edit("attention", {"level": 3, "scales": {"c_tabby": float("nan")}}),
                      "must be a positive number"),
    "attention 1e308": (_edit("attention", {"level": 3, "scales": {"c_tabby": 1e308}}),
                        "must be a positive number"),
    "attention level 9": (_edit("attention", {"level": 9, "scales": {"c_tabby": 2}}),
                          "attention level 9 does not exist"),
    "attention a list": (_edit("attention", [3]), "invalid attention settings"),
    "cut_from a string": (_edit("cut_from", "x"), "'cut_from' must be an object"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_every_config_field_is_validated_on_load(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_ckpt(tmp_path)
    edit, message = BAD_CONFIGS[case]
    cfg = json.loads((path / CONFIG_FILE).read_text())
    edit(cfg)
    (path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(NhlError, match=re.escape(message)):
        load_model(path)
    out = tmp_path / "expert"
    code, _, err = run_cli(["cutout", path, "-c", "tabby", "-o", out], capsys)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert message in err and not out.exists()


def test_deeply_nested_and_damaged_json_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_ckpt(tmp_path)
    for text in ("[" * 100_000, '{"format": "nhl-model/1", "img_size": 1' + "0" * 5000 + "}",
                 "\ufeff" + (path / CONFIG_FILE).read_text() + "x"):  # fmt: skip
        (path / CONFIG_FILE).write_text(text, encoding="utf-8")
        with pytest.raises(NhlError):
            load_model(path)
        code, _, err = run_cli(["cutout", path, "-c", "tabby"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_a_bom_before_the_config_is_accepted(tmp_path: Path) -> None:
    path = write_ckpt(tmp_path)
    text = (path / CONFIG_FILE).read_text(encoding="utf-8")
    (path / CONFIG_FILE).write_text("\ufeff" + text, encoding="utf-8")
    assert load_model(path).num_classes == 5
