"""Tree scores by hand on tiny examples, and `nhl tree compare` / `nhl build-tree --source
induced` on a small resnet50 trained here (32 px, a few steps on real Imagenette images)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree

import nhlcli as nhl
from nhlcli.checkpoint import load_model, save_model
from nhlcli.data.dataset import ImageFileDataset, collate_decoded
from nhlcli.data.folders import index_image_folder
from nhlcli.errors import NhlError
from nhlcli.evaluation.inference import run_inference
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.hierarchy.tree_scores import (
    balance,
    confusion_chance,
    confusion_share,
    group_top1,
    level_groups,
    silhouette,
    wordnet_agreement,
)
from nhlcli.model.network import build_model
from nhlcli.training.config import build_config
from nhlcli.training.engine import train

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


# ----------------------------------------------------------------------------- by hand
def two_groups() -> Tree:
    nodes = [TreeNode("x", "x", None), TreeNode("y", "y", None)]
    classes = [TreeNode(c, c, p) for c, p in (("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"))]
    return Tree(classes, nodes)


def test_confusion_share_by_hand() -> None:
    conf = np.array([[5, 2, 1, 0], [3, 5, 0, 1], [0, 0, 5, 4], [1, 0, 2, 5]])
    g = level_groups(two_groups(), 1)
    assert g.tolist() == [0, 0, 1, 1]
    # off-diagonal mass 14; inside the groups a->b 2, b->a 3, c->d 4, d->c 2 = 11
    assert confusion_share(conf, g) == pytest.approx(11 / 14)
    assert confusion_chance(g) == pytest.approx(4 / 12)  # 2 ordered pairs per group of 2, of 12
    assert confusion_share(np.eye(4) * 7, g) is None  # no mistakes: no share


def test_balance_silhouette_group_top1_and_wordnet_agreement_by_hand() -> None:
    assert balance(np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    p = np.array([0.75, 0.25])
    assert balance(np.array([0, 0, 0, 1])) == pytest.approx(-(p * np.log(p)).sum() / math.log(2))
    assert balance(np.array([0, 0, 0])) == 1.0
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    g = np.array([0, 0, 1, 1])
    expected = np.mean([9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5])
    assert silhouette(x, g) == pytest.approx(expected)
    assert silhouette(x, np.array([0, 0, 0, 0])) is None
    assert silhouette(x, np.array([0, 0, 1, 2])) == pytest.approx((0.9 + 8 / 9) / 4)
    scores = np.array(
        [
            [2.0, 1.9, 0.0, 2.1],  # class 3 wins, but group 0 holds more probability
            [0.0, 0.0, 5.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
        ]
    )
    labels = np.array([0, 3, 1])
    # max: the groups of the arg-max classes are 1, 1, 0 against true 0, 1, 0
    assert group_top1(scores, labels, g, "max") == pytest.approx(200 / 3)
    # sum: softmax mass per group: image 1 -> group 0 (e^2+e^1.9 > 1+e^2.1)
    assert group_top1(scores, labels, g, "sum") == pytest.approx(100.0)
    with pytest.raises(NhlError, match="--group-score"):
        group_top1(scores, labels, g, "mean")
    depths = np.array([[9, 5, 2, 2], [5, 9, 2, 3], [2, 2, 9, 4], [2, 3, 4, 9]])
    # same-group pairs (a,b)=5, (c,d)=4; split pairs 2, 2, 3, 2: every same pair is deeper
    assert wordnet_agreement(depths, g) == pytest.approx(1.0)
    # grouping (a,c),(b,d): same pairs 2, 3; split pairs 5, 2, 2, 4: P(same > split) + ties/2
    cross = np.array([0, 1, 0, 1])
    wins = sum((s > d) + 0.5 * (s == d) for s in (2, 3) for d in (5, 2, 2, 4))
    assert wordnet_agreement(depths, cross) == pytest.approx(wins / 8)


def test_scores_of_shipped_trees_without_a_model() -> None:
    result = nhl.compare_trees(["imagenette-wordnet-L3", "imagenette-wordnet-L2"])
    l3, l2 = result.trees
    assert [(r.level, r.nodes) for r in l3.rows] == [(1, 2), (2, 4)]
    assert [(r.level, r.nodes) for r in l2.rows] == [(1, 3)]
    assert l3.rows[0].wordnet == pytest.approx(1.0)  # WordNet's own split at the top
    assert result.ranking == [] and result.evidence is None
    assert all(r.confusion_share is None for r in l3.rows)


# ----------------------------------------------------------------------------- a trained model
@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 3, 3)


@pytest.fixture(scope="module")
def r50(nette: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (very short) resnet50 run: one class per folder, 32 px."""
    cfg = build_config(
        {
            "arch": "resnet50",
            "data": str(nette),
            "epochs": 1,
            "batch_size": 10,
            "img_size": 32,
            "workers": 0,
            "max_train_batches": 3,
            "max_val_batches": 1,
            "optimizer": "adamw",
            "project": str(tmp_path_factory.mktemp("runs")),
        }
    )
    result = train(cfg)
    assert result.run_dir is not None
    return result.run_dir / "best"


def predictions(model_dir: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(preds, labels) of every val image, by the evaluation's own inference path."""
    model = load_model(model_dir)
    folder = index_image_folder(data / "val", model.tree)
    ds = ImageFileDataset(folder.samples, model.img_size, "eval")
    batches = [collate_decoded([ds[i] for i in range(len(ds))])]
    result = run_inference(model, batches, torch.device("cpu"))
    return result.preds[None].numpy(), result.labels.numpy()


def test_induced_tree_from_the_model_cli(
    r50: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["build-tree", "--source", "induced", "--model", r50, "--data", nette, "--no-date"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run_cli([*args, "-o", a], capsys)[0] == 0
    assert run_cli([*args, "-o", b, "--json"], capsys)[0] == 0
    assert a.read_bytes() == b.read_bytes()  # deterministic
    code, out, _ = run_cli(["tree", "validate", a, "--levels", "3", "--json"], capsys)
    assert code == 0 and json.loads(out)["nodes_per_level"] == [2, 5, 10]
    tree = Tree.load(a)
    assert tree.class_ids == [c for c, _ in IMAGENETTE]
    prov = tree.provenance
    sha = hashlib.sha256((r50 / "model.safetensors").read_bytes()).hexdigest()
    assert prov["model"] == {"path": str(r50), "arch": "resnet50", "sha256": sha}
    assert prov["data"] == {"folder": str(nette / "val"), "images": 30}
    assert prov["embedding"] == {"kind": "features", "features": "penultimate"}
    # every node is named (WordNet is installed for the tests)
    assert prov["naming"]["rule"] == "wordnet" and all(n.name for n in tree.nodes)
    # weights need no images; confusion rows need them; a subset keeps its order
    w = tmp_path / "w.json"
    code, _, _ = run_cli(
        ["build-tree", "--source", "induced", "--model", r50, "--embedding", "weights",
         "--levels", "2", "--linkage", "average", "-o", w],
        capsys,
    )  # fmt: skip
    assert code == 0 and Tree.load(w).levels == 2 and "data" not in Tree.load(w).provenance
    sub, three = tmp_path / "sub.json", tmp_path / "three.txt"
    three.write_text("parachute\ntench\nEnglish springer\n")
    code, _, _ = run_cli(
        [*args, "--embedding", "confusion", "-c", three, "--levels", "2", "-o", sub],
        capsys,
    )  # fmt: skip
    assert code == 0 and Tree.load(sub).class_ids == ["n03888257", "n01440764", "n02102040"]


def test_induced_names_from_a_chat_model_cli(
    r50: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from llm_server import LLMServer, Reply, task_of

    def namer(body: dict) -> Reply:
        groups = task_of(body)["groups"]
        return Reply.json({"names": [{"id": g["id"], "name": f"n {g['id']}"} for g in groups]})

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    out = tmp_path / "named.json"
    with LLMServer(fallback=namer) as server:
        code, _, err = run_cli(
            ["build-tree", "--source", "induced", "--model", r50, "--embedding", "weights",
             "--names", "llm", "--llm-model", "namer", "--llm-base-url", server.url,
             "--llm-no-cache", "-o", out],
            capsys,
        )  # fmt: skip
        assert code == 0, err
        assert len(server.requests) == 1 and server.requests[0]["model"] == "namer"
    tree = Tree.load(out)
    assert [n.name for n in tree.nodes] == [f"n {n.id}" for n in tree.nodes]
    assert tree.provenance["naming"]["llm"]["model"] == "namer"


def test_tree_compare_on_the_model(
    r50: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine.json"
    small_tree().save(mine)
    png = tmp_path / "cmp.png"
    code, out, err = run_cli(
        ["tree", "compare", mine, "imagenette-wordnet-L3", "--model", r50, "--data", nette,
         "--group-score", "max", "--json", "-o", png],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [t["tree"] for t in result["trees"]] == [str(mine), "imagenette-wordnet-L3"]
    assert result["evidence"]["images"] == 30 and result["group_score"] == "max"
    # by hand from the evaluation's predictions: the share of mistakes inside each level-1 group
    preds, labels = predictions(r50, nette)
    tree = small_tree()
    top = [tree.path(c)[0] for c in tree.class_ids]
    mistakes = [(y, p) for y, p in zip(labels, preds, strict=True) if y != p]
    assert mistakes, "the tiny model should make mistakes"
    inside = sum(top[y] == top[p] for y, p in mistakes)
    row = result["trees"][0]["rows"][0]
    assert row["level"] == 1 and row["nodes"] == 2
    assert row["confusion_share"] == pytest.approx(inside / len(mistakes))
    right_group = sum(top[y] == top[p] for y, p in zip(labels, preds, strict=True))
    assert row["group_top1"] == pytest.approx(100 * right_group / len(labels))
    sizes = [sum(t == g for t in top) for g in dict.fromkeys(top)]
    chance = sum(n * (n - 1) for n in sizes) / (10 * 9)
    assert row["confusion_chance"] == pytest.approx(chance)
    assert row["confusion_gain"] == pytest.approx((row["confusion_share"] - chance) / (1 - chance))
    assert -1 <= row["silhouette"] <= 1
    assert sorted(result["ranking"]) == sorted([str(mine), "imagenette-wordnet-L3"])
    # the table
    code, out, _ = run_cli(
        ["tree", "compare", mine, "imagenette-wordnet-L3", "--model", r50, "--data", nette],
        capsys,
    )
    assert code == 0 and "ranking by fit (mean confusion gain)" in out
    assert out.count("imagenette-wordnet-L3") >= 2  # its table's title and the ranking
    # piped (80 columns), the 10 columns do not fit: rows as records, every number in full
    assert "…" not in out and "level: 1" in out
    for scored in result["trees"]:
        for r in scored["rows"]:
            for key in ("balance", "confusion_share", "confusion_chance", "confusion_gain"):
                assert r[key] is None or f"{r[key]:.3f}" in out, (key, r[key])


def test_compare_and_induced_errors_are_one_line(
    r50: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(args: list[object]) -> str:
        code, out, err = run_cli(args, capsys)
        assert code == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        return lines[0]

    # a tree with classes the model does not know
    msg = error(["tree", "compare", "imagenet100-wordnet-L3", "--model", r50, "--data", nette])
    assert "are not classes of" in msg
    # a folder that lacks classes: all listed in one error
    part = tmp_path / "part"
    shutil.copytree(nette / "val", part / "val")
    shutil.rmtree(part / "val" / "n03028079")
    shutil.rmtree(part / "val" / "n03888257")
    out = tmp_path / "t.json"
    msg = error(["build-tree", "--source", "induced", "--model", r50, "--data", part, "-o", out])
    assert "n03028079" in msg and "n03888257" in msg and not out.exists()
    assert "needs --data" in error(
        ["build-tree", "--source", "induced", "--model", r50, "--embedding", "confusion", "-o", out]
    )
    assert "needs --model" in error(["build-tree", "--source", "induced", "-o", out])
    msg = error(["build-tree", "--source", "induced", "--model", r50, "-c", "imagewoof", "-o", out])
    assert "10 class(es) are not classes of" in msg and "n02086240" in msg
    assert "apply to --source induced" in error(
        ["build-tree", "-c", "imagenette", "--data", nette, "-o", out]
    )
    assert "together" in error(["tree", "compare", "imagenette-wordnet-L3", "--model", r50])
    assert "must end in" in error(["tree", "compare", "imagenette-wordnet-L3", "-o", "x.gif"])


def test_per_class_heads_use_the_trunk_features(nette: Path, tmp_path: Path) -> None:
    """An n3hl (per-class heads): the features are the pooled trunk output; no weights."""
    torch.manual_seed(0)
    model = build_model("n3hl", small_tree(), img_size=32)
    save_model(model, tmp_path / "n3hl")
    ev = nhl.collect_evidence(tmp_path / "n3hl", nette, batch_size=16)
    assert ev.feature_kind == "trunk" and ev.weights is None
    assert ev.features.shape == (10, 1024)  # conv4 output channels
    assert ev.confusion.sum() == 30 and ev.scores.shape == (30, 10)
    tree = nhl.build_tree("induced", "imagenette", 3, evidence=ev)
    tree.require_levels(3)
    with pytest.raises(NhlError, match="shared classifier"):
        nhl.build_tree("induced", "imagenette", 3, evidence=ev, embedding="weights")
