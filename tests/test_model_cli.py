"""`nhl init`, `nhl cutout`, `nhl archs`: files written, JSON output, exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli as run
from model_helpers import images, logits, named_tree

from nhlcli.checkpoint import load_model
from nhlcli.cli.app import main
from nhlcli.model.attention import clear_attention
from nhlcli.model.presets import PRESETS


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    tree = d / "tree.json"
    named_tree().save(tree)
    main_args = ["init", "--arch", "n3hl", "--tree", tree, "-o", d / "model", "--img-size", "32"]
    main_args += ["--seed", "3", "--json"]
    try:
        main([str(a) for a in main_args])
    except SystemExit as e:
        assert not e.code
    return d / "model"


def test_init_writes_a_loadable_checkpoint(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = load_model(checkpoint)
    assert m.preset.name == "n3hl" and m.img_size == 32 and m.nodes_per_level() == [2, 3, 5]
    assert json.loads((checkpoint / "config.json").read_text())["extra"] == {"init": {"seed": 3}}
    # the seed decides the weights
    tree = tmp_path / "t.json"
    named_tree().save(tree)
    common = ["init", "--arch", "n3hl", "--tree", tree, "--img-size", "32", "--json"]
    code, out, _ = run([*common, "--seed", "3", "-o", tmp_path / "same"], capsys)
    assert code == 0 and json.loads(out)["params"] == m.num_params()
    same = load_model(tmp_path / "same")
    assert torch.equal(same.heads.weight, m.heads.weight)  # type: ignore[union-attr]


def test_init_phl_from_a_class_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "init",
            "--arch",
            "phl-1branch",
            "--classes",
            "imagenette",
            "-o",
            tmp_path / "m",
            "--json",
        ],
        capsys,
    )
    info = json.loads(out)
    assert code == 0 and info["classes"] == 10 and info["params"] == 9_687_488 + 129 * 10


def test_cutout_command(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = tmp_path / "pick.txt"
    classes.write_text("# a superclass and a class\ndomestic cat\npug\n")
    out_dir = tmp_path / "expert"
    code, out, err = run(
        [
            "cutout", checkpoint, "--classes", classes, "-o", out_dir, "--attend", "tabby=1.8",
            "--json",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert [c["id"] for c in summary["classes"]] == ["c_tabby", "c_siamese", "c_pug"]
    assert summary["nodes_per_level"] == {"full": [2, 3, 5], "expert": [1, 2, 3]}
    assert summary["attention"] == {"level": 3, "scales": {"c_tabby": 1.8}}
    full, expert = load_model(checkpoint), load_model(out_dir)
    assert summary["params"] == {
        "full": full.num_params(),
        "expert": expert.num_params(),
        "reduction_pct": round(100 * (1 - expert.num_params() / full.num_params()), 2),
    }
    assert expert.cut_from is not None and expert.cut_from["origin"] == str(checkpoint)
    x = images(2, 32)
    clear_attention(expert)  # compare without attention
    torch.testing.assert_close(logits(expert, x), logits(full, x)[:, [1, 3, 4]])
    # inline list, tree order, human output
    args = ["cutout", checkpoint, "-c", "pug,chain_saw", "--order", "tree", "--dry-run"]
    code, out, _ = run(args, capsys)
    assert code == 0 and "2 classes" in out and out.index("chain saw") < out.index("pug")


def test_cutout_without_output_writes_a_numbered_expert_and_says_where(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["cutout", checkpoint, "-c", "pug,tabby"], capsys)
    assert code == 0, err
    assert "wrote runs/cutout/exp" in out.splitlines()
    assert load_model(tmp_path / "runs/cutout/exp").class_ids == ["c_pug", "c_tabby"]
    code, out, _ = run(["cutout", checkpoint, "-c", "pug", "--json"], capsys)
    assert code == 0 and json.loads(out)["path"] == "runs/cutout/exp-2"  # never replaced
    assert load_model(tmp_path / "runs/cutout/exp").num_classes == 2
    code, out, _ = run(["cutout", checkpoint, "-c", "pug", "--dry-run"], capsys)
    assert code == 0 and "dry run: nothing written" in out
    assert sorted(p.name for p in (tmp_path / "runs/cutout").iterdir()) == ["exp", "exp-2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "lion"], "'lion' is not a class or node"),
        (["-c", "tabby", "--attend", "tabby=0"], "must be a positive number"),
        (["-c", "tabby", "--attend", "tabby"], "is not NAME=SCALE"),
        (["-c", "tabby", "--attend", "pug=2"], "'pug' is not a class or node"),
        (["-c", "tabby", "--order", "random"], "--order must be 'given' or 'tree'"),
        (["-c", "missing/cats.txt"], "not found"),
    ],
)
def test_cutout_errors(
    checkpoint: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["cutout", checkpoint, *args], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_init_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "t.json"
    named_tree().save(tree)
    code, _, err = run(["init", "--arch", "n2hl", "--tree", tree, "-o", tmp_path / "m"], capsys)
    assert code == 2 and "--levels 2" in err
    assert not (tmp_path / "m").exists()
    code, _, err = run(["init", "--arch", "n9hl", "--tree", tree, "-o", tmp_path / "m"], capsys)
    assert code == 2 and "unknown architecture" in err
    code, _, err = run(["cutout", tmp_path / "nothing", "-c", "x"], capsys)
    assert code == 2 and "model not found" in err


def test_archs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["archs", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == set(PRESETS)
    assert rows["phl-latesp"]["formula"] == "8,543,296 + 1,144,321·k"
    assert rows["n3hl"]["node_params"] == [870_912, 218_368, 55_041]  # leaf: block + FC
    assert rows["n4hl"]["extrapolated"] is True


@pytest.mark.parametrize("command", ["init", "cutout", "archs"])
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0 and "Examples" in out and f"nhl {command}" in out
