"""`nhl demo` / `nhl.demo`: the papers' "meow" expert counted, the Imagenette expert of one group,
and the papers called by name in every help text."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_helpers import run_cli

import nhlcli as nhl
from nhlcli.cli.app import app
from nhlcli.model.presets import get_preset
from nhlcli.tour import DemoResult

DOMESTIC_CATS = ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
N3HL_1K_WEIGHTS_MB = 95_658_792 * 4 / 2**20  # fp32 weights of the 1000-class n3hl: 365 MiB


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return nhl.demo(tmp_path_factory.mktemp("demo"), img_size=64)


def test_headline_is_the_meow_expert_of_the_1000_class_n3hl(result: DemoResult) -> None:
    """The figures nhl prints for the n3hl on the shipped WordNet tree (README, docs/deploy.md):
    −89.6 % parameters, −73.8 % GMACs (the papers' ConvNeXtV2 NHL under thop: −88.7 / −73.4,
    tests/test_counters.py)."""
    head = result.headline
    assert (head.tree, head.group) == ("imagenet1k-wordnet-L3", "domestic cat")
    assert [c["name"] for c in head.classes] == DOMESTIC_CATS
    full, cut = head.profile.row("full"), head.profile.row("cutout")
    assert (full.counts.num_classes, full.counts.img_size, cut.counts.num_classes) == (1000, 224, 5)
    assert (full.params, cut.params) == (95_658_792, 9_907_781)
    assert round(head.reduction_pct["params"], 1) == 89.6
    assert round(head.reduction_pct["gmacs"], 1) == 73.8
    assert result.headline_seconds < 60  # counted, not built: about 5 s


def test_imagenette_expert_is_one_group_with_a_large_cut(result: DemoResult) -> None:
    small = result.small
    tree = nhl.load_tree(small.tree)
    ids = [c["id"] for c in small.classes]
    assert len(ids) == 5 and small.group == "instrumentality"
    (group,) = [n for n in tree.nodes if n.name == small.group]
    assert set(ids) <= set(tree.leaves_under(group.id))  # the classes share one group
    # the first five classes span both top groups and save 2.35 %; one group saves far more
    assert small.reduction_pct["params"] > 15 and small.reduction_pct["gmacs"] > 8
    preset = get_preset("n3hl")
    assert result.cutout["params"]["expert"] == preset.params([1, 1, 5], 5)
    for folder in (result.checkpoint, result.expert_dir):
        assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert nhl.load_model(result.expert_dir).class_ids == ids


def test_expert_classes_pick_the_smallest_group_that_holds_them(tmp_path: Path) -> None:
    from nhlcli.tour import shared_group

    tree = nhl.load_tree("imagenette-wordnet-L3")
    assert shared_group(tree, 2) == ("vertebrate", ["n01440764", "n02102040"])
    assert shared_group(tree, 8)[0] == "artifact"
    assert shared_group(tree, 10) == ("the whole tree", tree.class_ids)
    with pytest.raises(nhl.NhlError, match="--expert-classes 11: the tree has only 10 classes"):
        shared_group(tree, 11)


def test_demo_prints_both_headlines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["demo", "-o", tmp_path, "--img-size", "64"], capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert '"meow" → domestic cat: tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat' in text
    assert 'the "meow" expert: −89.6 % parameters, −73.8 % GMACs' in text
    assert "the instrumentality expert: −15.4 % parameters, −8.3 % GMACs" in text
    assert "the workshop paper" in text and "paper 003" not in text


def test_json_parses_and_the_old_experts_spelling_works(tmp_path: Path) -> None:
    """A real process: its stdout is one JSON document, and its peak memory grows by less than
    the 1000-class model's weights alone (the headline is counted, never built)."""
    code = f"""
import json, resource, sys
import torch, nhlcli.tour
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from nhlcli.cli.app import main
try:
    main(["demo", "--json", "-o", {str(tmp_path)!r}, "--img-size", "64", "--experts", "2"])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"grew_mb": (peak - base) / 1024}}), file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert round(out["headline"]["reduction_pct"]["params"], 1) == 89.6
    small = out["imagenette"]
    assert small["group"] == "vertebrate"
    assert [c["name"] for c in small["classes"]] == ["tench", "English springer"]
    assert small["expert"]["path"] == str(tmp_path / "n3hl-expert-2")
    assert "--experts is now spelled --expert-classes" in proc.stderr
    grew = json.loads(proc.stderr.strip().splitlines()[-1])["grew_mb"]
    assert grew < N3HL_1K_WEIGHTS_MB, grew


def _help_texts(command: Any, name: str = "nhl") -> list[tuple[str, str]]:
    """(where, text) of a command's help, epilog and options' help, its subcommands' too."""
    texts = [(name, command.help or ""), (name, command.epilog or "")]
    texts += [(f"{name} {p.name}", getattr(p, "help", None) or "") for p in command.params]
    if hasattr(command, "commands"):  # a group (typer may bring its own click)
        for sub_name, sub in command.commands.items():
            texts += _help_texts(sub, f"{name} {sub_name}")
    return texts


def test_help_names_the_papers_not_their_files() -> None:
    texts = _help_texts(typer.main.get_command(app))
    assert any("workshop paper" in t for _, t in texts)  # --counter's help names thop's paper
    for where, text in texts:
        assert not re.search(r"paper 00\d|(?<![\d,])\b00[03]\b", text), (where, text)
        for m in re.finditer(r"\bTables? \d", text):  # a table always with its paper
            assert "paper's" in text[max(0, m.start() - 25) : m.start()], (where, text)
