"""Profiling by composition: equals whole-model fvcore, the paper's counts, reductions, the CLI."""

from __future__ import annotations

import json
import logging
import random
from functools import cache
from typing import Any

import pytest
import torch
from cli_helpers import run_cli
from torch import nn

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.model.config import nodes_per_level
from nhlcli.model.cutout import cutout
from nhlcli.model.kinds.bottleneck import Bottleneck
from nhlcli.model.kinds.formulas import conv_out
from nhlcli.model.network import build_model
from nhlcli.model.presets import BlockSpec, get_preset
from nhlcli.profiling.compose import compose_profile
from nhlcli.profiling.fvcore_count import FVCORE_LOGGER, count_module
from nhlcli.profiling.profile import measure_report_latency
from nhlcli.profiling.report import profile_report
from nhlcli.profiling.targets import flat_tree
from nhlcli.selection import select_classes


def random_tree(levels: int, k: int, seed: int) -> Tree:
    """A levelled tree: every group has at least one child; classes spread at random."""
    rng = random.Random(seed)
    nodes: list[TreeNode] = []
    prev: list[str | None] = [None]
    for lv in range(1, levels):
        width = rng.randint(len(prev), len(prev) + 2)
        cur = []
        for i in range(width):
            parent = prev[i] if i < len(prev) else rng.choice(prev)
            nodes.append(TreeNode(f"g{lv}_{i}", f"group {lv}.{i}", parent))
            cur.append(f"g{lv}_{i}")
        prev = list(cur)
    classes = [
        TreeNode(f"c{i}", f"class {i}", prev[i] if i < len(prev) else rng.choice(prev))
        for i in range(k)
    ]
    return Tree(classes, nodes)


def fvcore_whole(model: nn.Module, img: int) -> tuple[int, dict[str, int]]:
    """fvcore on the whole model: total MACs and MACs per top-level module."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    fa = FlopCountAnalysis(model, torch.zeros(1, 3, img, img))
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(fa.total()), dict(fa.by_module())


CASES = [  # (arch, tree levels, classes, image size, seed)
    ("n3hl", 3, 7, 64, 1),
    ("n2hl", 2, 6, 80, 2),
    ("phl-small", 1, 5, 64, 3),
    ("resnet50", 1, 4, 64, 4),
    ("phl-1branch", 1, 3, 64, 5),
]


@cache
def _whole_case(arch: str, levels: int, k: int, img: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    tree = random_tree(levels, k, seed)
    model = build_model(arch, tree, img_size=img)
    total, by_module = fvcore_whole(model, img)
    params = sum(p.numel() for p in model.parameters())
    return {"tree": tree, "model": model, "macs": total, "by_module": by_module, "params": params}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_composition_equals_whole_model_fvcore(case: tuple[str, int, int, int, int]) -> None:
    arch, _, k, img, _ = case
    whole = _whole_case(*case)
    preset = get_preset(arch)
    tree: Tree = whole["tree"]
    prof = compose_profile(preset, nodes_per_level(preset, tree), k, img)
    assert prof.params == whole["params"] == preset.params(nodes_per_level(preset, tree), k)
    parts = {p.name: p for p in prof.parts}
    by_module = whole["by_module"]
    assert parts["trunk"].macs == by_module["trunk"]
    for i in range(len(preset.levels)):
        assert parts[f"level {i + 1}"].macs == by_module[f"levels.{i}"], f"level {i + 1}"
    # heads (pooling + Linear(C, 1) per class, or the shared Linear(C, k)) are counted exactly too
    assert prof.macs == whole["macs"]


def test_cutout_row_and_reductions_match_real_networks() -> None:
    case = CASES[0]
    arch, _, _, img, _ = case
    whole = _whole_case(*case)
    tree: Tree = whole["tree"]
    subset = [tree.class_ids[5], tree.class_ids[1], tree.class_ids[2]]
    expert = cutout(whole["model"], subset, "given")
    exp_macs, _ = fvcore_whole(expert, img)
    exp_params = sum(p.numel() for p in expert.parameters())
    base_params = 23_508_032 + 2049 * tree.num_classes  # ResNet50 (ARCHITECTURES.md)

    report = profile_report(arch, tree, subset, img)
    full, cut, base = (
        report.row("full").to_dict(),
        report.row("cutout").to_dict(),
        report.row("baseline").to_dict(),
    )
    assert report.cutout_classes == subset
    assert cut["params"] == exp_params and cut["classes"] == 3
    assert cut["nodes_per_level"] == expert.nodes_per_level()
    assert base["params"] == base_params
    assert cut["macs"] == exp_macs

    want_params = 100 * (1 - exp_params / whole["params"])
    want_macs = 100 * (1 - exp_macs / whole["macs"])
    assert cut["reduction_vs_full_pct"]["params"] == pytest.approx(want_params, abs=1e-9)
    assert cut["reduction_vs_full_pct"]["macs"] == pytest.approx(want_macs, abs=1e-3)
    want_vs_base = 100 * (1 - whole["params"] / base_params)
    assert full["reduction_vs_baseline_pct"]["params"] == pytest.approx(want_vs_base, abs=1e-9)
    assert full["reduction_vs_full_pct"] == {"params": 0.0, "macs": 0.0}
    assert base["reduction_vs_baseline_pct"] == {"params": 0.0, "macs": 0.0}


def test_resnet50_at_224_reads_4109_gmacs_and_exact_params() -> None:
    # fvcore gives 4.109 G on ResNet50 at 224 px (ARCHITECTURES.md, "Counting MACs")
    assert round(compose_profile("resnet50", [], 10, 224).gmacs, 3) == 4.109
    ten = compose_profile("resnet50", [], 10, 224)
    for k in (5, 100, 1000):
        prof = compose_profile("resnet50", [], k, 224)
        assert prof.params == 23_508_032 + 2049 * k  # ARCHITECTURES.md / the paper's ResNet50 rows
        assert prof.macs - ten.macs == 2048 * (k - 10)  # the FC: 2048 MACs per class


def test_report_reproduces_paper_parameter_counts() -> None:
    # Tables 2-4 of the paper (ARCHITECTURES.md): PHL_big at k = 1000, PHL_lateSP at k = 10 and its
    # 5-class cutout (-28.63 % parameters), ResNet50 at k = 10
    big = profile_report("phl-big", flat_tree(builtin_set("imagenet1k")), None, 224)
    assert big.row("full").to_dict()["params"] == 2_603_429_928
    assert big.row("baseline").to_dict()["params"] == 25_557_032
    nette = flat_tree(builtin_set("imagenette"))
    late = profile_report("phl-latesp", nette, nette.class_ids[5:], 224)
    assert late.row("full").to_dict()["params"] == 19_986_506
    assert late.row("cutout").to_dict()["params"] == 14_264_901
    assert late.row("baseline").to_dict()["params"] == 23_528_522
    assert round(late.row("cutout").to_dict()["reduction_vs_full_pct"]["params"], 2) == 28.63


def test_part_input_sizes_follow_the_strides() -> None:
    prof = compose_profile("phl-latesp", [2], 2, 224)
    shapes = {p.name: p.input_shape for p in prof.parts}
    assert shapes["level 1"] == (1024, 14, 14)
    assert shapes["heads"] == (128, 4, 4)  # 14 -> 7 -> 4 (padded stride 2), then stride 1
    assert [conv_out(s, 2) for s in (224, 7, 8, 1)] == [112, 4, 4, 1]


def test_fvcore_output_is_collapsed(caplog: pytest.LogCaptureFixture) -> None:
    # a fresh module (not cached): residual adds and max pooling have no fvcore handler
    module = nn.Sequential(nn.MaxPool2d(3, 1, 1), Bottleneck(BlockSpec(16, 4, 16, 1)))
    with caplog.at_level(logging.DEBUG):
        count = count_module(module, (1, 16, 8, 8))
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]
    assert dict(count.skipped.ops) == {"aten::max_pool2d": 1, "aten::add": 1}
    line = count.skipped.line()
    assert "\n" not in line and "max_pool2d ×1" in line and "add ×1" in line
    assert logging.getLogger(FVCORE_LOGGER).propagate  # restored afterwards


def test_select_classes_by_node_and_file(tmp_path: Any) -> None:
    tree = random_tree(3, 9, seed=7)
    group = tree.level(1)[0]
    assert select_classes(tree, f"c3,{group}") == list(
        dict.fromkeys(["c3", *tree.leaves_under(group)])
    )
    f = tmp_path / "sel.txt"
    f.write_text("c2\n# comment\nc0\n", encoding="utf-8")
    assert select_classes(tree, str(f)) == ["c2", "c0"]
    with pytest.raises(NhlError, match="not a class or node"):
        select_classes(tree, "c3,nope")
    with pytest.raises(NhlError, match="class file not found"):
        select_classes(tree, "missing.txt")


def test_latency_rows_and_size_limit() -> None:
    tree = random_tree(3, 6, seed=11)
    preset = get_preset("n3hl")
    full = preset.params(nodes_per_level(preset, tree), 6)
    cut = preset.params(nodes_per_level(preset, tree.subtree(["c1"])), 1)
    assert cut < full
    # a limit between the cutout's and the full model's size: the full model is refused, the
    # cutout is still timed (built from its sub-tree)
    lat = measure_report_latency("n3hl", tree, ["c1"], img_size=32, batch_size=1, runs=1,
                                 warmup=0, max_params=(cut + full) // 2)  # fmt: skip
    assert lat["ms"]["full"] is None
    assert lat["ms"]["baseline"] > 0 and lat["ms"]["cutout"] > 0
    assert len(lat["skipped"]) == 1 and "smaller class set" in lat["skipped"][0]
    assert (lat["batch_size"], lat["runs"], lat["device"]) == (1, 1, "cpu")
    # the warning names the row as the table does
    full_name = profile_report("n3hl", tree, ["c1"]).row("full").model
    assert full_name == "n3hl, k=6" and lat["skipped"][0].startswith(f"{full_name}: not timed")


def test_latency_warnings_name_the_rows_as_the_table_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nhlcli.cli.profile_cmd import print_profile
    from nhlcli.profiling.report import attach_latency

    report = profile_report("n3hl", random_tree(3, 6, seed=11), ["c1", "c2"], img_size=32)
    stats = {"min": 1.0, "median": 2.0, "max": 9.0, "spread": 0.5}
    latency = {
        "ms": {"baseline": 2.0, "full": 2.0, "cutout": 2.0},
        "stats": {"baseline": stats, "full": stats, "cutout": stats},
        "device": "cpu", "batch_size": 1, "runs": 5, "warmup": 0, "threads": 1,
        "skipped": [], "noisy": ["full", "cutout"],
    }  # fmt: skip
    print_profile(attach_latency(report, latency))
    out, err = capsys.readouterr()
    names = [r.model for r in report.rows]
    assert names == ["resnet50, k=6", "n3hl, k=6", "cutout, k=2"]
    assert all(name in out for name in names)  # the tables' rows
    warned = [ln.split(": the slowest")[0] for ln in err.splitlines() if "slowest" in ln]
    assert warned == ["warning: n3hl, k=6", "warning: cutout, k=2"]
    assert json.loads(json.dumps(report.to_dict()))["models"][1]["model"] == "n3hl, k=6"


def test_profile_latency_piped_prints_progress_lines(tree3_file: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    args = ["profile", "--arch", "n3hl", "--tree", tree3_file, "--classes", "c1", "--img-size",
            "32", "--latency", "--runs", "2", "--warmup", "1", "--batch-size", "1"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "nhlcli", *args], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("timing (models in turn): ")]
    # 3 models x (1 warm-up + 2 timed runs) = 9 runs, a line at every tenth of the way
    assert len(lines) >= 5 and lines[-1] == "timing (models in turn): 9/9 runs", proc.stderr
    assert "median ms" in proc.stdout  # then the latency table


# ----------------------------------------------------------------- the CLI


@pytest.fixture
def tree3_file(tmp_path: Any) -> str:
    path = tmp_path / "tree3.json"
    random_tree(3, 8, seed=3).save(path)
    return str(path)


def test_cli_json_parses_with_three_rows(
    tree3_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["profile", "--arch", "n3hl", "--tree", tree3_file, "--classes", "c1,c4",
         "--img-size", "64", "--json"], capsys,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert [r["role"] for r in data["models"]] == ["baseline", "full", "cutout"]
    tree = Tree.load(tree3_file)
    preset = get_preset("n3hl")
    assert data["models"][1]["params"] == preset.params(nodes_per_level(preset, tree), 8)
    sub = tree.subtree(["c1", "c4"])
    assert data["models"][2]["params"] == preset.params(nodes_per_level(preset, sub), 2)
    assert data["cutout_classes"] == ["c1", "c4"]
    assert "skipped" in data["fvcore_skipped"]


def test_cli_table_and_one_fvcore_line(tree3_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        ["profile", "--arch", "n3hl", "--tree", tree3_file, "--classes", "c2", "--img-size", "48"],
        capsys,
    )
    assert code == 0
    assert "cutout, k=1" in out and "level 3" in out and "heads" in out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("note: fvcore skipped")


def test_cli_flat_class_list_for_one_level_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        ["profile", "--arch", "phl-1branch", "--classes", "imagenette", "--json"], capsys
    )
    assert code == 0
    assert json.loads(out)["models"][1]["params"] == 9_688_778  # the paper, PHL_1branch k = 10


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--arch", "nope", "--classes", "imagenette"], "unknown architecture 'nope'"),
        (["--arch", "n3hl", "--classes", "imagenette"], "needs a tree"),
        (["--arch", "phl-small"], "give --tree"),
        (["--arch", "resnet50", "--classes", "imagenette", "--img-size", "8"], "--img-size 8"),
        (
            ["--arch", "resnet50", "--classes", "imagenette", "--latency", "--device", "tpu"],
            "device",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["profile", *args], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_cli_tree_with_wrong_levels_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tree2.json"
    random_tree(2, 5, seed=9).save(path)
    code, _, err = run_cli(["profile", "--arch", "n3hl", "--tree", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--levels 3" in err
    code, _, err = run_cli(
        ["profile", "--arch", "n2hl", "--tree", str(path), "--classes", "nothing_here"], capsys
    )
    assert code == 2 and "nothing_here" in err


def test_cutout_profile_reports_the_expert(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tree_path = tmp_path / "tree.json"
    random_tree(3, 6, seed=21).save(tree_path)
    ckpt = str(tmp_path / "model")
    args = ["init", "--arch", "n3hl", "--tree", str(tree_path), "-o", ckpt, "--img-size", "48"]
    assert run_cli(args, capsys)[0] == 0
    args = ["cutout", ckpt, "-c", "c4,c1", "--profile", "--json", "--dry-run"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    summary = json.loads(out)
    rows = {r["role"]: r for r in summary["profile"]["models"]}
    assert rows["cutout"]["params"] == summary["params"]["expert"]
    assert rows["full"]["params"] == summary["params"]["full"]
    assert summary["profile"]["cutout_classes"] == ["c4", "c1"]
    assert summary["profile"]["img_size"] == 48
    code, out, _ = run_cli(["cutout", ckpt, "-c", "c4", "--profile", "--dry-run"], capsys)
    assert code == 0 and "cutout, k=1" in out and "per part" in out


def test_latency_is_interleaved_with_spread_and_progress() -> None:
    import torch
    from torch import nn

    from nhlcli.profiling.latency import summary, time_interleaved

    order: list[str] = []

    class Probe(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            order.append(self.name)
            return x

    calls: list[tuple[int, int]] = []
    times = time_interleaved(
        {"a": Probe("a"), "b": Probe("b")}, 1, 8, torch.device("cpu"), runs=3, warmup=1,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]  # warm-up each, then in turn
    assert [len(t) for t in times.values()] == [3, 3]
    assert calls[-1] == (8, 8) and len(calls) == 8
    st = summary([10.0, 12.0, 11.0, 30.0, 10.5])
    assert (st["min"], st["median"], st["max"]) == (10.0, 11.0, 30.0)
    assert st["spread"] == pytest.approx((30.0 - 11.0) / 11.0)


def test_profile_a_saved_expert_needs_no_arch(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nhl profile MODEL`: preset, tree and image size come from the folder's config; the same
    numbers as --arch/--tree/--img-size with the expert's tree, also for a run folder's best/."""
    import shutil

    import nhlcli as nhl

    tree_path = tmp_path / "tree.json"
    random_tree(3, 6, seed=21).save(tree_path)
    model = str(tmp_path / "model")
    args = ["init", "--arch", "n3hl", "--tree", str(tree_path), "-o", model, "--img-size", "48"]
    assert run_cli(args, capsys)[0] == 0
    expert = tmp_path / "expert"
    assert run_cli(["cutout", model, "-c", "c4,c1,c5", "-o", expert], capsys)[0] == 0
    expert_tree = tmp_path / "expert-tree.json"
    nhl.load_model(expert).tree.save(expert_tree)
    run = tmp_path / "run"
    shutil.copytree(expert, run / "best")

    def models(args: list[Any]) -> list[dict[str, Any]]:
        code, out, err = run_cli(["profile", *args, "--json"], capsys)
        assert code == 0, err
        report = json.loads(out)
        assert report["img_size"] == 48
        return report["models"]

    by_arch = models(["--arch", "n3hl", "--tree", expert_tree, "--img-size", "48", "-c", "c1"])
    assert models([expert, "-c", "c1"]) == by_arch
    assert models([run, "-c", "c1"]) == by_arch
    assert [r["role"] for r in models([expert])] == ["baseline", "full"]
    assert nhl.profile(expert, subset=["c1"]).to_dict()["models"] == by_arch
    assert nhl.profile(str(expert), subset=["c1"]).to_dict()["models"] == by_arch
    code, out, _ = run_cli(["profile", expert], capsys)
    assert code == 0 and "n3hl at 48 px" in out and "n3hl, k=3" in out
    for bad, needle in (
        ([expert, "--arch", "n3hl"], "not both"),
        ([expert, "--tree", expert_tree], "not both"),
        ([tmp_path / "nope"], "model not found"),
        ([], "say what to profile"),
    ):
        code, out, err = run_cli(["profile", *bad], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and needle in err
