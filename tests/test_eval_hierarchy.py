"""Hierarchy-aware evaluation: per-level accuracy (hand-checked), tree order, confusion files."""

from __future__ import annotations

import csv
import json
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree
from model_helpers import two_groups

from nhlcli.evaluation.confusion_files import group_matrix
from nhlcli.evaluation.metrics import topk_accuracy
from nhlcli.evaluation.outputs import confusion_picture, confusion_picture_figure
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.hierarchy_metrics import ancestors_by_level, level_metrics, tree_order

PNG = b"\x89PNG\r\n\x1a\n"
_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def test_per_level_accuracy_hand_checked() -> None:
    tree = two_groups()
    ids = tree.class_ids  # a1 b1 a2 b2 -> positions 0 1 2 3
    anc = ancestors_by_level(tree, ids)
    assert anc == [["A", "B", "A", "B"], ["a1", "b1", "a2", "b2"]]
    #        true:  a1  a1  a2  b1  b2      predicted: a1  a2  b1  b1  a1
    labels = torch.tensor([0, 0, 2, 1, 3])
    preds = torch.tensor([0, 2, 1, 1, 0])
    top, leaf = level_metrics(preds, labels, anc)
    # level 1: true ancestors A A A B B, predicted A A B B A -> 3 of 5
    assert (top.level, top.nodes, top.top1, top.errors) == (1, 2, 60.0, 3)
    # errors: a1->a2 (inside A), a2->b1 (not), b2->a1 (not) -> 1 of 3
    assert top.errors_within == pytest.approx(100.0 / 3)
    assert (leaf.level, leaf.nodes, leaf.top1, leaf.errors_within) == (2, 4, 40.0, None)


def test_unlevelled_tree_uses_the_class_below_its_depth() -> None:
    tree = Tree([TreeNode("a1", "a1", "A"), TreeNode("c", "c", None)], [TreeNode("A", "A", None)])
    assert ancestors_by_level(tree, tree.class_ids) == [["A", "c"], ["a1", "c"]]


def test_tree_order_groups_the_classes() -> None:
    tree = two_groups()
    assert [tree.class_ids[i] for i in tree_order(tree, tree.class_ids)] == [
        "a1",
        "a2",
        "b1",
        "b2",
    ]
    assert tree_order(tree, ["b2", "a1"]) == [1, 0]


def test_top5_and_group_matrix() -> None:
    ranked = torch.tensor([[3, 1, 0], [2, 0, 1], [1, 2, 3]])
    assert topk_accuracy(ranked, torch.tensor([0, 1, 0])) == pytest.approx(200.0 / 3)
    m = torch.tensor([[1, 2, 0], [0, 3, 1], [4, 0, 5]])
    grouped, names = group_matrix(m, ["A", "A", "B"])
    assert grouped.tolist() == [[6, 1], [4, 5]] and names == ["A", "B"]


def test_thousand_classes_are_summarised_by_group() -> None:
    tree = resolve_tree("imagenet1k-wordnet-L3")
    k = tree.num_classes
    matrix = torch.eye(k, dtype=torch.long) * 3
    png = confusion_picture(tree, matrix, tree.class_ids, "test")
    assert png.startswith(PNG)


@pytest.mark.parametrize(
    ("name", "shown"),
    [("imagenette-wordnet-L3", None), ("imagenet100-wordnet-L3", None),
     ("imagenet1k-wordnet-L3", 10)],
)  # fmt: skip
def test_confusion_picture_names_the_groups_readably(name: str, shown: int | None) -> None:
    tree = resolve_tree(name)
    k = tree.num_classes
    fig = confusion_picture_figure(tree, torch.eye(k, dtype=torch.long) * 3, tree.class_ids, "t")
    fig.draw_without_rendering()
    ax, bar = fig.axes  # the matrix and its colour bar
    tops = [tree.node(n).name for n in tree.children(None)]
    if shown is not None:  # summarised by the top groups: the rows name them, nothing more to add
        assert [t.get_text() for t in ax.get_yticklabels()] == tops and len(tops) == shown
        assert not ax.child_axes
        return
    top, right = ax.child_axes  # the group names: along the top (columns), the right (rows)
    class_font = ax.get_yticklabels()[0].get_fontsize()
    page = fig.bbox
    for labels, lo, hi in (
        (top.get_xticklabels(), "x0", "x1"),
        (right.get_yticklabels(), "y0", "y1"),
    ):
        assert [t.get_text() for t in labels] == tops  # every top group, in tree order
        boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: getattr(b, lo))
        for b in boxes:  # inside the picture, beside (not over) the colour bar
            assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1
            assert not b.overlaps(bar.get_window_extent())
        for a, b in pairwise(boxes):  # no two names touch
            assert getattr(a, hi) < getattr(b, lo)
        assert all(t.get_fontsize() >= max(class_font, 6.0) for t in labels)  # readable


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 1, 2)


def read_confusion(path: Path) -> tuple[list[str], list[list[int]]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0][2:], [[int(v) for v in r[2:]] for r in rows[1:]]


def test_eval_writes_report_and_confusion(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "evals"
    args = ["eval", model_dir, "--data", nette, "--workers", "0", "--project", project]
    code, out, _ = run_cli([*args, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    out_dir = project / "exp"
    assert report["output_dir"] == str(out_dir)
    assert json.loads((out_dir / "report.json").read_text()) == report
    assert report["images"] == 20 and [r["level"] for r in report["levels"]] == [1, 2, 3]
    assert report["levels"][-1]["top1"] == pytest.approx(report["top1"])
    assert report["levels"][0]["nodes"] == 2 and report["levels"][1]["nodes"] == 6
    assert report["top5"] >= report["top1"]
    ids, counts = read_confusion(out_dir / "confusion.csv")
    tree = small_tree()
    assert ids == [tree.class_ids[i] for i in tree_order(tree, tree.class_ids)]
    assert sum(map(sum, counts)) == 20 and all(sum(r) == 2 for r in counts)
    correct = {r["id"]: r["correct"] for r in report["per_class"]}
    assert [counts[i][i] for i in range(10)] == [correct[c] for c in ids]
    assert (out_dir / "confusion.png").read_bytes().startswith(PNG)
    # the second evaluation is numbered like training runs; human output names the folder
    code, out, _ = run_cli(args, capsys)
    flat = "".join(out.split())  # the console wraps long paths
    assert code == 0 and "top-5" in out and f"{project / 'exp-2'}/" in flat
    assert "errorsinsidethetruenode" in flat


def test_subset_confusion_is_over_the_subset(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lower = [c for c, _ in IMAGENETTE[:3]]
    code, out, _ = run_cli(
        ["eval", model_dir, "--data", nette, "--workers", "0", "--project", tmp_path,
         "--name", "sub", "-c", ",".join(lower), "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    ids, counts = read_confusion(tmp_path / "sub" / "confusion.csv")
    assert sorted(ids) == sorted(lower) and sum(map(sum, counts)) == 6
    # three classes: the true one is always among the top five, so top-5 says nothing
    assert report["top5"] is None
    assert [r["nodes"] for r in report["levels"]] == [2, 3, 3]


def test_top5_of_five_classes_is_a_dash(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    five = ",".join(c for c, _ in IMAGENETTE[:5])
    args = ["eval", model_dir, "--data", nette, "--workers", "0", "--no-save", "-c", five]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "top-5: –" in out and "100.00%" not in out.split("top-5:")[1]
    code, out, _ = run_cli([*args, "--json"], capsys)
    assert code == 0 and json.loads(out)["top5"] is None
    # six classes: top-5 is a measurement again
    six = ",".join(c for c, _ in IMAGENETTE[:6])
    code, out, _ = run_cli([*args[:-1], six, "--json"], capsys)
    assert code == 0 and isinstance(json.loads(out)["top5"], float)


def test_no_save_writes_nothing(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["eval", model_dir, "--data", nette, "--workers", "0", "--project", tmp_path / "e",
         "--no-save", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0 and json.loads(out)["output_dir"] is None
    assert not (tmp_path / "e").exists()


def test_capped_eval_samples_every_class(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 images per class in sorted folders: the first batch of 10 would hold 5 classes only
    code, out, _ = run_cli(
        ["eval", model_dir, "--data", nette, "--workers", "0", "--batch-size", "10",
         "--max-val-batches", "1", "--no-save", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["images"] == 10 and all(r["images"] == 1 for r in report["per_class"])
