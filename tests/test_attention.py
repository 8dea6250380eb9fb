"""Top-down attention: identity at 1.0, effect on the named paths only, the rule, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import images, logits, named_tree, randomize_bn, set_chunks, tiny_preset

from nhlcli.errors import NhlError
from nhlcli.model.attention import affected_nodes, clear_attention, parse_attend, set_attention
from nhlcli.model.network import HierNet, build_model
from nhlcli.model.reference import PerBranchNet, synthetic_tree

# class order of named_tree(): saw, tabby, beagle, siamese, pug


def model() -> HierNet:
    torch.manual_seed(0)
    m = HierNet(tiny_preset(3), named_tree(), img_size=32)
    randomize_bn(m)
    return m.eval()


def test_scale_one_is_bit_identical() -> None:
    m = model()
    x = images(2, 32)
    base = logits(m, x)
    set_attention(m, {"tabby": 1.0, "dog": 1.0})
    assert torch.equal(logits(m, x), base)
    set_attention(m, {"tabby": 1.8})
    assert not torch.allclose(logits(m, x), base)
    clear_attention(m)
    assert torch.equal(logits(m, x), base)
    assert m.attention_level is None and m.attention == {}


def test_leaf_attention_changes_only_that_class() -> None:
    m = model()
    x = images(2, 32)
    base = logits(m, x)
    set_attention(m, {"tabby": 1.8})
    out = logits(m, x)
    assert not torch.allclose(out[:, 1], base[:, 1])
    others = [0, 2, 3, 4]
    torch.testing.assert_close(out[:, others], base[:, others])


def test_superclass_at_level_one_changes_all_its_classes() -> None:
    m = model()
    x = images(2, 32)
    base = logits(m, x)
    set_attention(m, {"thing": 1.8}, level=1)
    out = logits(m, x)
    assert not torch.allclose(out[:, 0], base[:, 0])  # chain saw is under "thing"
    torch.testing.assert_close(out[:, 1:], base[:, 1:])


@pytest.mark.parametrize("chunk_bytes", [None, 1])  # whole levels / node by node (CPU chunks)
@pytest.mark.parametrize("level", [2, 3])
def test_attention_equals_per_branch_reference(chunk_bytes: int | None, level: int) -> None:
    m = model()
    set_chunks(m, chunk_bytes)
    set_attention(m, {"domestic cat": 1.5, "beagle": 0.7}, level=level)
    ref = PerBranchNet.from_model(m)
    x = images(2, 32)
    torch.testing.assert_close(logits(m, x), logits(ref, x), rtol=1e-4, atol=1e-4)


def test_affected_nodes_rule() -> None:
    t = named_tree()
    assert affected_nodes(t, "c_tabby", 3) == ["c_tabby"]
    assert affected_nodes(t, "c_tabby", 2) == ["cat"]
    assert affected_nodes(t, "c_tabby", 1) == ["animal"]
    assert affected_nodes(t, "animal", 3) == ["c_tabby", "c_beagle", "c_siamese", "c_pug"]
    assert affected_nodes(t, "cat", 3) == ["c_tabby", "c_siamese"]
    assert affected_nodes(t, "animal", 2) == ["cat", "dog"]


def test_scales_on_the_same_node_multiply() -> None:
    m = model()
    set_attention(m, {"domestic cat": 1.5, "tabby": 1.2})
    assert m.attention == pytest.approx({"c_tabby": 1.8, "c_siamese": 1.5})
    level = m.levels[2]
    assert level.scales == pytest.approx((1.0, 1.8, 1.0, 1.5, 1.0))
    set_attention(m, {"pug": 2.0}, level=1)  # replaces the earlier settings
    assert m.levels[2].scales is None and m.levels[0].scales == (1.0, 2.0)  # level 1: thing, animal


def test_attention_errors() -> None:
    m = model()
    with pytest.raises(NhlError, match="not a class or node"):
        set_attention(m, {"lion": 1.5})
    with pytest.raises(NhlError, match="level 4 does not exist"):
        set_attention(m, {"tabby": 1.5}, level=4)
    with pytest.raises(NhlError, match="positive"):
        set_attention(m, {"tabby": 0})
    shared = build_model("phl-1branch", synthetic_tree([3]), meta=True)
    with pytest.raises(NhlError, match="per-class branches"):
        set_attention(shared, {"c0": 1.5})


def test_parse_attend() -> None:
    assert parse_attend("tabby=1.8,tiger_cat=1.5") == {"tabby": 1.8, "tiger_cat": 1.5}
    assert parse_attend(" domestic cat = 2 , ") == {"domestic cat": 2.0}
    t = named_tree()
    assert parse_attend("domestic_cat=1.5", t) == {"domestic_cat": 1.5}
    bad = {
        "tabby": "NAME=SCALE",
        "=1.5": "NAME=SCALE",
        "tabby=abc": "not a number",
        "tabby=0": "positive",
        "tabby=-1": "positive",
        "tabby=nan": "positive",
        "tabby=1.5,tabby=2": "twice",
        "": "no NAME=SCALE",
    }
    for text, msg in bad.items():
        with pytest.raises(NhlError, match=msg):
            parse_attend(text)
    with pytest.raises(NhlError, match="'lion' is not a class or node"):
        parse_attend("lion=1.5", t)


def test_attend_is_one_rule_for_cutout_export_eval_and_predict(tmp_path: Path) -> None:
    """`--attend` text and `--attend-level` go through `apply_attend` on every path: the same
    errors from the API's cutout and export, eval and predict, checked before any image is read."""
    import nhlcli as nhl
    from nhlcli.checkpoint import save_model

    folder = save_model(model(), tmp_path / "m")
    no_data = tmp_path / "no-data"  # never read: the attention errors come first
    paths = {
        "cutout": lambda **kw: nhl.cutout(nhl.load_model(folder), ["tabby", "pug"], **kw),
        "export": lambda **kw: nhl.export(folder, output=tmp_path / "m.onnx", **kw),
        "eval": lambda **kw: nhl.evaluate(folder, no_data, **kw),
        "predict": lambda **kw: nhl.predict(folder, [no_data], **kw),
    }
    cases = [
        ({"attend": "lion=1.5"}, "'lion' is not a class or node"),
        ({"attend": "tabby"}, "is not NAME=SCALE"),
        ({"attend": "tabby=0"}, "must be a positive number"),
        ({"attend": "tabby=1.5", "attend_level": 9}, "attention level 9 does not exist"),
        ({"attend_level": 1}, "--attend-level needs --attend"),
    ]
    for name, call in paths.items():
        for kwargs, message in cases:
            if name == "predict" and "attend_level" in kwargs:
                continue  # predict has no --attend-level
            with pytest.raises(NhlError, match=message):
                call(**kwargs)
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------ attention that changes nothing is said, with why
@pytest.fixture(scope="module")
def fresh_and_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real n3hl as training starts it (zero-initialised residual: the last BN γ of every
    residual branch is 0), and the same network with those γ grown (as training does)."""
    from imagenette_sample import small_tree

    from nhlcli.checkpoint import save_model
    from nhlcli.model.network import zero_init_residual

    torch.manual_seed(0)
    net = build_model("n3hl", small_tree(), img_size=32)
    assert zero_init_residual(net) > 0
    folder = tmp_path_factory.mktemp("attention")
    fresh = save_model(net, folder / "fresh")
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bn3.weight"):  # the residual norm of the bottleneck kind
                p.uniform_(0.2, 0.6)
    return fresh, save_model(net, folder / "trained")


def test_attention_on_a_zero_init_model_changes_nothing_and_says_why(
    fresh_and_trained: tuple[Path, Path],
) -> None:
    import nhlcli as nhl
    from nhlcli.model.attention import attention_effect, inert_attention_warning

    fresh, trained = (nhl.load_model(p).eval() for p in fresh_and_trained)
    x = images(3, 32)
    for net in (fresh, trained):
        set_attention(net, {"tench": 10.0})
    assert attention_effect(fresh, x) == 0.0  # exactly: γ = 0 ends the scaled branch
    warning = inert_attention_warning(fresh, attention_effect(fresh, x))
    assert warning is not None and warning.startswith("top-down attention changed no logit: ")
    assert "zero-initialised residual, not yet trained" in warning and "scale γ = 0" in warning
    assert attention_effect(trained, x) > 1e-3
    assert inert_attention_warning(trained, attention_effect(trained, x)) is None
    # lightly trained: γ has barely grown, the probabilities barely move
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if name.endswith("bn3.weight"):
                p.fill_(1e-6)
    effect = attention_effect(fresh, x)
    warning = inert_attention_warning(fresh, effect)
    assert 0.0 < effect < 1e-4 and warning is not None
    assert warning.startswith("top-down attention changed the class probabilities by at most")
    assert "scale |γ| ≤ 1e-06: zero-initialised residual" in warning
    # every scale 1.0: nothing was asked, nothing to warn about
    set_attention(fresh, {"tench": 1.0})
    assert inert_attention_warning(fresh, attention_effect(fresh, x)) is None
    # measuring leaves the attention as it was
    assert trained.attention == {"n01440764": 10.0}
    assert trained.levels[-1].scales is not None


def test_predict_and_eval_warn_when_attention_changes_nothing(
    fresh_and_trained: tuple[Path, Path],
    imagenette_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from cli_helpers import run_cli
    from imagenette_sample import copy_sample

    data = copy_sample(imagenette_dir, tmp_path / "nette", 0, 1)
    image = next((data / "val").rglob("*.JPEG"))
    fresh, trained = fresh_and_trained
    predict = ["predict", "--attend", "tench=10", "--json"]
    code, out, err = run_cli([*predict, fresh, image], capsys)
    assert code == 0
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 1 and "changed no logit" in warnings[0]
    assert "zero-initialised residual" in warnings[0]
    assert [ln for ln in err.splitlines() if ln.startswith("warning:")] == [
        f"warning: {warnings[0]}"
    ]
    code, out, err = run_cli([*predict, trained, image], capsys)
    assert code == 0 and json.loads(out)["warnings"] == [] and "warning" not in err

    evaluate = ["eval", "--data", data, "--workers", "0", "--no-save", "--json"]
    for how in (["--attend", "tench=10"], ["--attend-sweep", "1.5:2:0.5"]):
        code, out, err = run_cli([*evaluate, *how, fresh], capsys)
        assert code == 0, err
        warnings = json.loads(out)["warnings"]
        assert len(warnings) == 1 and "zero-initialised residual" in warnings[0], how
        assert f"warning: {warnings[0]}" in err
        code, out, err = run_cli([*evaluate, *how, trained], capsys)
        assert code == 0 and json.loads(out)["warnings"] == [] and "warning" not in err, how
