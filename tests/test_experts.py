"""`nhl experts`: open-set scores by hand, and the frontier's one-pass shortcut against real cut
experts on real images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread

import nhlcli as nhl
from nhlcli.evaluation.frontier import auroc, expert_scores, fpr_at_tpr

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)
PNG = b"\x89PNG\r\n\x1a\n"


def test_fpr_at_95_tpr_and_auroc_by_hand() -> None:
    inside = np.arange(1, 21) / 20.0  # 0.05 .. 1.0: keeping 95 % (19 of 20) puts the cut at 0.10
    outside = np.array([0.0, 0.05, 0.10, 0.5, 0.99])  # 0.10, 0.5, 0.99 pass -> 3 of 5
    assert fpr_at_tpr(inside, outside) == pytest.approx(60.0)
    # AUROC: pairs (in > out) + ½ ties over 2 x 3: in {0.9, 0.5}, out {0.5, 0.1, 0.95}
    # 0.9 beats 0.5 and 0.1 (2); 0.5 ties 0.5 (½) and beats 0.1 (1) -> 3.5 / 6
    assert auroc(np.array([0.9, 0.5]), np.array([0.5, 0.1, 0.95])) == pytest.approx(3.5 / 6)
    assert fpr_at_tpr(inside, np.array([])) is None and auroc(np.array([]), outside) is None


def test_expert_scores_from_restricted_logits() -> None:
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 9.0], [0.0, 5.0, 0.0], [1.0, 1.0, 8.0]])
    labels = np.array([0, 1, 2, 2])
    # expert {0, 1}: image 0 -> 0 (right), image 1 -> 1 (right; class 2's logit is not its own);
    # images 2 and 3 are outside: max softmax over {0, 1} is high for image 2, ½ for image 3
    acc, fpr, roc, own = expert_scores(logits, labels, [0, 1])
    assert (acc, own) == (100.0, 2)
    # max softmax inside: image 0 e^3/(e^3+1) = .953, image 1 e^2/(e^2+1) = .881 (the threshold
    # keeping 95 % of 2 images is the lower one); outside: image 2 e^5/(e^5+1) = .993 passes,
    # image 3 (1, 1) gives ½ and does not -> FPR 1 of 2; AUROC: .993 beats both, ½ loses to both
    assert fpr == pytest.approx(50.0) and roc == pytest.approx(0.5)


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 1, 3)


def test_frontier_shortcut_equals_real_cut_experts(
    model_dir: Path, nette: Path, tmp_path: Path
) -> None:
    pair = f"{IMAGENETTE[0][0]},{IMAGENETTE[4][0]}"  # tench, church: two level-1 groups
    result = nhl.experts(
        model_dir, nette, level=1, sets=[pair], project=tmp_path, name="f", workers=0
    )
    assert [(r.name, r.kind) for r in result.rows] == [
        ("full model", "full"), ("animal", "node"), ("artifact", "node"),
        ("tench + church", "set"),
    ]  # fmt: skip
    net = nhl.load_model(model_dir)
    for row in result.rows:
        expert = net if row.kind == "full" else nhl.cutout(net, row.classes)
        # the real cut network: its parameter count and its accuracy on its own classes' images
        assert row.params == sum(p.numel() for p in expert.parameters())
        own = nhl.evaluate(expert, nette, workers=0, allow_extra=row.kind != "full", device="cpu")
        assert row.images == own.images == 3 * len(row.classes)
        assert row.top1 == pytest.approx(own.top1)
        if row.kind != "full":
            assert row.gmacs_delta_pct < 0 and row.params_delta_pct < 0
            assert 0 <= row.fpr_at_95tpr <= 100 and 0 <= row.auroc <= 1
    full = result.rows[0]
    assert full.fpr_at_95tpr is None and full.gmacs_delta_pct == 0
    out = tmp_path / "f"
    assert result.output_dir == str(out)
    with (out / "experts.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [r.name for r in result.rows]
    assert json.loads((out / "report.json").read_text())["experts"][1]["name"] == "animal"
    assert (out / "frontier.png").read_bytes().startswith(PNG)


def test_experts_cli(
    model_dir: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["experts", model_dir, "--data", nette, "--workers", "0", "--project", tmp_path]
    code, out, _ = run_cli([*base, "--level", "2", "--latency", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert len(report["experts"]) == 1 + 6  # the full model and the six level-2 nodes
    assert all(r["latency_ms"] > 0 for r in report["experts"])
    code, out, _ = run_cli([*base, "--no-save"], capsys)
    flat = "".join(out.split())
    assert code == 0 and "expertfrontierofn3hl" in flat and "baselineresnet50" in flat
    code, _, err = run_cli([*base, "--level", "9"], capsys)
    assert code == 2 and "--level 9 does not exist" in err
