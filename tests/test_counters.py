"""`--counter fvcore|thop|ptflops` and `--baseline`: the paper's thop figures, composed exactly."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from cli_helpers import run_cli

from nhlcli.errors import NhlError
from nhlcli.model.network import build_model
from nhlcli.model.reference import PerBranchNet, synthetic_tree
from nhlcli.profiling.compose import compose_profile
from nhlcli.profiling.counters import count_with
from nhlcli.profiling.report import profile_report

thop = pytest.importorskip("thop")


def test_thop_reproduces_the_papers_convnext_figures() -> None:
    """The main paper's Table 2 (ImageNet1k) and the workshop paper's Table 1: thop, 224 px."""
    full = compose_profile("convnextv2-nhl", (17, 161, 1000), 1000, counter="thop")
    meow = compose_profile("convnextv2-nhl", (1, 1, 5), 5, counter="thop")
    assert (full.params, round(full.gmacs, 2)) == (119_879_336, 14.55)
    assert (meow.params, round(meow.gmacs, 2)) == (13_488_133, 3.87)
    assert round(100 * (1 - meow.params / full.params), 2) == 88.75  # the paper: -88.74 %
    assert round(100 * (1 - meow.macs / full.macs), 1) == 73.4
    for k, paper in ((5, 27_801_029), (1000, 28_566_184)):
        assert compose_profile("convnextv2-tiny", (), k, counter="thop").params == paper
    assert round(compose_profile("convnextv2-tiny", (), 1000, counter="thop").gmacs, 2) == 4.46
    # the main paper's Table 4 counts every parameter: fvcore and ptflops count them all
    for counter in ("fvcore", "ptflops"):
        assert compose_profile("convnextv2-nhl", (17, 161, 1000), 1000, counter=counter).params == (
            121_381_352
        )


def test_thop_misses_exactly_the_norms_grn_and_layer_scale() -> None:
    """ARCHITECTURES.md: 3,584 per L1 node, 1,920 per L2 node, 1,088 per leaf, 43,968 trunk."""
    counts = (2, 3, 4)
    thop_p = compose_profile("convnextv2-nhl", counts, 4, counter="thop").params
    fv = compose_profile("convnextv2-nhl", counts, 4, counter="fvcore").params
    assert fv - thop_p == 43_968 + 2 * 3_584 + 3 * 1_920 + 4 * 1_088


def test_thop_composition_equals_thop_on_the_whole_per_branch_network() -> None:
    """thop on timm-typed single-branch modules, composed = thop on the per-branch model."""
    torch.manual_seed(0)
    tree = synthetic_tree([2, 3, 4], seed=1)
    model = build_model("convnextv2-nhl", tree, img_size=64)
    ref = PerBranchNet.from_model(model)
    whole = count_with("thop", ref, (1, 3, 64, 64))
    prof = compose_profile("convnextv2-nhl", (2, 3, 4), 4, img_size=64, counter="thop")
    assert (prof.params, prof.macs) == (whole.params, whole.macs)


def test_resnet_counters_agree_on_parameters() -> None:
    for counter in ("fvcore", "thop", "ptflops"):
        assert compose_profile("resnet18", (), 10, counter=counter).params == 11_181_642
    assert round(compose_profile("resnet50", (), 10, counter="thop").gmacs, 2) == 4.13


def test_baseline_defaults_per_family_and_choice() -> None:
    tree = synthetic_tree([2, 3, 5])
    assert profile_report("convnextv2-nhl", tree).baseline == "convnextv2-tiny"
    assert profile_report("n3hl152", tree).baseline == "resnet152"
    assert profile_report("n3hl", tree).baseline == "resnet50"
    rep = profile_report("n3hl", tree, baseline="resnet200")
    assert rep.row("baseline").params == 62_624_832 + 2049 * 5
    assert rep.to_dict()["counter"] == "fvcore"
    with pytest.raises(NhlError, match="unknown baseline 'resnet9'"):
        profile_report("n3hl", tree, baseline="resnet9")
    with pytest.raises(NhlError, match="unknown counter 'flops'"):
        profile_report("n3hl", tree, counter="flops")


def test_missing_extra_is_one_line_with_the_install_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ptflops", None)  # import fails as if not installed
    code, _, err = run_cli(
        ["profile", "--arch", "resnet18", "--classes", "imagenette", "--counter", "ptflops"], capsys
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --counter ptflops needs ptflops: pip install 'nhl[counters]' "
        "(or: pip install thop ptflops)"
    ]


def test_profile_cli_counter_and_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["profile", "--arch", "resnet152", "--classes", "imagenette", "--counter", "thop"]
    code, out, _ = run_cli([*args, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["counter"] == "thop" and report["baseline"] == "resnet152"
    full = next(r for r in report["models"] if r["role"] == "full")
    assert full["params"] == 58_164_298
    code, out, _ = run_cli([*args, "--baseline", "resnet18"], capsys)
    assert code == 0 and "Δ% vs resnet18" in out and "thop" in out
