"""`nhl eval` on a briefly trained n3hl: reference predictions, subsets, experts, attention."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree

from nhlcli.checkpoint import save_model
from nhlcli.data.augment import Normalize
from nhlcli.data.dataset import ImageFileDataset, collate_decoded, decode_square, eval_resize_size
from nhlcli.data.folders import index_image_folder
from nhlcli.evaluation.inference import oracle_logits, run_inference
from nhlcli.evaluation.runner import parse_sweep
from nhlcli.model.attention import clear_attention, set_attention
from nhlcli.model.cutout import cutout
from nhlcli.model.network import build_model
from nhlcli.training.checkpointing import load_checkpoint_model
from nhlcli.training.config import build_config
from nhlcli.training.engine import train

LOWER5 = [c for c, _ in IMAGENETTE[:5]]


_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(autouse=True)
def _outputs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nhl eval` writes runs/eval/NAME under the working directory: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 2, 3)


@pytest.fixture(scope="module")
def run(nette: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (very short) n3hl training run on the sample."""
    tree = tmp_path_factory.mktemp("tree") / "tree.json"
    small_tree().save(tree)
    cfg = build_config(
        {
            "arch": "n3hl",
            "tree": str(tree),
            "data": str(nette),
            "epochs": 1,
            "batch_size": 10,
            "img_size": 32,
            "workers": 0,
            "max_train_batches": 2,
            "max_val_batches": 1,
            "project": str(tmp_path_factory.mktemp("runs")),
        }
    )
    result = train(cfg)
    assert result.run_dir is not None
    return result.run_dir


def reference_predictions(model, files: list[tuple[str, int]], subset: list[int] | None = None):
    """One image at a time, the plain way: decode, normalise, forward, arg-max (over a subset)."""
    model.eval()
    norm = Normalize()
    preds = []
    with torch.no_grad():
        for path, _ in files:
            x = norm(decode_square(path, eval_resize_size(32), 32)[None])
            logits = model(x)[0]
            if subset is None:
                preds.append(int(logits.argmax()))
            else:
                preds.append(subset[int(logits[subset].argmax())])
    return preds


def counts(preds: list[int], files: list[tuple[str, int]], classes: list[int]) -> dict[int, int]:
    return {
        c: sum(1 for p, (_, y) in zip(preds, files, strict=True) if y == c and p == c)
        for c in classes
    }


def test_eval_matches_one_image_at_a_time(
    run: Path, nette: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["eval", run, "--data", nette, "--workers", "0", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["checkpoint"] == str(run / "best")
    assert report["images"] == 30 and report["evaluated_classes"] == 10 and not report["subset"]
    model = load_checkpoint_model(run / "best")
    files = list(index_image_folder(nette / "val", model.tree).samples)
    preds = reference_predictions(model, files)
    expected = counts(preds, files, list(range(10)))
    assert [r["correct"] for r in report["per_class"]] == [expected[i] for i in range(10)]
    assert report["top1"] == pytest.approx(100.0 * sum(expected.values()) / 30)
    # the table output names every class and the top-1
    code, out, _ = run_cli(
        ["eval", run / "best", "--data", nette / "val", "--workers", "0"], capsys
    )
    assert code == 0 and "parachute" in out and f"top-1: {report['top1']:.2f}%" in out


def test_subset_restricts_the_softmax(
    run: Path, nette: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["eval", run, "--data", nette, "--classes", "animal,church", "--workers", "0", "--json"],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    ids = ["n01440764", "n02102040", "n03028079"]  # the superclass 'animal' = tench, springer
    assert [r["id"] for r in report["per_class"]] == ids and report["subset"]
    model = load_checkpoint_model(run / "best")
    idx = [model.tree.class_index(c) for c in ids]
    files = [s for s in index_image_folder(nette / "val", model.tree).samples if s[1] in idx]
    preds = reference_predictions(model, files, idx)
    expected = counts(preds, files, idx)
    assert [r["correct"] for r in report["per_class"]] == [expected[i] for i in idx]
    assert report["images"] == 9


def test_expert_gives_the_same_predictions_as_the_restricted_full_model(
    run: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = load_checkpoint_model(run / "best")
    expert = cutout(full, LOWER5)
    save_model(expert, tmp_path / "expert")
    assert expert.num_params() < full.num_params()
    # library level: image by image, the same class ids
    tree = full.tree
    folder = index_image_folder(nette / "val", tree).restricted(range(5))
    batch = collate_decoded(
        [ImageFileDataset(folder.samples, 32, "eval")[i] for i in range(len(folder))]
    )
    loaded = load_checkpoint_model(tmp_path / "expert")
    p_full = run_inference(full, [batch], torch.device("cpu"), subset=list(range(5))).preds[None]
    p_exp = run_inference(loaded, [batch], torch.device("cpu")).preds[None]
    assert [tree.class_ids[i] for i in p_full] == [loaded.tree.class_ids[i] for i in p_exp]
    # CLI: the expert on the full val folder (extra folders allowed) vs --classes on the full model
    code, out, _ = run_cli(
        ["eval", tmp_path / "expert", "--data", nette, "--allow-extra", "--workers", "0", "--json"],
        capsys,
    )
    assert code == 0
    rep_exp = json.loads(out)
    code, out, _ = run_cli(
        ["eval", run, "--data", nette, "--classes", ",".join(LOWER5), "--workers", "0", "--json"],
        capsys,
    )
    rep_full = json.loads(out)
    assert rep_exp["per_class"] == rep_full["per_class"] and rep_exp["top1"] == rep_full["top1"]
    assert rep_exp["model_classes"] == 5 and rep_full["model_classes"] == 10
    # without --allow-extra the expert refuses the five folders it does not know
    code, _, err = run_cli(["eval", tmp_path / "expert", "--data", nette, "--workers", "0"], capsys)
    assert code == 2 and "5 folder(s) match no class" in err and "--allow-extra" in err


@pytest.mark.parametrize("level", [3, 1])
def test_oracle_grouped_by_label_equals_one_image_at_a_time(
    run: Path, nette: Path, level: int
) -> None:
    model = load_checkpoint_model(run / "best")
    folder = index_image_folder(nette / "val", model.tree)
    batch = collate_decoded(
        [ImageFileDataset(folder.samples, 32, "eval")[i] for i in range(0, 30, 2)]
    )
    x, y = Normalize()(batch.images), batch.labels
    with torch.no_grad():
        fast = oracle_logits(model, x, y, [1.0, 1.8], level)
        assert model.attention_level is None  # restored
        for s in (1.0, 1.8):
            for i in range(len(y)):
                set_attention(model, {model.tree.class_ids[int(y[i])]: s}, level=level)
                ref = model(x[i : i + 1])[0]
                torch.testing.assert_close(fast[s][i], ref, rtol=1e-4, atol=1e-4)
        clear_attention(model)
        torch.testing.assert_close(fast[1.0], model(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(fast[1.0], fast[1.8])


def test_attention_options(run: Path, nette: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        ["eval", run, "--data", nette, "--attend-sweep", "1.0:2.0:0.5", "--workers", "0", "--json"],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    assert [o["scale"] for o in report["oracle"]] == [1.0, 1.5, 2.0]
    assert report["oracle"][0]["top1"] == report["top1"]
    assert "true label" in report["oracle_note"] and report["attention_level"] == 3
    code, out, _ = run_cli(
        ["eval", run, "--data", nette, "--attend-oracle", "1.8", "--workers", "0"], capsys
    )
    assert code == 0 and "true label" in out and "1.8" in out
    # a fixed cue for all images: the same predictions as setting the attention by hand
    code, out, _ = run_cli(
        ["eval", run, "--data", nette, "--attend", "tench=2.5", "--workers", "0", "--json"], capsys
    )
    report = json.loads(out)
    assert report["attention"] == {"n01440764": 2.5} and report["attention_level"] == 3
    model = load_checkpoint_model(run / "best")
    set_attention(model, {"tench": 2.5})
    files = list(index_image_folder(nette / "val", model.tree).samples)
    expected = counts(reference_predictions(model, files), files, list(range(10)))
    assert [r["correct"] for r in report["per_class"]] == [expected[i] for i in range(10)]


def test_parse_sweep() -> None:
    assert parse_sweep("1.0:2.0:0.1") == [round(1 + i / 10, 6) for i in range(11)]
    assert parse_sweep("1.8:1.8:0.1") == [1.8]


def test_eval_errors_exit_2_with_one_line(
    run: Path, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(args: list) -> str:
        code, out, err = run_cli(["eval", *args, "--workers", "0"], capsys)
        assert code == 2, (out, err)
        assert len(err.strip().splitlines()) == 1, err
        return err

    assert "not a class or node" in error([run, "--data", nette, "--attend", "zebra=2"])
    assert "is not NAME=SCALE" in error([run, "--data", nette, "--attend", "tench"])
    assert "START <= STOP" in error([run, "--data", nette, "--attend-sweep", "2:1:0.1"])
    assert "not both" in error(
        [run, "--data", nette, "--attend-oracle", "2", "--attend-sweep", "1:2:1"]
    )
    assert "model not found" in error([tmp_path / "nope", "--data", nette])
    assert "is not a class or node" in error([run, "--data", nette, "--classes", "zebra"])
    partial = tmp_path / "partial"
    shutil.copytree(nette / "val", partial)
    shutil.rmtree(partial / "n01440764")
    assert "without images: n01440764 (tench)" in error([run, "--data", partial])
    # a subset that avoids the missing class is fine
    code, _, _ = run_cli(
        ["eval", run, "--data", partial, "--classes", "church", "--workers", "0"], capsys
    )
    assert code == 0
    r50 = build_model("resnet50", small_tree(), img_size=32)
    save_model(r50, tmp_path / "r50")
    assert "per-class branches" in error(
        [tmp_path / "r50", "--data", nette, "--attend-oracle", "1.5"]
    )
