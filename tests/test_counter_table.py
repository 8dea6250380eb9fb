"""Counters as a table: `--counter torch` (PyTorch's FlopCounterMode) agrees exactly with fvcore on
convolution and linear MACs; a counter added in this test file only runs through `nhl profile`;
the help is generated from the table and shows the install hint literally."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from cli_helpers import run_cli
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nhlcli.errors import NhlError
from nhlcli.model.network import build_model
from nhlcli.model.reference import PerBranchNet, synthetic_tree
from nhlcli.profiling.compose import compose_profile
from nhlcli.profiling.counters import (
    COUNTERS,
    CounterSpec,
    count_with,
    counters_help,
    register_counter,
)
from nhlcli.profiling.fvcore_count import Count, SkippedOps, param_count
from nhlcli.profiling.report import profile_report

SIZE = 64
MATRIX_OPS = ("aten.addmm", "aten.mm", "aten.bmm")  # linear layers and the per-class heads


def fvcore_by_op(model: nn.Module) -> dict[str, float]:
    with torch.no_grad():
        a = FlopCountAnalysis(model, torch.zeros(1, 3, SIZE, SIZE))
        a.unsupported_ops_warnings(False)
        a.uncalled_modules_warnings(False)
        a.tracer_warnings("none")
        return dict(a.by_operator())


def torch_by_op(model: nn.Module) -> dict[str, int]:
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(torch.zeros(1, 3, SIZE, SIZE))
    return {str(op): n for op, n in mode.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize(
    ("arch", "counts"), [("resnet50", [10]), ("n3hl", [2, 3, 5]), ("convnextv2-nhl", [2, 3, 5])]
)
def test_torch_agrees_with_fvcore_on_conv_and_linear_macs(arch: str, counts: list[int]) -> None:
    """Per operator, on the whole (grouped) model: PyTorch's FLOPs are exactly 2 x fvcore's MACs."""
    torch.manual_seed(0)
    model = build_model(arch, synthetic_tree(counts, seed=1), img_size=SIZE).eval()
    fv, tc = fvcore_by_op(model), torch_by_op(model)
    assert tc["aten.convolution"] == 2 * fv["conv"]  # grouped convolutions included
    # fvcore: `linear` for nn.Linear, `einsum` for the per-class heads; torch: matrix products
    matrix = sum(tc.get(op, 0) for op in MATRIX_OPS)
    assert matrix == 2 * (fv.get("linear", 0) + fv.get("einsum", 0))
    # what else fvcore counts (norms, pooling), torch does not: the totals differ by exactly that
    others = sum(v for k, v in fv.items() if k not in ("conv", "linear", "einsum"))
    assert others > 0
    whole = count_with("torch", model, (1, 3, SIZE, SIZE))
    assert whole.macs == sum(fv.values()) - others and whole.params == param_count(model)


def test_torch_composition_equals_torch_on_the_whole_network() -> None:
    torch.manual_seed(0)
    tree = synthetic_tree([2, 3, 5], seed=1)
    model = build_model("n3hl", tree, img_size=SIZE)
    composed = compose_profile("n3hl", (2, 3, 5), 5, img_size=SIZE, counter="torch")
    for whole in (model, PerBranchNet.from_model(model)):
        count = count_with("torch", whole, (1, 3, SIZE, SIZE))
        assert (composed.params, composed.macs) == (count.params, count.macs)


def test_profile_counter_torch_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["profile", "--arch", "resnet50", "--classes", "imagenette", "--counter", "torch"]
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["counter"] == "torch"
    assert report["units"]["macs"] == COUNTERS["torch"].macs and "halved" in report["units"]["macs"]
    full = next(r for r in report["models"] if r["role"] == "full")
    fv = compose_profile("resnet50", (), 10, counter="fvcore")
    assert full["params"] == fv.params == 23_528_522
    # fvcore also counts batch norm and pooling: 4.1095 G; conv + linear alone: torch's figure
    assert full["macs"] == compose_profile("resnet50", (), 10, counter="torch").macs
    assert 4.08e9 < full["macs"] < fv.macs
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "GMACs: torch at batch 1" in out


# ------------------------------------------------------------------------------ a new counter
def conv_only(module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """MACs of the Conv2d modules only, from forward hooks: out elements x in/groups x kernel."""
    total = 0

    def hook(m: nn.Module, _: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d)
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
    return Count(param_count(module), total, SkippedOps(tool="conv-hooks"))


@pytest.fixture
def conv_hooks() -> Iterator[CounterSpec]:
    spec = register_counter(
        CounterSpec(
            "conv-hooks",
            conv_only,
            macs="Conv2d MACs from forward hooks (a test counter)",
            summary="convolutions only",
        )
    )
    yield spec
    COUNTERS.pop(spec.name)


def test_a_counter_added_here_runs_through_nhl_profile(
    conv_hooks: CounterSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["profile", "--arch", "resnet18", "--classes", "imagenette", "--counter", "conv-hooks",
         "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["counter"] == "conv-hooks" and report["units"]["macs"] == conv_hooks.macs
    full = next(r for r in report["models"] if r["role"] == "full")
    # the convolutions alone: torch's count less the classifier's 512 x 10 MACs
    assert full["macs"] == compose_profile("resnet18", (), 10, counter="torch").macs - 512 * 10
    assert "conv-hooks (convolutions only)" in counters_help()


def test_unknown_counter_names_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NhlError, match="choose from fvcore, torch, thop, ptflops"):
        profile_report("n3hl", synthetic_tree([2, 3, 5]), counter="flops")
    assert "conv-hooks" not in COUNTERS


def test_help_is_generated_from_the_table_and_shows_the_extra(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in (["profile", "--help"], ["cutout", "--help"]):
        code, out, _ = run_cli(command, capsys)
        assert code == 0
        text = " ".join(out.replace("│", " ").split())
        assert "pip install 'nhl[counters]'" in text  # the markup was swallowed: 'nhl'
        for name in COUNTERS:
            assert f"{name} (" in text, name


def test_docs_table_is_the_counter_table() -> None:
    from pathlib import Path

    from nhlcli.profiling.counters import counters_table

    doc = (Path(__file__).parents[1] / "docs" / "profiling.md").read_text(encoding="utf-8")
    table = doc.split("<!-- counters-table -->\n", 1)[1].split("\n<!-- /counters-table -->", 1)[0]
    assert table == counters_table()
