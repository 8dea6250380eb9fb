"""ConvNeXt-V2: timm's reference outputs, exact counts, grouped levels, cutouts, attention, files.

The fixtures in ../shared/data/reference/ are timm 1.0.31's outputs on known weights (README
there): the NHL trunk (stem + stages 1-3) and three NHL nodes, the leaf with its pooled LayerNorm
head. The trunk and the single-branch node modules load timm's state dicts unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA
from model_helpers import images, logits, randomize_all, set_chunks, tiny_convnext_preset

from nhlcli.checkpoint import load_model, save_model
from nhlcli.exporters import export_model
from nhlcli.model.attention import set_attention
from nhlcli.model.cutout import cutout
from nhlcli.model.kinds import get_kind
from nhlcli.model.network import ClassHead, build_model
from nhlcli.model.presets import TRUNKS, get_preset
from nhlcli.model.reference import PerBranchNet, synthetic_tree

REFERENCE = SHARED_DATA / "reference"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason="../shared/data/reference not available"
)
NHL = get_preset("convnextv2-nhl")


def load_st(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(REFERENCE / name))


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v.float() for k, v in state.items() if k.startswith(prefix)}


@needs_reference
def test_trunk_loads_timm_names_and_reproduces_timm() -> None:
    trunk = get_kind("convnextv2").trunk(TRUNKS["CNv2-T3"]).eval()
    trunk.load_state_dict(sub_state(load_st("convnextv2_tiny_trunk_fp16.safetensors"), ""))
    io = load_st("convnextv2_tiny_trunk_io.safetensors")
    with torch.no_grad():
        out = trunk(io["x"])
    assert out.shape == (2, 384, 10, 10)
    torch.testing.assert_close(out, io["trunk_out"], atol=1e-4, rtol=1e-4)


@needs_reference
@pytest.mark.parametrize(("node", "level"), [("l1", 0), ("l2", 1), ("leaf", 2)])
def test_node_modules_reproduce_timm(node: str, level: int) -> None:
    state = load_st("convnextv2_nodes_timm.safetensors")
    module = get_kind("convnextv2").single(NHL.levels[level][0]).eval()
    module.load_state_dict(sub_state(state, f"{node}.stage."))
    with torch.no_grad():
        out = module(state[f"{node}.input"])
        if node == "leaf":
            head = ClassHead(64, 1, get_kind("convnextv2").head_norm(64)).eval()
            head.load_state_dict(sub_state(state, "leaf.head."))
            out = head(out)
    torch.testing.assert_close(out, state[f"{node}.output"], atol=1e-4, rtol=1e-4)


@needs_reference
def test_grouped_level_reproduces_timm_nodes_side_by_side() -> None:
    """Two L1 nodes with timm's weights (second one scaled) as one grouped level."""
    state = load_st("convnextv2_nodes_timm.safetensors")
    node = sub_state(state, "l1.stage.")
    model = build_model(NHL, synthetic_tree([2, 2, 2], shuffle=False), meta=True)
    level = get_kind("convnextv2").level(NHL.levels[0], model.levels[0].wiring).eval()
    level.load_state_dict({k: torch.stack([v, 0.5 * v]) for k, v in node.items()})
    with torch.no_grad():
        out = level(state["l1.input"])
    one = get_kind("convnextv2").single(NHL.levels[0][0]).eval()
    one.load_state_dict({k: 0.5 * v for k, v in node.items()})
    with torch.no_grad():
        second = one(state["l1.input"])
    torch.testing.assert_close(out[:, :256], state["l1.output"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[:, 256:], second, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("counts", "paper"),
    [((1, 9, 10), 15_277_834), ((6, 26, 100), 27_744_740), ((17, 161, 1000), 121_381_352)],
)
def test_convnextv2_nhl_counts_equal_table_4(counts: tuple[int, ...], paper: int) -> None:
    model = build_model(NHL, synthetic_tree(counts, seed=1), meta=True)
    assert model.num_params() == NHL.params(counts, counts[-1]) == paper
    assert sum(p.numel() for p in model.trunk.parameters()) == 12_378_240


@pytest.mark.parametrize(
    ("arch", "k", "paper"),
    [
        ("resnet18", 10, 11_181_642),
        ("resnet18", 100, 11_227_812),
        ("resnet18", 1000, 11_689_512),
        ("resnet152", 10, 58_164_298),
        ("resnet152", 100, 58_348_708),
        ("resnet152", 1000, 60_192_808),
        ("resnet200", 100, 62_829_732),
        ("resnet200", 1000, 64_673_832),
        ("convnextv2-tiny", 10, 27_874_186),
        ("convnextv2-tiny", 100, 27_943_396),
        ("convnextv2-tiny", 1000, 28_635_496),
    ],
)
def test_baselines_equal_table_3_and_4(arch: str, k: int, paper: int) -> None:
    model = build_model(arch, synthetic_tree([k]), meta=True)
    assert model.num_params() == get_preset(arch).params([k], k) == paper


def test_node_and_timm_key_names() -> None:
    model = build_model(NHL, synthetic_tree([2, 3, 4]), meta=True)
    names = dict(model.named_parameters())
    assert names["trunk.stages.2.blocks.8.mlp.grn.weight"].shape == (1536,)
    assert names["trunk.stages.1.downsample.1.weight"].shape == (192, 96, 2, 2)
    assert names["levels.0.downsample.1.weight"].shape == (2, 256, 384, 1, 1)
    assert names["levels.2.downsample.1.weight"].shape == (4, 64, 128, 2, 2)
    assert names["levels.1.blocks.0.gamma"].shape == (3, 128)
    assert names["heads.norm_weight"].shape == (4, 64)


def tiny_model(counts: tuple[int, ...] = (3, 5, 9), seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(tiny_convnext_preset(), synthetic_tree(counts, seed=seed), img_size=32)
    randomize_all(model, seed)
    return model.eval()


@pytest.mark.parametrize("counts", [(3, 5, 9), (1, 4, 4), (2, 2, 7)])
def test_grouped_levels_equal_per_branch_reference(counts: tuple[int, ...]) -> None:
    model = tiny_model(counts)
    ref = PerBranchNet.from_model(model).eval()
    x = images(2, 32)
    torch.testing.assert_close(logits(model, x), logits(ref, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("train", [False, True])
def test_image_groups_give_the_same_logits_and_gradients(train: bool) -> None:
    """CPU image groups (`execution.CpuChunks`) are exact for ConvNeXt in both modes."""
    model = tiny_model((3, 5, 9)).train(train)
    x = images(3, 32)
    results = []
    for chunk_bytes in (None, 1):  # the whole batch at once, then one image at a time
        set_chunks(model, chunk_bytes)
        level = model.levels[2]
        assert len(level.execution.partition(level, x).images) == (1 if chunk_bytes is None else 3)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    for g1, g2 in zip(ga, gb, strict=True):
        torch.testing.assert_close(g2, g1, atol=1e-5, rtol=1e-4)


def test_cutout_logits_equal_the_full_model() -> None:
    model = tiny_model((3, 5, 9))
    keep = [model.class_ids[i] for i in (7, 0, 4)]
    expert = cutout(model, keep)
    x = images(3, 32, seed=2)
    full = logits(model, x)
    idx = [model.class_ids.index(c) for c in keep]
    torch.testing.assert_close(logits(expert, x), full[:, idx], atol=1e-5, rtol=1e-4)
    assert expert.num_params() == expert.preset.params(expert.nodes_per_level(), 3)


def test_attention_scales_only_the_attended_branches_and_matches_the_reference() -> None:
    model = tiny_model((3, 5, 9))
    x = images(2, 32, seed=3)
    plain = logits(model, x)
    target = model.class_ids[2]
    set_attention(model, {target: 1.7})
    attended = logits(model, x)
    ref = PerBranchNet.from_model(model).eval()
    torch.testing.assert_close(attended, logits(ref, x), atol=1e-5, rtol=1e-4)
    changed = (attended - plain).abs().amax(0) > 1e-6
    assert changed.tolist() == [c == target for c in model.class_ids]
    set_attention(model, {target: 1.0})
    torch.testing.assert_close(logits(model, x), plain, atol=0, rtol=0)


def test_checkpoint_round_trip_and_export(tmp_path: Path) -> None:
    model = tiny_model((2, 3, 4))
    set_attention(model, {model.class_ids[1]: 1.5})
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = images(2, 32, seed=4)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), atol=0, rtol=0)
    for fmt in ("onnx", "torchscript"):
        res = export_model(loaded, tmp_path / f"m.{fmt}", fmt)
        assert Path(res.path).is_file()


def official_layout(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fixture's tensors under the official checkpoints' keys (from the keys TSV)."""
    rows = (REFERENCE / "convnextv2_tiny_official_keys.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        key, shape, timm_key = row.split("\t")
        if timm_key in timm_state:
            dims = tuple(int(d) for d in shape.split("x"))
            out[key] = timm_state[timm_key].reshape(dims).clone()
    return out


@needs_reference
def test_pretrained_trunk_in_both_layouts_gives_identical_outputs(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from nhlcli.errors import NhlError
    from nhlcli.training.trunk_weights import freeze_trunk, load_trunk_weights

    timm_state = load_st("convnextv2_tiny_trunk_fp16.safetensors")
    official = official_layout(timm_state)
    assert any(k.endswith("grn.gamma") and v.shape[:3] == (1, 1, 1) for k, v in official.items())
    save_file(timm_state, str(tmp_path / "timm.safetensors"))
    torch.save({"model": official}, tmp_path / "official.pth")
    io = load_st("convnextv2_tiny_trunk_io.safetensors")
    outs = []
    for name, layout in (("timm.safetensors", "timm"), ("official.pth", "official")):
        model = build_model(NHL, synthetic_tree([2, 3, 4]), img_size=160).eval()
        report = load_trunk_weights(model, tmp_path / name)
        assert report.layout == f"{layout}-convnextv2"
        assert report.missing == [] and report.unused == [] and report.shape_mismatch == []
        assert len(report.loaded) == len(timm_state)
        with torch.no_grad():
            outs.append(model.trunk(io["x"]))
        assert freeze_trunk(model) == 12_378_240
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    torch.testing.assert_close(outs[0], io["trunk_out"], atol=1e-4, rtol=1e-4)
    # the whole baseline's file into the NHL: stage 4 and the head are reported unused
    full = {**timm_state, "stages.3.blocks.0.gamma": torch.zeros(768)}
    full["head.fc.weight"] = torch.zeros(1000, 768)
    save_file(full, str(tmp_path / "full.safetensors"))
    model = build_model(NHL, synthetic_tree([2, 3, 4]), meta=False, img_size=64)
    rep = load_trunk_weights(model, tmp_path / "full.safetensors")
    assert sorted(rep.unused) == ["head.fc.weight", "stages.3.blocks.0.gamma"]
    # a ResNet file into the ConvNeXt trunk, and a ViT file: one line naming what they look like
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(1)},
              str(tmp_path / "r.safetensors"))  # fmt: skip
    with pytest.raises(NhlError, match=r"looks like a torchvision ResNet.*needs a timm ConvNeXt"):
        load_trunk_weights(model, tmp_path / "r.safetensors")
    save_file({"patch_embed.proj.weight": torch.zeros(1)}, str(tmp_path / "vit.safetensors"))
    with pytest.raises(NhlError, match="looks like a vision transformer"):
        load_trunk_weights(model, tmp_path / "vit.safetensors")


def test_predict_from_the_model_folder_and_the_onnx_file(tmp_path: Path) -> None:
    from nhlcli.prediction import open_predictor

    model = tiny_model((2, 3, 4))
    save_model(model, tmp_path / "m")
    export_model(model, tmp_path / "m.onnx", "onnx")
    x = images(2, 32, seed=6)
    want = logits(model, x).numpy()
    for source in (tmp_path / "m", tmp_path / "m.onnx"):
        predictor = open_predictor(source)
        assert predictor.class_ids == model.class_ids
        got = predictor.logits(x)
        assert abs(got - want).max() < 1e-4


def test_basic_block_levels_equal_the_per_branch_reference() -> None:
    """The basic kind's grouped level (no preset uses it yet) against its reference."""
    from model_helpers import TINY_TRUNK

    from nhlcli.model.presets import BlockSpec, Preset

    specs = ((BlockSpec(32, 16, 16, 2, "basic"),), (BlockSpec(16, 8, 8, 1, "basic"),))
    preset = Preset("tiny-basic", TINY_TRUNK, specs, "per_class", "tiny basic-block NHL")
    torch.manual_seed(3)
    model = build_model(preset, synthetic_tree([3, 7], seed=4), img_size=64)
    randomize_all(model, 3, std=0.1)
    for train in (False, True):
        model.train(train)
        ref = PerBranchNet.from_model(model)
        x = images(3, 64, seed=1)
        torch.testing.assert_close(logits(model, x), logits(ref, x), atol=1e-4, rtol=1e-4)
    assert model.num_params() == preset.params([3, 7], 7)
    set_attention(model.eval(), {model.class_ids[0]: 2.0})
    ref = PerBranchNet.from_model(model).eval()
    torch.testing.assert_close(logits(model, x), logits(ref, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["resnet18", "convnextv2-tiny"])
def test_baselines_run_cut_and_load(arch: str, tmp_path: Path) -> None:
    """The new baselines (shared head) run, cut out (a k-way FC sliced) and round-trip."""
    torch.manual_seed(0)
    model = build_model(arch, synthetic_tree([6]), img_size=32).eval()
    x = images(2, 32, seed=5)
    full = logits(model, x)
    keep = [model.class_ids[4], model.class_ids[1]]
    expert = cutout(model, keep)
    torch.testing.assert_close(logits(expert, x), full[:, [4, 1]], atol=1e-5, rtol=1e-4)
    save_model(expert, tmp_path / "e")
    torch.testing.assert_close(logits(load_model(tmp_path / "e"), x), logits(expert, x))


@needs_reference
def test_init_cli_loads_an_official_layout_trunk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from cli_helpers import run_cli

    official = official_layout(load_st("convnextv2_tiny_trunk_fp16.safetensors"))
    torch.save({"model": official}, tmp_path / "official.pt")
    synthetic_tree([2, 3, 4]).save(tmp_path / "tree.json")
    code, out, _ = run_cli(
        ["init", "-a", "convnextv2-nhl", "-t", tmp_path / "tree.json", "-o", tmp_path / "m",
         "--img-size", "64", "--trunk-weights", tmp_path / "official.pt", "--json"], capsys,
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)["trunk_weights"]
    assert report["layout"] == "official-convnextv2" and report["loaded"] == len(official)
    model = load_model(tmp_path / "m")
    want = official["stages.2.8.grn.gamma"].reshape(-1).float()
    assert torch.equal(model.trunk.stages[2].blocks[8].mlp.grn.weight.detach(), want)


@needs_reference
def test_every_official_key_maps_to_its_timm_key_and_shape() -> None:
    from nhlcli.model.kinds.convnextv2 import official_to_timm

    timm_shapes = dict(
        row.split("\t")
        for row in (REFERENCE / "convnextv2_tiny_timm_keys.tsv").read_text().splitlines()[1:]
    )
    rows = (REFERENCE / "convnextv2_tiny_official_keys.tsv").read_text().splitlines()[1:]
    assert len(rows) == len(timm_shapes) == 200
    for row in rows:
        key, shape, timm_key = row.split("\t")
        dims = tuple(int(d) for d in shape.split("x"))
        name, tensor = official_to_timm(key, torch.zeros(dims))
        assert name == timm_key
        assert "x".join(map(str, tensor.shape)) == timm_shapes[timm_key]


@pytest.mark.parametrize("arch", ["convnextv2-nhl", "n3hl"])
def test_channels_last_keeps_the_logits(arch: str) -> None:
    """`model.to(memory_format=channels_last)` (training's default on CUDA) works on every level
    kind's 5-D per-node conv weights and changes no logit; ConvNeXt's raised before."""
    from nhlcli.model.network import build_model
    from nhlcli.model.reference import synthetic_tree

    torch.manual_seed(0)
    model = build_model(arch, synthetic_tree([2, 4, 10], seed=0), img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        params = [id(p) for p in model.parameters()]
        model.to(memory_format=torch.channels_last)
        assert [id(p) for p in model.parameters()] == params  # optimizers keep their references
        last = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last, plain, rtol=1e-4, atol=1e-4)
