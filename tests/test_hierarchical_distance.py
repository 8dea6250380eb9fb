"""Bertinetto/Kiritchenko hierarchical metrics and CRM decoding on hand-computed cases, and
`nhl eval --decode/--tree` on real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree
from model_helpers import two_groups

from nhlcli.evaluation.hierarchical_distance import (
    ahd_ks,
    ancestor_sets,
    average_hierarchical_distance,
    crm_rank,
    crm_risk,
    hierarchical_metrics,
    hierarchical_prf,
    lca_distances,
    mistake_severity,
)
from nhlcli.hierarchy.tree import Tree, TreeNode

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def two_depths() -> Tree:
    """Leaves at two depths: A{a1, a2} (depth 2) and the class c right under the root (depth 1)."""
    classes = [TreeNode("a1", "a1", "A"), TreeNode("a2", "a2", "A"), TreeNode("c", "c", None)]
    return Tree(classes, [TreeNode("A", "A", None)])


def test_distance_is_the_height_of_the_lowest_common_ancestor() -> None:
    # levelled: siblings meet at depth 1 -> 2 - 1 = 1; across groups at the root -> 2 - 0 = 2
    assert lca_distances(two_groups(), two_groups().class_ids).tolist() == [
        [0, 2, 1, 2],
        [2, 0, 2, 1],
        [1, 2, 0, 2],
        [2, 1, 2, 0],
    ]
    # two depths: d(a1, a2) = max(2, 2) - 1 = 1; d(a1, c) = max(2, 1) - 0 = 2 (from the deeper leaf)
    assert lca_distances(two_depths(), ["a1", "a2", "c"]).tolist() == [
        [0, 1, 2],
        [1, 0, 2],
        [2, 2, 0],
    ]


def test_metrics_on_a_tree_with_leaves_at_two_depths() -> None:
    tree = two_depths()
    ids = tree.class_ids  # a1 a2 c -> 0 1 2
    dist = lca_distances(tree, ids)
    #       true: a1 a1 c  a2        predicted: a1 a2 a1 c
    labels = torch.tensor([0, 0, 2, 1])
    preds = torch.tensor([0, 1, 0, 2])
    # errors: a2 for a1 (d 1), a1 for c (d 2), c for a2 (d 2) -> (1 + 2 + 2) / 3
    assert mistake_severity(preds, labels, dist) == pytest.approx(5 / 3)
    # ancestor sets: a1 {A, a1}, a2 {A, a2}, c {c}; overlaps 2 + 1 + 0 + 0 = 3,
    # predicted sizes 2 + 2 + 2 + 1 = 7, true sizes 2 + 2 + 1 + 2 = 7 -> hP = hR = hF = 3/7
    assert ancestor_sets(tree, ids) == [{"A", "a1"}, {"A", "a2"}, {"c"}]
    hp, hr, hf = hierarchical_prf(preds, labels, tree, ids)
    assert (hp, hr, hf) == pytest.approx((300 / 7, 300 / 7, 300 / 7))
    ranked = torch.tensor([[0, 1], [1, 2], [0, 1], [2, 0]])
    # AHD@1: (0 + 1 + 2 + 2) / 4; AHD@2: ((0+1) + (1+2) + (2+2) + (2+1)) / 8 = 11 / 8
    assert average_hierarchical_distance(ranked, labels, dist, 1) == pytest.approx(1.25)
    assert average_hierarchical_distance(ranked, labels, dist, 2) == pytest.approx(11 / 8)
    m = hierarchical_metrics(ranked, labels, tree, ids)
    assert m.ahd == pytest.approx({1: 1.25, 2: 11 / 8})  # k = 5 and 20 capped at 3, then at 2
    assert m.mistake_severity == pytest.approx(5 / 3)
    assert m.to_dict()["hierarchical_f1"] == pytest.approx(300 / 7)


def test_no_mistake_has_severity_zero_and_ks_are_capped() -> None:
    dist = lca_distances(two_groups(), two_groups().class_ids)
    assert mistake_severity(torch.tensor([1, 2]), torch.tensor([1, 2]), dist) == 0.0
    assert ahd_ks(1000) == [1, 5, 20] and ahd_ks(10) == [1, 5, 10] and ahd_ks(3) == [1, 3]


def test_crm_picks_the_least_expected_distance_not_the_argmax() -> None:
    tree = two_groups()  # positions a1 b1 a2 b2
    dist = lca_distances(tree, tree.class_ids)
    p = torch.tensor([[0.40, 0.32, 0.0, 0.28]])  # a1 is the arg-max, but B holds 0.6 of the mass
    # risk(a1) = 2(.32) + 2(.28) = 1.2; risk(b1) = 2(.4) + 1(.28) = 1.08
    # risk(a2) = 1(.4) + 2(.32) + 2(.28) = 1.6; risk(b2) = 2(.4) + 1(.32) = 1.12
    assert crm_risk(p, dist)[0].tolist() == pytest.approx([1.2, 1.08, 1.6, 1.12])
    assert crm_rank(p, dist, 4).tolist() == [[1, 3, 0, 2]]  # b1, b2, a1, a2
    assert int(p.argmax()) == 0


def test_crm_composes_with_the_subset_restriction() -> None:
    # eq. 3 first: the softmax over the subset {a1, a2, b2} only, then CRM over the subset's tree
    tree = two_groups()
    logits = torch.tensor([[0.40, 0.32, 1e-9, 0.28]]).log()
    sub = [0, 2, 3]
    p = logits[:, sub].softmax(1)  # [.4, 0, .28] / .68
    ids = [tree.class_ids[i] for i in sub]  # a1 a2 b2
    # risk(a1) = 2(.28/.68) = .824; risk(a2) = (.4 + 2 .28)/.68 = 1.41; risk(b2) = 2(.4/.68) = 1.18
    assert crm_rank(p, lca_distances(tree, ids), 3).tolist() == [[0, 2, 1]]
    # on all four classes CRM answered b1, a class outside the subset
    full = crm_rank(logits.softmax(1), lca_distances(tree, tree.class_ids), 1)
    assert full.tolist() == [[1]]


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 1, 2)


def flat_tree_file(path: Path) -> Path:
    """Every Imagenette class right under the root: d = 1 between any two classes."""
    classes = [{"id": c, "name": n, "parent": None} for c, n in IMAGENETTE]
    doc = {"format": "nhl-tree/1", "levels": 1, "classes": classes, "nodes": []}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_eval_reports_both_decodings(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["eval", model_dir, "--data", nette, "--workers", "0", "--project", tmp_path]
    code, out, _ = run_cli([*base, "--decode", "both", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert json.loads((tmp_path / "exp" / "report.json").read_text()) == report
    argmax, crm = report["decodings"]
    assert (argmax["decode"], crm["decode"]) == ("argmax", "crm")
    assert argmax["top1"] == pytest.approx(report["top1"]) and report["decode"] == "argmax"
    assert list(argmax["ahd"]) == ["@1", "@5", "@10"]  # ten classes: k = 20 is capped at 10
    h = report["hierarchical"]
    assert h == {k: v for k, v in argmax.items() if k not in ("decode", "top1")}
    # AHD@1 = mistake severity x error rate (correct images have d = 0)
    assert h["ahd"]["@1"] == pytest.approx(h["mistake_severity"] * (1 - report["top1"] / 100))
    code, out, _ = run_cli([*base, "--decode", "crm", "--no-save", "--json"], capsys)
    crm_only = json.loads(out)
    assert crm_only["decode"] == "crm" and crm_only["top1"] == pytest.approx(crm["top1"])
    assert crm_only["hierarchical"]["mistake_severity"] == pytest.approx(crm["mistake_severity"])
    code, out, _ = run_cli([*base, "--decode", "both", "--no-save"], capsys)
    flat = "".join(out.split())
    assert code == 0 and "hierarchicalmetrics" in flat and "crm" in out


def test_eval_under_another_tree(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = flat_tree_file(tmp_path / "flat.json")
    base = ["eval", model_dir, "--data", nette, "--workers", "0", "--no-save", "--json"]
    code, out, _ = run_cli([*base, "--decode", "both", "--tree", flat], capsys)
    assert code == 0
    report = json.loads(out)
    h = report["hierarchical"]
    # every mistake costs 1 in a flat tree; hP = hR = top-1 (each class is its own only ancestor)
    assert h["mistake_severity"] == pytest.approx(1.0) and report["top1"] < 100
    assert h["hierarchical_precision"] == pytest.approx(report["top1"])
    assert [r["level"] for r in report["levels"]] == [1] and report["metric_tree"] == str(flat)
    # risk(i) = 1 - p_i in a flat tree: CRM is the arg-max
    assert report["decodings"][0]["top1"] == report["decodings"][1]["top1"]
    code, out, _ = run_cli(base, capsys)  # the model's own tree: 3 levels, other numbers
    own = json.loads(out)
    assert own["top1"] == report["top1"] and len(own["levels"]) == 3
    assert own["hierarchical"]["mistake_severity"] > 1.0


def test_crm_on_a_subset_and_bad_options(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lower = ",".join(c for c, _ in IMAGENETTE[:4])
    base = ["eval", model_dir, "--data", nette, "--workers", "0", "--no-save"]
    code, out, _ = run_cli([*base, "-c", lower, "--decode", "crm", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["evaluated_classes"] == 4 and report["decode"] == "crm"
    assert sum(r["images"] for r in report["per_class"]) == 8
    assert list(report["hierarchical"]["ahd"]) == ["@1", "@4"]
    code, _, err = run_cli([*base, "--decode", "median"], capsys)
    assert code == 2 and "--decode 'median'" in err
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"format": "nhl-tree/1", "levels": 1, "nodes": [],
                    "classes": [{"id": "x1", "name": "x", "parent": None}]}),
        encoding="utf-8",
    )  # fmt: skip
    code, _, err = run_cli([*base, "--tree", other], capsys)
    assert code == 2 and "10 evaluated class(es) are not in it" in err


def test_predict_ranks_by_crm_risk(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(nette / "val" / c) for c, _ in IMAGENETTE[:3]]
    base = ["predict", model_dir, *images, "--top", "10", "--json"]
    tree = small_tree()
    dist = lca_distances(tree, tree.class_ids)
    pos = {c: i for i, c in enumerate(tree.class_ids)}
    code, out, _ = run_cli([*base, "--decode", "crm"], capsys)
    assert code == 0
    crm = json.loads(out)["predictions"]
    code, out, _ = run_cli(base, capsys)
    plain = json.loads(out)["predictions"]
    differs = False
    for c, a in zip(crm, plain, strict=True):
        p = torch.zeros(10, dtype=torch.float64)
        for t in c["top"]:
            p[pos[t["class"]]] = t["probability"]
        risk = (p @ dist.double().T).tolist()
        ranked = [risk[pos[t["class"]]] for t in c["top"]]
        assert ranked == sorted(ranked)  # least expected distance first
        probs = [t["probability"] for t in a["top"]]
        assert probs == sorted(probs, reverse=True)
        differs |= [t["class"] for t in c["top"]] != [t["class"] for t in a["top"]]
    assert differs  # the two rankings are not the same
    code, _, err = run_cli([*base, "--decode", "mode"], capsys)
    assert code == 2 and "--decode 'mode'" in err
