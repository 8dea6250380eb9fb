"""Cue → class set on ImageNet-1k: real WordNet, and the LLM path against a real HTTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli
from llm_server import LLMServer, Reply

from nhlcli.cues.resolve import resolve_cues
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import imagenet
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree
from nhlcli.hierarchy.wordnet_data import get_wordnet, wnid
from nhlcli.selection import similar_names

DOMESTIC_CATS = ["n02123045", "n02123159", "n02123394", "n02123597", "n02124075"]
WILDCATS = ["n02125311", "n02127052"]  # cougar, lynx
BIG_CATS = ["n02128385", "n02128757", "n02128925", "n02129165", "n02129604", "n02130308"]


@pytest.fixture(scope="module")
def tree1k() -> Tree:
    return resolve_tree("imagenet1k-wordnet-L3")


def hyponym_classes(synset_name: str) -> set[str]:
    """Independent oracle: ImageNet-1k classes reached by WordNet's hyponym closure of a synset."""
    wn = get_wordnet()
    root = wn.synset(synset_name)
    below = {root, *root.closure(lambda s: s.hyponyms() + s.instance_hyponyms())}
    ids = {wnid(s) for s in below}
    return {c.wnid for c in imagenet().classes if c.wnid in ids}


def test_meow_is_the_five_domestic_cats(tree1k: Tree) -> None:
    res = resolve_cues(["meow"], tree1k)
    assert res.class_ids == DOMESTIC_CATS  # exactly these, in the tree's class order
    for m in res.matches:
        assert m.cue == "meow"
        assert "meow.n.01" in m.why and "'cat'" in m.why  # the gloss word that led there


def test_cat_is_wordnets_true_cats_without_big_cats(tree1k: Tree) -> None:
    res = resolve_cues(["cat"], tree1k)
    assert set(res.class_ids) == set(DOMESTIC_CATS + WILDCATS) == hyponym_classes("cat.n.01")
    assert not set(BIG_CATS) & set(res.class_ids)
    assert resolve_cues(["cats"], tree1k).class_ids == res.class_ids  # plural via morphology
    assert set(resolve_cues(["big cat"], tree1k).class_ids) == set(BIG_CATS)


def test_domestic_cat_dog_and_vehicle(tree1k: Tree) -> None:
    assert resolve_cues(["domestic cat"], tree1k).class_ids == DOMESTIC_CATS
    dogs = resolve_cues(["dog"], tree1k).class_ids
    by_index = {c.wnid: c.index for c in imagenet().classes}
    assert sorted(by_index[c] for c in dogs) == list(range(151, 269))  # the 118 dog breeds
    assert set(dogs) == hyponym_classes("dog.n.01")
    vehicles = resolve_cues(["vehicle"], tree1k)
    assert set(vehicles.class_ids) == hyponym_classes("vehicle.n.01")
    names = {m.name for m in vehicles.matches}
    assert {"ambulance", "airliner", "canoe"} <= names and "tabby" not in names


def test_cues_combine_as_a_union_in_tree_order(tree1k: Tree) -> None:
    res = resolve_cues(["dog", "meow", "domestic cat"], tree1k)
    assert len(res.class_ids) == 118 + 5
    order = [tree1k.class_index(c) for c in res.class_ids]
    assert order == sorted(order)
    assert {m.cue for m in res.by_class()["n02123045"]} == {"meow", "domestic cat"}


def test_a_cue_matching_nothing_suggests_similar_tree_nodes(tree1k: Tree) -> None:
    with pytest.raises(NhlError) as err:
        resolve_cues(["wildcatt"], tree1k)
    msg = str(err.value)
    assert "'wildcatt' matches none of the model's 1000 classes" in msg
    assert "'wildcat'" in msg and "\n" not in msg
    assert similar_names(tree1k, "domestik cat")[0] == "domestic cat"
    with pytest.raises(NhlError, match="non-empty"):
        resolve_cues(["  "], tree1k)
    with pytest.raises(NhlError, match="unknown cue source"):
        resolve_cues(["cat"], tree1k, source="oracle")


def test_cues_only_select_the_models_classes(tree1k: Tree) -> None:
    small = tree1k.subtree(
        [*DOMESTIC_CATS[:2], "n02085620"], order="tree"
    )  # tabby, tiger cat, Chihuahua
    assert resolve_cues(["meow"], small).class_ids == DOMESTIC_CATS[:2]
    with pytest.raises(NhlError, match="matches none of the model's 3 classes"):
        resolve_cues(["vehicle"], small)


# --------------------------------------------------------------------------------------------- LLM
def cue_answerer(body: dict[str, Any]) -> Reply:
    """A deterministic stand-in for a chat model: a sound picks the labels ending in 'cat'."""
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    task = json.loads(prompt.split("TASK (JSON):\n", 1)[1])
    assert task["kind"] == "cue"
    labels = [
        line[2:] for line in prompt.split("Classes:\n", 1)[1].split("\n") if line.startswith("- ")
    ]
    known = {"meow": ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]}
    chosen = [lab for lab in labels if lab in known.get(task["cue"], [])]
    answer = {"classes": [{"label": lab, "reason": "makes that sound"} for lab in chosen]}
    return Reply.json(answer)


def llm_settings(server: LLMServer, tmp_path: Any) -> LLMSettings:
    return LLMSettings(model="test-model", base_url=server.url, cache_dir=tmp_path / "cache")


def test_llm_cue_through_the_test_server_and_cache(
    tree1k: Tree, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    bad = {"classes": [{"label": "house cat", "reason": "invented"}]}
    with LLMServer([Reply.json(bad)], fallback=cue_answerer) as server:
        res = resolve_cues(["meow"], tree1k, source="llm", llm=llm_settings(server, tmp_path))
        assert len(server.requests) == 2  # the invented label was sent back for repair
        repair = server.requests[1]["messages"][-1]["content"]
        assert "house cat" in repair
        again = resolve_cues(["meow"], tree1k, source="llm", llm=llm_settings(server, tmp_path))
        assert len(server.requests) == 2  # the same question again: answered from the cache
    assert res.class_ids == again.class_ids == DOMESTIC_CATS
    assert all(m.why == "test-model: makes that sound" for m in res.matches)
    assert "1 from the cache" in again.notes[0]


def test_llm_cue_with_no_classes_is_an_error(
    tree1k: Tree, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    with LLMServer([], fallback=cue_answerer) as server, pytest.raises(NhlError) as err:
        resolve_cues(["quartz"], tree1k, source="llm", llm=llm_settings(server, tmp_path))
    assert "according to model 'test-model'" in str(err.value)
    with pytest.raises(NhlError, match="--llm-model"):
        resolve_cues(["meow"], tree1k, source="llm")


# --------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def checkpoint(tree1k: Tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-width model over 5 cats, 2 dogs and a tench of the ImageNet-1k WordNet tree."""
    from model_helpers import tiny_preset

    from nhlcli.checkpoint import save_model
    from nhlcli.model.network import build_model

    classes = ["n01440764", *DOMESTIC_CATS, "n02085620", "n02099601"]
    model = build_model(tiny_preset(3), tree1k.subtree(classes, order="tree"), img_size=64)
    return save_model(model, tmp_path_factory.mktemp("cue-cli") / "model")


def test_cutout_with_a_cue(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    base = ["cutout", checkpoint, "--cue", "meow"]
    code, out, err = run_cli([*base, "--dry-run", "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["cues"]["classes"] == DOMESTIC_CATS
    assert "meow.n.01" in err  # the table shows what each class matched
    code, _, err = run_cli([*base, "-o", tmp_path / "no"], capsys, monkeypatch, stdin="n\n")
    assert code == 1 and "cancelled" in err
    code, _, err = run_cli([*base, "-o", tmp_path / "no"], capsys, monkeypatch, stdin="")
    assert code == 2 and "pass --yes" in err.strip().splitlines()[-1]
    assert not (tmp_path / "no").exists()
    code, out, _ = run_cli(
        [*base, "-c", "Chihuahua", "-o", tmp_path / "cats", "--picture", tmp_path / "cats.svg",
         "--json"],
        capsys, monkeypatch, stdin="y\n",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out)
    assert [c["id"] for c in summary["classes"]] == ["n02085620", *DOMESTIC_CATS]  # union
    assert (tmp_path / "cats" / "config.json").is_file()
    assert "Egyptian cat" in (tmp_path / "cats.svg").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # without -o the expert goes to runs/cutout/exp
    code, out, _ = run_cli([*base, "--yes", "--json"], capsys, monkeypatch)
    assert code == 0 and len(json.loads(out)["classes"]) == 5


def test_cutout_cue_errors_are_one_line(
    checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for args, text in (
        (["cutout", checkpoint, "--cue", "persan", "--yes"], "similar tree nodes: 'Persian cat'"),
        (["cutout", checkpoint], "--cue"),
        (["cutout", checkpoint, "--cue", "meow", "--cue-source", "oracle"], "--cue-source"),
    ):
        code, _, err = run_cli(args, capsys, monkeypatch)
        assert code == 2 and text in err, err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
