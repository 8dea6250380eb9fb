"""The grouped network equals a plain per-branch implementation; layout, config and sizes."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from model_helpers import images, logits, randomize_bn, set_chunks, tiny_preset

from nhlcli.errors import NhlError
from nhlcli.model.grouped_ops import Wiring
from nhlcli.model.network import HierNet, build_model
from nhlcli.model.rebuild import model_from_config
from nhlcli.model.reference import PerBranchNet, synthetic_tree

SHAPES = [
    [1, 1, 1],  # a chain: every level aligned
    [2, 2, 2],  # aligned below level 1
    [2, 5, 9],  # fanout > 1 with singletons, shuffled class order
    [3, 3, 11],
    [1, 4, 4],
]


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("counts", SHAPES)
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("chunk_bytes", [None, 1, 3000])  # whole levels, one node, a few nodes
def test_grouped_equals_per_branch_on_tiny_preset(
    counts: list[int], train: bool, chunk_bytes: int | None
) -> None:
    torch.manual_seed(0)
    tree = synthetic_tree(counts, seed=sum(counts))
    model = HierNet(tiny_preset(3), tree, img_size=32)
    randomize_bn(model)
    set_chunks(model, chunk_bytes)
    model.train(train)
    if chunk_bytes == 1:
        level, h = model.levels[2], torch.zeros(3, 8, 4, 4)
        part = level.execution.partition(level, h)
        assert len(part.nodes) == counts[2]
        # eval mode also runs the batch in groups of images where the nodes read different
        # parents; training, and a level reading one shared input, keep the whole batch
        assert len(part.images) == (1 if train or level.wiring.n_inputs == 1 else 3)
    ref = PerBranchNet.from_model(model)
    x = images(3, 32)
    assert_close(logits(model, x), logits(ref, x))
    if train:  # running statistics moved identically, node by node
        level = model.levels[1].blocks[0]
        for i in range(level.n):
            node = ref.nodes[1][i].blocks[0]
            torch.testing.assert_close(level.bn2.running_mean[i], node.bn2.running_mean)
            torch.testing.assert_close(level.bn2.running_var[i], node.bn2.running_var)
        assert int(level.bn2.num_batches_tracked) == 1


@pytest.mark.parametrize(
    ("arch", "counts"),
    [("n3hl", [2, 3, 6]), ("phl-latesp", [5]), ("n2hl", [2, 5]), ("n4hl", [1, 2, 3, 4])],
)
def test_grouped_equals_per_branch_on_paper_presets(arch: str, counts: list[int]) -> None:
    torch.manual_seed(1)
    model = build_model(arch, synthetic_tree(counts, seed=2), img_size=64)
    randomize_bn(model, seed=1)
    model.eval()
    ref = PerBranchNet.from_model(model)
    x = images(2, 64)
    out = logits(model, x)
    assert_close(out, logits(ref, x))
    shared = PerBranchNet.from_model(model, share=True)  # views: the benchmark's baseline
    assert (
        shared.nodes[-1][0].blocks[0].conv1.weight.data_ptr()
        == model.levels[-1].blocks[0].conv1.weight.data_ptr()
    )
    assert_close(out, logits(shared, x))


@pytest.mark.parametrize("arch", ["resnet50", "phl-1branch"])
def test_shared_head_presets_equal_per_branch(arch: str) -> None:
    torch.manual_seed(2)
    model = build_model(arch, synthetic_tree([2, 7]), img_size=32).eval()
    ref = PerBranchNet.from_model(model)
    out = logits(model, images(2, 32))
    assert out.shape == (2, 7)
    assert_close(out, logits(ref, images(2, 32)))


@pytest.mark.parametrize("chunk_bytes", [None, 2000])
def test_gradients_match_per_branch(chunk_bytes: int | None) -> None:
    torch.manual_seed(3)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 4, 7], seed=4), img_size=32)
    set_chunks(model, chunk_bytes)
    ref = PerBranchNet.from_model(model)
    x = images(2, 32)
    model(x).square().sum().backward()
    ref(x).square().sum().backward()
    g = model.levels[2].blocks[0].conv1.weight.grad
    assert g is not None
    for i in range(model.levels[2].n):
        gi = ref.nodes[2][i].blocks[0].conv1.weight.grad
        torch.testing.assert_close(g[i], gi, rtol=1e-3, atol=1e-3 * float(gi.abs().max()) + 1e-8)


def _edges_into(root: torch.autograd.graph.Node) -> dict[int, int]:
    """How many graph edges reach each AccumulateGrad node (keyed by id of its variable)."""
    count: dict[int, int] = {}
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            if hasattr(nxt, "variable"):
                count[id(nxt.variable)] = count.get(id(nxt.variable), 0) + 1
            todo.append(nxt)
    return count


@pytest.mark.parametrize("chunk_bytes", [None, 1])
def test_prepared_weights_follow_every_workflow(chunk_bytes: int | None) -> None:
    """`prepare_inference` keeps derived weights (bucket order) across no-grad forwards; an
    optimizer step (eval mode, no switch), train(), load_state_dict, .to() and a re-prepare
    after a .data write must all be seen, and eval() on a prepared model keeps them."""
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 5, 9], seed=4), img_size=32)
    set_chunks(model, chunk_bytes)
    x = images(3, 32)
    level = model.levels[2]

    def fresh() -> torch.Tensor:  # the same weights in a model that never ran
        other = HierNet(tiny_preset(3), model.tree, img_size=32)
        other.load_state_dict(model.state_dict())
        set_chunks(other, chunk_bytes)
        with torch.no_grad():
            return other.eval()(x)

    assert model.prepare_inference() is model and not model.training and level.prepared
    with torch.no_grad():
        first = model(x)
    kept = level._prepared.ranges
    assert kept and (chunk_bytes or kept[0]._derived)  # whole: bucket-ordered weights kept
    model.eval()  # users call it often: the preparation stays
    with torch.no_grad():
        assert_close(model(x), first)
    assert level.prepared and level._prepared.ranges is kept
    assert_close(first, fresh())

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).square().sum().backward()  # eval mode, gradients on: nothing kept is used
    opt.step()  # in place, without a mode switch
    with torch.no_grad():
        stepped = model(x)
    assert not torch.allclose(stepped, first)
    assert_close(stepped, fresh())

    model.train()  # training ends the preparation
    assert not level.prepared
    opt.zero_grad()
    model(x).square().sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    model.eval()
    with torch.no_grad():
        assert_close(model(x), fresh())

    model.prepare_inference()
    with torch.no_grad():
        model(x)
    state = {k: v * 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    with torch.no_grad():
        assert_close(model(x), fresh())
    model.double().float()  # moved and back: what was kept is made again
    with torch.no_grad():
        assert_close(model(x), fresh())
    for p in model.parameters():
        p.data.mul_(1.5)  # written in place without gradients: prepare again
    model.prepare_inference()
    with torch.no_grad():
        assert_close(model(x), fresh())
    copied = copy.deepcopy(model)
    assert model.levels[2].prepared and not copied.levels[2].prepared


def test_prepared_weights_are_not_in_the_state_dict() -> None:
    model = HierNet(tiny_preset(3), synthetic_tree([2, 5, 9], seed=4), img_size=32)
    keys = set(model.state_dict())
    with torch.no_grad():
        model.prepare_inference()(images(2, 32))
    assert set(model.state_dict()) == keys


def test_compiled_levels_equal_whole_levels() -> None:
    from nhlcli.model.execution import Compiled, set_execution

    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 5, 9], seed=4), img_size=32).eval()
    randomize_bn(model)
    x = images(3, 32)
    set_chunks(model, None)
    want = logits(model, x)
    set_execution(model, Compiled)
    assert_close(logits(model, x), want)


def test_torch_compile_of_a_chunked_model_in_eval_without_gradients() -> None:
    """A compiled graph (fake tensors) runs whole levels and makes derived weights itself, also
    for a prepared model (Inductor once failed with "Cannot convert expression to float")."""
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 5, 9], seed=4), img_size=32)
    model.prepare_inference()
    set_chunks(model, 1)
    x = images(3, 32)
    with torch.no_grad():
        assert_close(torch.compile(model)(x), model(x))


def test_a_traced_model_keeps_a_dynamic_batch_with_image_groups() -> None:
    """Image groups split the batch at fixed positions: tracing must not bake them in."""
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 4, 7], seed=3), img_size=32).eval()
    set_chunks(model, 1)  # eager eval: one image per group
    level = model.levels[2]
    assert len(level.execution.partition(level, torch.zeros(3, 8, 4, 4)).images) == 3
    with torch.no_grad():
        traced = torch.jit.trace(model, images(2, 32))
        x = images(5, 32)
        assert_close(traced(x), model(x))


@pytest.mark.parametrize("chunk_bytes", [None, 1, 3000])
def test_chunked_level_backward_is_linear(chunk_bytes: int | None) -> None:
    """Each parameter gets ONE gradient edge (a split) and the input no more than when the level
    runs whole, not one per chunk (each would add a zero gradient of the whole tensor)."""
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([3, 5, 11], seed=5), img_size=32)
    level = model.levels[2]
    set_chunks(model, chunk_bytes)
    model.train()
    x = torch.randn(2, level.wiring.n_inputs * level.specs[0].cin, 4, 4, requires_grad=True)
    if chunk_bytes == 1:
        assert len(level.execution.partition(level, x).nodes) == level.n
    edges = _edges_into(level(x).grad_fn)
    set_chunks(model, None)
    assert edges[id(x)] <= _edges_into(level(x).grad_fn)[id(x)] <= 2
    params = list(level.parameters())
    assert params and all(edges[id(p)] == 1 for p in params)


def test_wiring_buckets_by_fanout() -> None:
    w = Wiring([1, 0, 1, 2, 1], 3)  # parent 1 has 3 children, parents 0 and 2 one each
    assert not w.aligned
    assert w.buckets == [((0, 2), (1, 3), 1), ((1,), (0, 2, 4), 3)]
    assert not w.in_order
    x = torch.arange(3 * 2, dtype=torch.float32).view(1, 6, 1, 1)  # 3 slices of 2 channels
    assert w.gather(x).flatten().tolist() == [2, 3, 0, 1, 2, 3, 4, 5, 2, 3]
    assert Wiring([0, 1, 2], 3).aligned
    shared = Wiring([0, 0, 0, 0], 1)
    assert shared.buckets == [((0,), (0, 1, 2, 3), 4)] and shared.in_order


def test_parent_conv_reads_parents_without_replication() -> None:
    from nhlcli.model.grouped_ops import GroupedConv

    torch.manual_seed(0)
    w = Wiring([2, 0, 2, 1, 2, 0], 3)
    conv = GroupedConv(6, 4, 5, 1, stride=2)
    x = torch.randn(2, 12, 6, 6)
    y = conv.forward_from_parents(x, w)
    assert y.shape == (2, 30, 3, 3)
    for i, p in enumerate(w.parents):
        xi = x[:, 4 * p : 4 * (p + 1)]
        yi = torch.nn.functional.conv2d(xi, conv.weight[i], stride=2)
        torch.testing.assert_close(y[:, 5 * i : 5 * (i + 1)], yi)


def test_node_order_and_parameter_layout() -> None:
    tree = synthetic_tree([2, 3, 5], seed=7)
    model = build_model("n3hl", tree, meta=True)
    assert model.level_ids == [tree.level(1), tree.level(2), tree.level(3)]
    assert model.level_ids[2] == tree.class_ids
    assert model.nodes_per_level() == [2, 3, 5]
    sd = model.state_dict()
    assert sd["levels.0.blocks.0.conv1.weight"].shape == (2, 128, 1024, 1, 1)
    assert sd["levels.1.blocks.0.conv2.weight"].shape == (3, 64, 64, 3, 3)
    assert sd["levels.2.blocks.0.downsample.0.weight"].shape == (5, 128, 256, 1, 1)
    assert sd["levels.2.blocks.0.bn3.running_var"].shape == (5, 128)
    assert sd["heads.weight"].shape == (5, 128) and sd["heads.bias"].shape == (5,)


def test_resnet50_uses_torchvision_names() -> None:
    model = build_model("resnet50", synthetic_tree([10]), meta=True)
    sd = model.state_dict()
    pat = re.compile(
        r"^trunk\.(conv1|bn1|layer[1-4]\.\d+\.(conv[123]|bn[123]|downsample\.[01]))\."
        r"(weight|bias|running_mean|running_var|num_batches_tracked)$"
    )
    trunk_keys = [k for k in sd if k.startswith("trunk.")]
    assert all(pat.match(k) for k in trunk_keys)
    assert len(trunk_keys) == 318  # torchvision resnet50 has 320 keys: these + fc.weight, fc.bias
    assert set(sd) - set(trunk_keys) == {"fc.weight", "fc.bias"}
    assert sd["fc.weight"].shape == (10, 2048)
    assert sd["trunk.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


@pytest.mark.parametrize("size", [64, 96, 160])
def test_other_input_sizes(size: int) -> None:
    model = build_model("n3hl", synthetic_tree([1, 2, 3]), img_size=size).eval()
    assert logits(model, images(1, size)).shape == (1, 3)


def test_config_is_json_and_rebuilds_the_same_network() -> None:
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 3, 6], seed=2), img_size=48)
    cfg = json.loads(json.dumps(model.config()))
    assert cfg["format"] == "nhl-model/1" and cfg["arch"] == "tiny3"
    assert cfg["img_size"] == 48 and cfg["cut_from"] is None and cfg["attention"] is None
    assert cfg["nodes_per_level"] == [2, 3, 6] and cfg["params"] == model.num_params()
    again = model_from_config(cfg)
    assert again.tree == model.tree and again.preset == model.preset
    again.load_state_dict(model.state_dict())
    model.eval()
    again.eval()
    assert torch.equal(logits(model, images(1, 48)), logits(again, images(1, 48)))


def test_bad_configs_and_sizes_are_user_errors() -> None:
    cfg = build_model("n3hl", synthetic_tree([1, 1, 2]), meta=True).config()
    with pytest.raises(NhlError, match="unknown model format"):
        model_from_config({**cfg, "format": "nhl-model/9"})
    with pytest.raises(NhlError, match="invalid model config"):
        model_from_config({**cfg, "preset": {"name": "x"}})
    with pytest.raises(NhlError, match="too small"):
        build_model("n3hl", synthetic_tree([1, 1, 2]), img_size=8, meta=True)


def test_one_image_size_bound_for_networks_and_profiles() -> None:
    """Building a network and composing its profile accept the same sizes, with the same error.

    32 px is the smallest size every preset runs at (each downsamples by 32; ConvNeXt-V2's 2x2/2
    downsamples fail on a 1-pixel map, so 16 px cannot be allowed for profiles either)."""
    from nhlcli.model.config import MAX_IMG_SIZE, MIN_IMG_SIZE
    from nhlcli.model.presets import PRESETS
    from nhlcli.profiling.compose import compose_profile

    tree = synthetic_tree([1, 1, 2])
    for size in (MIN_IMG_SIZE - 1, 16, MAX_IMG_SIZE + 1):
        with pytest.raises(NhlError) as built:
            build_model("n3hl", tree, img_size=size, meta=True)
        with pytest.raises(NhlError) as composed:
            compose_profile("n3hl", [1, 1, 2], 2, size)
        assert str(built.value) == str(composed.value)
    for name, preset in PRESETS.items():  # every preset runs at the smallest size (shapes only)
        n = max(preset.num_levels, 1)
        model = build_model(name, synthetic_tree([1] * (n - 1) + [2]), img_size=32, meta=True)
        x = torch.empty(1, 3, MIN_IMG_SIZE, MIN_IMG_SIZE, device="meta")
        assert model.eval()(x).shape == (1, 2), name
        if name == "convnextv2-tiny":  # and one pixel less has nothing left to downsample
            with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
                model(torch.empty(1, 3, MIN_IMG_SIZE - 1, MIN_IMG_SIZE - 1, device="meta"))


def test_channels_last_and_dtype_conversions() -> None:
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), synthetic_tree([2, 3, 6], seed=2), img_size=32).eval()
    x = images(2, 32)
    base = logits(model, x)
    weight = model.levels[1].blocks[0].conv2.weight
    model.to(memory_format=torch.channels_last)  # 5-D grouped weights are converted as 4-D ones
    assert model.levels[1].blocks[0].conv2.weight is weight and weight.dim() == 5
    assert weight.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert_close(logits(model, x.contiguous(memory_format=torch.channels_last)), base)
    model.double()
    assert weight.dtype == torch.float64
    assert_close(logits(model, x.double()).float(), base)


def test_a_model_run_in_inference_mode_can_then_be_trained() -> None:
    """Wiring's cached index tensors must not be inference tensors (they are saved for backward)."""
    import torch

    from nhlcli.hierarchy.shipped_trees import resolve_tree
    from nhlcli.model.network import build_model

    model = build_model("n3hl", resolve_tree("imagenette-wordnet-L3"), img_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        model.eval()(x)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
