"""A new block kind defined in this file only: nhl builds, cuts out, profiles, saves and reloads it.

The kind ``plain`` (two 3x3 convolutions with BN and ReLU, plus the input when the shapes allow) is
written here from the public pieces a kind provides (`BlockKind`, `register_kind`) and the grouped
ops (`GroupedConv`, `GroupedBatchNorm`, `Wiring`); no file of nhl knows it. Its presets are
registered here too (`register_preset`), and the fixture removes both again, so nothing leaks
into other tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_helpers import images, randomize_bn
from torch import nn

from nhlcli.checkpoint import load_model, save_model
from nhlcli.errors import NhlError
from nhlcli.model.attention import set_attention
from nhlcli.model.config import nodes_per_level
from nhlcli.model.cutout import cutout
from nhlcli.model.grouped_ops import GroupedBatchNorm, GroupedConv, NodeRange, Wiring
from nhlcli.model.kinds import (
    BlockKind,
    WeightLayout,
    get_kind,
    kind_names,
    register_kind,
    unregister_kind,
)
from nhlcli.model.levels import Level
from nhlcli.model.network import HierNet, build_model, zero_init_residual
from nhlcli.model.presets import (
    BlockSpec,
    Preset,
    StageSpec,
    TrunkSpec,
    baseline_names,
    get_preset,
    register_preset,
    unregister_preset,
)
from nhlcli.model.reference import PerBranchNet, synthetic_tree
from nhlcli.profiling.compose import compose_profile
from nhlcli.profiling.report import profile_report
from nhlcli.training.trunk_weights import load_trunk_weights

STEM = 16  # the stem's output channels (conv 3x3/2 3->16 + BN + ReLU)


def conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def has_residual(spec: BlockSpec) -> bool:
    return spec.cin == spec.cout and spec.stride == 1


class PlainBlock(nn.Module):
    """3x3 conv (stride) BN ReLU [scale] 3x3 conv BN [+ x when the shapes agree] ReLU."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.residual = has_residual(spec)
        self.conv1 = nn.Conv2d(spec.cin, spec.cout, 3, spec.stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.cout)
        self.conv2 = nn.Conv2d(spec.cout, spec.cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(spec.cout)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if scale is not None:
            out = out * scale
        out = self.bn2(self.conv2(out))
        return F.relu(out + x if self.residual else out)


class PlainNode(nn.Module):
    """One node: single-branch blocks (``blocks.0``, ...); the scale goes to block 0."""

    def __init__(self, specs: Sequence[BlockSpec]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(PlainBlock(s) for s in specs))

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, scale if i == 0 else None)
        return x


class GroupedPlainBlock(nn.Module):
    """n plain blocks side by side (the same names, a leading node dimension)."""

    def __init__(self, spec: BlockSpec, n: int) -> None:
        super().__init__()
        self.residual = has_residual(spec)
        self.conv1 = GroupedConv(n, spec.cin, spec.cout, 3, spec.stride)
        self.bn1 = GroupedBatchNorm(n, spec.cout)
        self.conv2 = GroupedConv(n, spec.cout, spec.cout, 3)
        self.bn2 = GroupedBatchNorm(n, spec.cout)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if scale is not None:
            out = out * scale.view(1, -1, 1, 1)
        out = self.bn2(self.conv2(out))
        return F.relu(out + x if self.residual else out)


class PlainLevel(Level):
    """All n nodes of a level at once: each node's parent slice gathered, then grouped blocks."""

    def __init__(self, specs: Sequence[BlockSpec], wiring: Wiring) -> None:
        super().__init__()
        self.specs, self.wiring, self.n = tuple(specs), wiring, wiring.n
        self.blocks = nn.ModuleList(GroupedPlainBlock(s, self.n) for s in specs)

    def node_image_bytes(self, x: torch.Tensor) -> int:
        return max(s.cout for s in self.specs) * x.shape[-2] * x.shape[-1] * x.element_size()

    def images_independent(self) -> bool:
        return not self.training  # batch norm in training mode needs the whole batch

    def run_nodes(
        self, x: torch.Tensor, nodes: NodeRange, scale: torch.Tensor | None
    ) -> torch.Tensor:
        h = x if nodes.wiring is None else nodes.wiring.gather(x)
        for i, block in enumerate(self.blocks):
            h = block(h, scale if i == 0 else None)
        return h


class PlainTrunk(nn.Module):
    """Stem (``stem``: conv 3x3/2, BN, ReLU) and stages of plain blocks (``stages.i.j``)."""

    def __init__(self, spec: TrunkSpec) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, STEM, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM), nn.ReLU()
        )
        self.stages = nn.Sequential(
            *(nn.Sequential(*(PlainBlock(b) for b in s.block_specs())) for s in spec.stages)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def body_to_stages(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The pretend published layout names the stages ``body``."""
    return (("stages." + key[len("body.") :]) if key.startswith("body.") else key), value


PLAIN_LAYOUT = WeightLayout(
    "plain-v0", "a plain network (stem.0.weight, body.0.0.conv1.weight, ...)",
    ("stem.0.weight", "body.0.0.conv1.weight"), body_to_stages,
)  # fmt: skip


class PlainKind(BlockKind):
    name = "plain"
    attention = "the output of the first block's first 3x3 convolution, after BN and ReLU"
    baseline = "plain-base"
    residual_norm = "bn2"
    residual_blocks = (PlainBlock, GroupedPlainBlock)
    weight_layouts = (PLAIN_LAYOUT,)
    head_weights = {"fc": "head."}  # noqa: RUF012

    def params(self, spec: BlockSpec) -> int:
        return 9 * spec.cin * spec.cout + 9 * spec.cout**2 + 4 * spec.cout

    def out_size(self, spec: BlockSpec, h: int, w: int) -> tuple[int, int]:
        return conv_out(h, spec.stride), conv_out(w, spec.stride)

    def attention_channels(self, spec: BlockSpec) -> int:
        return spec.cout

    def stem_params(self) -> int:
        return 3 * STEM * 9 + 2 * STEM

    def stem_out(self, img_size: int) -> tuple[int, int]:
        return STEM, conv_out(img_size, 2)

    def single(self, spec: BlockSpec) -> nn.Module:
        return PlainBlock(spec)

    def node(self, specs: Sequence[BlockSpec]) -> nn.Module:
        return PlainNode(specs)

    def level(self, specs: Sequence[BlockSpec], wiring: Wiring) -> nn.Module:
        return PlainLevel(specs, wiring)

    def trunk(self, spec: TrunkSpec) -> nn.Module:
        return PlainTrunk(spec)


P = BlockSpec
PLAIN_TRUNK = TrunkSpec(
    "plain-t", (StageSpec(1, 16, 16, 16, 1, "plain"), StageSpec(1, 16, 24, 24, 2, "plain"))
)
PLAIN_NHL = Preset(
    "plain-nhl",
    PLAIN_TRUNK,
    (
        (P(24, 16, 16, 2, "plain"),),  # level 1: all nodes read the trunk's output
        (P(16, 16, 16, 1, "plain"), P(16, 8, 8, 1, "plain")),  # residual, then 16 -> 8
        (P(8, 8, 8, 1, "plain"),),  # the classes: residual
    ),
    "per_class",
    "a 3-level NHL of plain blocks (test kind)",
)
PLAIN_BASE = Preset("plain-base", PLAIN_TRUNK, (), "shared", "plain-block baseline (test kind)")


@pytest.fixture
def plain() -> Iterator[BlockKind]:
    kind = register_kind(PlainKind())
    register_preset(PLAIN_NHL)
    register_preset(PLAIN_BASE)
    try:
        yield kind
    finally:
        unregister_preset(PLAIN_NHL.name)
        unregister_preset(PLAIN_BASE.name)
        unregister_kind(kind.name)


def plain_model(counts: Sequence[int] = (2, 3, 5), seed: int = 0) -> HierNet:
    torch.manual_seed(seed)
    model = build_model("plain-nhl", synthetic_tree(list(counts), seed=seed), img_size=32)
    randomize_bn(model, seed)
    return model.eval()


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_kind_is_known_only_while_registered(plain: BlockKind) -> None:
    assert get_kind("plain") is plain and "plain" in kind_names()
    assert "plain-base" in baseline_names()
    unregister_kind("plain")
    try:
        assert "plain" not in kind_names()
        with pytest.raises(NhlError, match="unknown block kind 'plain'"):
            get_kind("plain")
    finally:
        register_kind(plain)
    with pytest.raises(ValueError, match="already registered"):
        register_kind(PlainKind())


def test_builds_with_the_formula_and_equals_the_per_branch_reference(plain: BlockKind) -> None:
    model = plain_model()
    # the formula by hand: stem, trunk blocks, then per node of each level, heads Linear(8, 1)
    block = lambda cin, cout: 9 * cin * cout + 9 * cout**2 + 4 * cout  # noqa: E731
    trunk = 3 * 16 * 9 + 32 + block(16, 16) + block(16, 24)
    per_node = [block(24, 16), block(16, 16) + block(16, 8), block(8, 8) + 8 + 1]
    assert model.num_params() == trunk + 2 * per_node[0] + 3 * per_node[1] + 5 * per_node[2]
    assert get_preset("plain-nhl").params([2, 3, 5], 5) == model.num_params()
    assert get_preset("plain-nhl").formula() == (
        f"{trunk:,} + {per_node[0]:,}·n1 + {per_node[1]:,}·n2 + {per_node[2]:,}·k"
    )
    assert [lv.wiring.n for lv in model.levels] == [2, 3, 5]  # one grouped level per tree level
    x = images(2, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 5)
        close(out, PerBranchNet.from_model(model)(x))
        # attention at the kind's attention point, in the grouped level as in the branches
        set_attention(model, {"c1": 2.0, "c3": 0.5})
        attended = model(x)
        close(attended, PerBranchNet.from_model(model)(x))
        c1 = model.class_ids.index("c1")
        assert not torch.allclose(attended[:, c1], out[:, c1])
    # zero-init residual reaches the kind's blocks in the trunk and in every level
    assert zero_init_residual(model) == 2 + 4
    assert all(float(lv.blocks[0].bn2.weight.abs().sum()) == 0 for lv in model.levels)


def test_a_cutout_equals_the_full_model_restricted(plain: BlockKind) -> None:
    model = plain_model()
    keep = ["c4", "c0", "c2"]
    expert = cutout(model, keep)
    assert expert.class_ids == keep
    assert expert.num_params() == get_preset("plain-nhl").params(expert.nodes_per_level(), 3)
    x = images(3, 32, seed=1)
    with torch.no_grad():
        full = model(x)
        close(expert(x), full[:, [model.class_ids.index(c) for c in keep]])


def test_the_profile_is_the_formula_and_fvcore_on_the_whole_model(plain: BlockKind) -> None:
    from fvcore.nn import FlopCountAnalysis

    model = plain_model()
    preset = get_preset("plain-nhl")
    counts = nodes_per_level(preset, model.tree)
    prof = compose_profile(preset, counts, 5, img_size=32)
    analysis = FlopCountAnalysis(model, images(1, 32))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_module = analysis.by_module()
    assert prof.params == model.num_params() == preset.params(counts, 5)
    assert prof.macs == analysis.total() > 0
    parts = {p.name: p for p in prof.parts}
    assert parts["trunk"].macs == by_module["trunk"]
    for i in range(3):
        assert parts[f"level {i + 1}"].macs == by_module[f"levels.{i}"]
    # the report compares with the kind's baseline preset, and the cutout row is the expert's
    report = profile_report(preset, model.tree, ["c4", "c0"], img_size=32)
    assert report.baseline == "plain-base"
    base = build_model("plain-base", model.tree, img_size=32, meta=True)
    assert report.row("baseline").params == base.num_params()
    assert report.row("cutout").params == cutout(model, ["c4", "c0"]).num_params()
    assert report.row("full").gmacs == pytest.approx(analysis.total() / 1e9)


def test_save_and_load_round_trip(plain: BlockKind, tmp_path: Path) -> None:
    model = plain_model()
    set_attention(model, {"c2": 1.5})
    save_model(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["preset"]["levels"][0][0]["kind"] == "plain"
    loaded = load_model(tmp_path / "m")
    x = images(2, 32, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    expert = cutout(loaded, ["c3", "c1"])
    save_model(expert, tmp_path / "e")
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "e")(x), expert(x), rtol=0, atol=0)
    # without the kind, the checkpoint is a one-line error naming the kinds nhl knows
    unregister_kind("plain")
    try:
        with pytest.raises(NhlError, match="kind must be one of bottleneck, basic, convnextv2"):
            load_model(tmp_path / "m")
    finally:
        register_kind(plain)


def test_pretrained_weights_in_the_kinds_layout(plain: BlockKind, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    tree = synthetic_tree([4])
    torch.manual_seed(1)
    source = build_model("plain-base", tree, img_size=32)
    randomize_bn(source, 1)
    published = {k.replace("stages.", "body.", 1): v for k, v in source.trunk.state_dict().items()}
    assert source.fc is not None
    published |= {f"head.{k}": v for k, v in source.fc.state_dict().items()}
    save_file(published, str(tmp_path / "plain.safetensors"))
    target = build_model("plain-base", tree, img_size=32)
    report = load_trunk_weights(target, tmp_path / "plain.safetensors")
    assert report.layout == "plain-v0"
    assert report.unused == [] and report.missing == [] and report.shape_mismatch == []
    x = images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), source.eval()(x), rtol=0, atol=0)
    # a ResNet file is not this kind's: one line naming what it looks like and what it needs
    save_file({"conv1.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1)},
              str(tmp_path / "r.safetensors"))  # fmt: skip
    with pytest.raises(NhlError, match=r"looks like a torchvision ResNet.*needs a plain network"):
        load_trunk_weights(target, tmp_path / "r.safetensors")
