"""The Python API as a notebook uses it (issue 20, section 8): `nhl.train` with keywords, a dict or
a `TrainConfig`, its progress on stdout (or nothing with verbose=False), `Tree` objects wherever a
tree is taken, and `nhl.save_tree`. Real training on a few real Imagenette images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from imagenette_sample import copy_sample, one_thread, small_tree

import nhlcli as nhl
from nhlcli.training.rundir import read_args

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 2, 1)


def tiny(nette: Path, project: Path) -> dict:
    return {
        "arch": "n3hl", "data": str(nette), "epochs": 1, "batch_size": 5, "img_size": 32,
        "workers": 0, "max_train_batches": 1, "max_val_batches": 1, "project": str(project),
    }  # fmt: skip


def test_train_takes_keywords_and_a_tree_object_and_prints_progress(
    nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_tree()
    result = nhl.train(tree=tree, **tiny(nette, tmp_path))
    out = capsys.readouterr().out
    assert result is not None and result.run_dir is not None
    lines = out.splitlines()
    # the CLI's lines, plain (stdout is not a terminal here): no bars, one line each
    assert lines[0] == "recipe auto → fast: 1 optimizer step < 10,000"
    assert lines[1].startswith("n3hl · 10 classes · ")
    assert "batch 5 · lr 0.002 · 0 loader workers" in lines[2]
    assert any(line.startswith("epoch 1: train loss ") for line in lines)
    assert "━" not in out
    # the Tree object is saved in the run, and args.yaml names that copy
    args = read_args(result.run_dir)
    assert args["tree"] == str(result.run_dir / "tree.json")
    assert nhl.load_tree(args["tree"]) == tree
    assert nhl.load_model(result.run_dir).tree == tree


def test_train_takes_a_train_config_and_verbose_false_prints_nothing(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = nhl.TrainConfig(tree=str(tree_file), lr=0.01, **tiny(nette, tmp_path))
    result = nhl.train(cfg, verbose=False)
    assert capsys.readouterr().out == ""
    assert result is not None and result.run_dir is not None
    args = read_args(result.run_dir)
    # recipe auto chose fast, but the lr set in the TrainConfig stays
    assert (args["optimizer"], args["lr"]) == ("adamw", 0.01)
    assert args["recipe_auto"]["kept"] == ["lr"]
    # a dict with keywords on top: the keywords win
    again = nhl.train({**tiny(nette, tmp_path), "tree": str(tree_file)}, name="two", verbose=False)
    assert again is not None and again.run_dir is not None and again.run_dir.name == "two"
    assert capsys.readouterr().out == ""


def test_an_unknown_keyword_names_the_close_setting(nette: Path, tmp_path: Path) -> None:
    with pytest.raises(nhl.NhlError) as e:
        nhl.train(epocs=3, **{k: v for k, v in tiny(nette, tmp_path).items() if k != "epochs"})
    assert "unknown key 'epocs' (did you mean 'epochs'?)" in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_tree_objects_are_taken_wherever_a_tree_is(
    nette: Path, model_dir: Path, tmp_path: Path
) -> None:
    tree = small_tree()
    assert nhl.load_tree(tree) is tree
    model = nhl.build_model("n3hl", tree, img_size=32)
    assert model.tree == tree
    assert nhl.profile("n3hl", tree, img_size=32).row("full").params == model.num_params()
    report = nhl.evaluate(model_dir, nette / "val", metric_tree=tree, workers=0)
    assert report.images == 10 and report.metric_tree == "<tree>"
    other = small_tree([c for c in tree.class_ids[:3]])
    with pytest.raises(nhl.NhlError, match="the tree: 7 evaluated class"):
        nhl.evaluate(model_dir, nette / "val", metric_tree=other, workers=0)
    compared = nhl.compare_trees({"mine": tree, "shipped": "imagenette-wordnet-L3"})
    assert [t.name for t in compared.trees] == ["mine", "shipped"]
    with pytest.raises(nhl.NhlError, match="a tree must be a Tree, a tree file"):
        nhl.build_model("n3hl", 3, img_size=32)  # type: ignore[arg-type]


def test_save_tree_writes_what_load_tree_reads(tmp_path: Path) -> None:
    tree = nhl.load_tree("imagenette-wordnet-L3")
    path = nhl.save_tree(tree, tmp_path / "t.json")
    assert path == tmp_path / "t.json"
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["format"] == "nhl-tree/1"
    assert nhl.load_tree(path) == tree
    assert nhl.load_tree(str(path)).class_ids == tree.class_ids
    with pytest.raises(nhl.NhlError, match="save_tree needs a Tree"):
        nhl.save_tree("imagenette-wordnet-L3", tmp_path / "u.json")  # type: ignore[arg-type]
    assert not (tmp_path / "u.json").exists()
