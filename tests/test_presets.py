"""Parameter counts of every preset equal the paper's to the unit (counted on the meta device).

Paper numbers: Tables 2-4 of the paper (../shared/paper), as reconstructed in ARCHITECTURES.md.
"""

from __future__ import annotations

import pytest
import torch

from nhlcli.errors import NhlError
from nhlcli.model.network import build_model
from nhlcli.model.presets import PRESETS, TRUNKS, Preset, get_preset
from nhlcli.model.reference import synthetic_tree

# (preset, k) -> the paper's parameter count
PAPER_FLAT = {
    ("resnet50", 5): 23_518_277,
    ("resnet50", 10): 23_528_522,
    ("resnet50", 100): 23_712_932,
    ("resnet50", 1000): 25_557_032,
    ("phl-small", 10): 9_611_338,
    ("phl-small", 100): 83_109_028,
    ("phl-big", 10): 27_464_778,
    ("phl-big", 100): 261_643_428,
    ("phl-big", 1000): 2_603_429_928,
    ("phl-latesp", 10): 19_986_506,
    ("phl-latesp", 100): 122_975_396,
    ("phl-latesp", 1000): 1_152_864_296,
    ("phl-1branch", 10): 9_688_778,
    ("phl-1branch", 100): 9_700_388,
    ("phl-1branch", 1000): 9_816_488,
}
# the paper prints 818,213,928 for PHL_small at k=1000: 128 per branch more than its own formula
PHL_SMALL_1000_PAPER = 818_213_928

# per-node parameters of the NHL tables (trunk, L1 node, L2 node, leaf node with its FC)
NHL_NODES = {
    "n2hl": (1_444_928, (543_232, 273_409)),
    "n3hl": (8_543_296, (870_912, 218_368, 55_041)),
    "n3hl152": (43_179_072, (870_912, 218_368, 55_041)),
}


def meta_count(arch: str, counts: list[int]) -> int:
    model = build_model(arch, synthetic_tree(counts, seed=3), meta=True)
    assert all(p.is_meta for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("arch", "k"), sorted(PAPER_FLAT))
def test_flat_presets_match_the_paper(arch: str, k: int) -> None:
    assert meta_count(arch, [k]) == PAPER_FLAT[(arch, k)]


def test_phl_small_1000_is_the_formula_not_the_paper_typo() -> None:
    n = meta_count("phl-small", [1000])
    assert n == 1_444_928 + 816_641 * 1000 == 818_085_928
    assert PHL_SMALL_1000_PAPER - n == 128 * 1000


@pytest.mark.parametrize("arch", sorted(NHL_NODES))
@pytest.mark.parametrize("counts", [[2, 4, 10], [17, 161, 1000], [1, 1, 1], [5, 5, 100]])
def test_nhl_counts_follow_the_per_node_formulas(arch: str, counts: list[int]) -> None:
    trunk, nodes = NHL_NODES[arch]
    shape = counts[-len(nodes) :] if len(nodes) == 3 else [counts[0], counts[-1]]
    expected = trunk + sum(n * p for n, p in zip(shape, nodes, strict=True))
    assert meta_count(arch, shape) == expected


def test_level_parameters_per_node() -> None:
    model = build_model("n3hl", synthetic_tree([3, 7, 20], seed=1), meta=True)
    for lv, (level, per_node) in enumerate(zip(model.levels, (870_912, 218_368), strict=False)):
        n = model.nodes_per_level()[lv]
        assert sum(p.numel() for p in level.parameters()) == n * per_node
    assert model.heads is not None
    leaf = sum(p.numel() for p in model.levels[2].parameters()) + model.heads.weight.numel()
    assert leaf + model.heads.bias.numel() == 20 * 55_041


@pytest.mark.parametrize(
    ("name", "params"), [("T3", 1_444_928), ("T4", 8_543_296), ("T4-152", 43_179_072)]
)
def test_trunk_counts(name: str, params: int) -> None:
    assert TRUNKS[name].params() == params
    preset = next(p for p in PRESETS.values() if p.trunk.name == name)
    model = build_model(preset, synthetic_tree([2] * max(preset.num_levels, 1)), meta=True)
    assert sum(p.numel() for p in model.trunk.parameters()) == params


@pytest.mark.parametrize("arch", sorted(PRESETS))
def test_model_count_equals_closed_form(arch: str) -> None:
    p = get_preset(arch)
    counts = [3, 6, 9, 12][: p.num_levels] or [7]
    model = build_model(arch, synthetic_tree(counts, seed=5), meta=True)
    assert model.num_params() == p.params(model.nodes_per_level(), counts[-1])


def test_n4hl_is_marked_as_extrapolation_and_counts() -> None:
    p = get_preset("n4hl")
    assert p.extrapolated and p.num_levels == 4
    assert meta_count("n4hl", [2, 3, 5, 8]) == p.params([2, 3, 5, 8], 8)


def test_preset_dict_round_trip_and_formula() -> None:
    for p in PRESETS.values():
        assert Preset.from_dict(p.to_dict()) == p
    assert get_preset("n3hl").formula() == "8,543,296 + 870,912·n1 + 218,368·n2 + 55,041·k"
    assert get_preset("phl-1branch").formula() == "9,687,488 + 129·k"
    assert get_preset("resnet50").formula() == "23,508,032 + 2,049·k"


def test_wrong_number_of_levels_says_which_levels() -> None:
    with pytest.raises(NhlError, match="--levels 3"):
        build_model("n3hl", synthetic_tree([2, 5]), meta=True)
    with pytest.raises(NhlError, match="--levels 1"):
        build_model("phl-latesp", synthetic_tree([2, 5]), meta=True)
    with pytest.raises(NhlError, match="unknown architecture"):
        build_model("n9hl", synthetic_tree([2]), meta=True)
    # shared-head presets use the class list only: any tree fits
    assert build_model("resnet50", synthetic_tree([2, 5]), meta=True).num_classes == 5


def test_meta_models_allocate_nothing() -> None:
    model = build_model("phl-big", synthetic_tree([1000]), meta=True)
    assert model.num_params() == 2_603_429_928
    assert all(t.device == torch.device("meta") for t in model.state_dict().values())


def test_formulas_are_computed_without_torch() -> None:
    """Presets are data: importing them, counting a preset's parameters, writing its formula and
    checking a saved preset never import torch (the built-in kinds' formulas are torch-free)."""
    import json
    import subprocess
    import sys

    code = """
import json, sys
from nhlcli.model.presets import get_preset, preset_problems
out = {}
for name in ("n3hl", "convnextv2-nhl", "resnet18", "phl-latesp"):
    p = get_preset(name)
    out[name] = [p.formula(), p.params([2, 3, 5][-p.num_levels:] if p.num_levels else [], 5)]
out["problems"] = preset_problems(json.loads(json.dumps(get_preset("n3hl").to_dict())))
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(run.stdout)
    assert out.pop("torch") is False, "computing a formula imported torch"
    assert out.pop("problems") == []
    for name, (formula, params) in out.items():  # the same numbers as the kinds' modules give
        p = get_preset(name)
        assert formula == p.formula()
        counts = [2, 3, 5][-p.num_levels :] if p.num_levels else []
        tree = synthetic_tree(counts or [5])
        assert params == build_model(name, tree, meta=True).num_params() == p.params(counts, 5)
