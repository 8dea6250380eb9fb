"""Cutouts: a real smaller network whose logits equal the full model's for the kept classes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_helpers import images, logits, named_tree, randomize_bn, set_chunks, tiny_preset

from nhlcli.errors import NhlError
from nhlcli.model.attention import set_attention
from nhlcli.model.cutout import cutout, cutout_summary
from nhlcli.model.network import HierNet, build_model
from nhlcli.model.reference import synthetic_tree
from nhlcli.selection import resolve_tokens


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()) + 1e-6)


def tiny_model(counts: list[int], seed: int = 0) -> HierNet:
    torch.manual_seed(seed)
    model = HierNet(tiny_preset(len(counts)), synthetic_tree(counts, seed=seed), img_size=32)
    randomize_bn(model, seed)
    return model.eval()


@st.composite
def tree_and_subset(draw: st.DrawFn) -> tuple[list[int], int, list[int], str, int | None]:
    levels = draw(st.integers(1, 3))
    counts = [draw(st.integers(1, 3))]
    for _ in range(levels - 1):
        counts.append(counts[-1] + draw(st.integers(0, 3)))
    seed = draw(st.integers(0, 1000))
    k = counts[-1]
    subset = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    order = draw(st.sampled_from(["given", "tree"]))
    chunk_bytes = draw(st.sampled_from([None, 1]))  # the full model whole, or node by node
    return counts, seed, subset, order, chunk_bytes


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_and_subset())
def test_cutout_logits_equal_full_logits(
    case: tuple[list[int], int, list[int], str, int | None],
) -> None:
    counts, seed, subset, order, chunk_bytes = case
    model = tiny_model(counts, seed)
    set_chunks(model, chunk_bytes)
    ids = [model.class_ids[i] for i in subset]
    expert = cutout(model, ids, order=order)
    expected_ids = ids if order == "given" else sorted(ids, key=model.tree.class_index)
    assert expert.class_ids == expected_ids
    idx = [model.tree.class_index(c) for c in expected_ids]
    x = images(2, 32, seed)
    close(logits(expert, x), logits(model, x)[:, idx])
    assert expert.num_params() == expert.preset.params(expert.nodes_per_level(), len(ids))


@pytest.mark.parametrize(("arch", "counts"), [("n3hl", [2, 4, 9]), ("phl-latesp", [6])])
def test_cutout_of_paper_presets(arch: str, counts: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(arch, synthetic_tree(counts, seed=1), img_size=48)
    randomize_bn(model)
    model.eval()
    ids = [model.class_ids[i] for i in (4, 0, 2)]
    expert = cutout(model, ids)
    x = images(2, 48)
    close(logits(expert, x), logits(model, x)[:, [4, 0, 2]])
    assert expert.num_params() < model.num_params()


def test_cutout_of_a_cutout_and_train_mode() -> None:
    model = tiny_model([2, 4, 10], seed=3)
    first = cutout(model, model.class_ids[1:8])
    second = cutout(first, [model.class_ids[6], model.class_ids[2]])
    x = images(3, 32)
    close(logits(second, x), logits(model, x)[:, [6, 2]])
    assert second.cut_from is not None and second.cut_from["classes"] == 7
    assert second.cut_from["previous"]["classes"] == 10
    # train mode: batch statistics are per channel, so they also agree
    model.train()
    second = cutout(cutout(model, model.class_ids[1:8]), [model.class_ids[6], model.class_ids[2]])
    assert second.training
    close(logits(second, x), logits(model, x)[:, [6, 2]])


def test_cutout_is_independent_of_the_full_model() -> None:
    model = tiny_model([2, 3, 5], seed=1)
    expert = cutout(model, model.class_ids[:2])
    for a in expert.parameters():
        assert all(a.data_ptr() != b.data_ptr() for b in model.parameters())
    assert not any(t.is_meta for t in expert.state_dict().values())
    assert all(p.requires_grad for p in expert.parameters())


def test_selection_by_superclass_name_and_id() -> None:
    torch.manual_seed(0)
    model = HierNet(tiny_preset(3), named_tree(), img_size=32).eval()
    assert resolve_tokens(model.tree, ["domestic_cat"]) == ["c_tabby", "c_siamese"]
    assert resolve_tokens(model.tree, ["pug", "animal"]) == [
        "c_pug", "c_tabby", "c_beagle", "c_siamese",
    ]  # fmt: skip
    expert = cutout(model, ["thing", "Domestic Cat"])
    assert expert.class_ids == ["c_saw", "c_tabby", "c_siamese"]
    assert expert.nodes_per_level() == [2, 2, 3]
    x = images(2, 32)
    close(logits(expert, x), logits(model, x)[:, [0, 1, 3]])
    tree_order = cutout(model, ["c_pug", "c_saw"], order="tree")
    assert tree_order.class_ids == ["c_saw", "c_pug"]


def test_bad_selections_are_user_errors() -> None:
    model = HierNet(tiny_preset(3), named_tree(), img_size=32)
    with pytest.raises(NhlError, match="'lion' is not a class or node"):
        cutout(model, ["tabby", "lion"])
    with pytest.raises(NhlError, match="empty"):
        cutout(model, [])
    with pytest.raises(NhlError, match="class order"):
        cutout(model, ["tabby"], order="random")


def test_attention_carries_over_and_summary() -> None:
    model = HierNet(tiny_preset(3), named_tree(), img_size=32).eval()
    set_attention(model, {"tabby": 1.8, "pug": 1.5})
    expert = cutout(model, ["tabby", "beagle"])
    assert expert.attention_level == 3 and expert.attention == {"c_tabby": 1.8}
    x = images(2, 32)
    close(logits(expert, x), logits(model, x)[:, [1, 2]])
    s = cutout_summary(model, expert)
    assert s["num_classes"] == {"full": 5, "expert": 2}
    assert (
        s["params"]["full"] == model.num_params() and s["params"]["expert"] == expert.num_params()
    )
    assert s["attention"] == {"level": 3, "scales": {"c_tabby": 1.8}}


@pytest.mark.parametrize("arch", ["resnet50", "phl-1branch"])
def test_cutout_of_shared_head_presets(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, synthetic_tree([7]), img_size=32).eval()
    expert = cutout(model, [model.class_ids[5], model.class_ids[1]])
    assert expert.num_params() == model.num_params() - 5 * (model.preset.head_in + 1)
    x = images(2, 32)
    close(logits(expert, x), logits(model, x)[:, [5, 1]])
