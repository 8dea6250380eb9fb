"""WordNet trees (real WordNet 3.0 from ../shared/data/nltk_data): levels, determinism, the
several-parents rule, the shipped trees, and the message when WordNet is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from nhlcli.hierarchy.classsets import builtin_set, parse_class_lines
from nhlcli.hierarchy.regenerate import stale_shipped_trees
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.wordnet_data import get_wordnet, synset_from_wnid
from nhlcli.hierarchy.wordnet_source import build_wordnet_tree, wordnet_placement_info
from nhlcli.resources import shipped


def assert_levelled(tree, classes, levels: int) -> None:
    assert tree.class_ids == classes.wnids  # every class exactly once, in logit order
    assert tree.levels == levels
    assert all(tree.depth(c) == levels for c in tree.class_ids)
    assert len(tree.level(levels)) == len(classes)


@pytest.mark.parametrize("name", ["imagenette", "imagewoof", "imagenet100"])
@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_small_sets_at_every_depth(name: str, levels: int) -> None:
    classes = builtin_set(name)
    tree = build_wordnet_tree(classes, levels, date=None)
    assert_levelled(tree, classes, levels)
    again = build_wordnet_tree(builtin_set(name), levels, date=None)
    assert again.to_json() == tree.to_json()  # byte-identical rebuild


def test_imagenette_tree_is_the_documented_one() -> None:
    tree = build_wordnet_tree(builtin_set("imagenette"), 3, date=None)
    assert tree.level(1) == ["n01471682", "n00021939"]  # vertebrate, artifact
    assert [tree.node(n).name for n in tree.level(2)] == [
        "tench",
        "English springer",
        "instrumentality",
        "church",
    ]
    assert tree.parent("n03028079") == "n03028079@2"  # church continued at level 2
    assert tree.provenance["date"] is None and tree.provenance["source"] == "wordnet"
    assert tree.provenance["params"]["targets"] == [2, 5]


def test_imagenet1k_three_and_four_levels() -> None:
    classes = builtin_set("imagenet1k")
    for levels in (3, 4):
        tree = build_wordnet_tree(classes, levels, date=None)
        assert_levelled(tree, classes, levels)
    # 38 ImageNet classes have several WordNet parents: all are marked
    ambiguous = [c for c in tree.classes if c.attrs.get("ambiguous")]
    assert len(ambiguous) == 38
    assert tree.node("n03445777").attrs["wordnet_parents"][0] == "n02778669"  # golf ball: ball


def test_groups_aim_for_the_requested_widths() -> None:
    tree = build_wordnet_tree(builtin_set("imagenet1k"), 3, groups=[17, 161], date=None)
    per_level = tree.stats()["nodes_per_level"]
    assert abs(per_level[0] - 17) <= 2 and abs(per_level[1] - 161) <= 5
    assert per_level[2] == 1000


def test_several_parents_rule() -> None:
    cats_and_dogs = parse_class_lines(["tabby", "beagle", "timber wolf", "lynx", "minivan", "cab"])
    info = wordnet_placement_info(cats_and_dogs)
    path_ids = {w: [a for a, _ in p.path] for w, p in info.items()}
    # dog.n.01 keeps canine (deeper than domestic animal); domestic cat keeps cat
    assert "n02083346" in path_ids["n02088364"] and "n01317541" not in path_ids["n02088364"]
    assert "n02121620" in path_ids["n02123045"] and "n01317541" not in path_ids["n02123045"]
    # minivan: passenger van (depth 13) beats car (depth 11)
    assert info["n03770679"].ambiguous and info["n03770679"].chosen == "n03896419"
    assert info["n03770679"].path[-1][0] == "n03896419"
    assert not info["n02123045"].ambiguous and info["n02123045"].num_paths == 2
    assert info["n02123045"].path[0] == ("n00001740", "entity")


def test_arbitrary_synsets_including_one_above_another() -> None:
    classes = parse_class_lines(["wolf.n.01", "dog.n.01", "beagle", "basset", "tabby.n.01"])
    tree = build_wordnet_tree(classes, 3, date=None)
    assert_levelled(tree, classes, 3)
    dog_group = [n for n in tree.path("n02088364")[:-1] if n.startswith("n02084071@")]
    assert dog_group and dog_group[0] in tree.path("n02084071")  # dog inside its own group


def test_fast_reader_names_every_imagenet_synset_like_nltk() -> None:
    """The sped-up reader must give NLTK's synset names (they need its lemma index)."""
    get_wordnet()
    lines = shipped("classsets", "imagenet1k-synsets.tsv").read_text(encoding="utf-8").splitlines()
    expected = dict(line.split("\t") for line in lines if not line.startswith("#"))
    assert len(expected) == 1000
    assert {w: synset_from_wnid(w).name() for w in expected} == expected
    assert get_wordnet().synset("wolf.n.01").offset() == 2114100


def test_shipped_trees_are_current() -> None:
    stale = stale_shipped_trees()
    assert stale == [], f"run `python -m nhlcli.hierarchy.regenerate` to rebuild {stale}"


def test_missing_wordnet_message_and_shipped_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cls = tmp_path / "cats.txt"
    cls.write_text("tabby\nlynx\n", encoding="utf-8")
    out = tmp_path / "cats.json"
    nette = tmp_path / "nette.json"
    import nltk

    empty = tmp_path / "no-nltk-data"
    empty.mkdir()
    monkeypatch.setattr(nltk.data, "path", [str(empty)])  # NLTK searches only an empty folder
    get_wordnet.cache_clear()
    try:
        code, _, err = run_cli(["build-tree", "--classes", str(cls), "-o", str(out)], capsys)
        assert code == 2 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert "python -m nltk.downloader wordnet" in err and "NLTK_DATA" in err
        assert not out.exists()
        # a built-in set at a shipped depth falls back to the shipped tree (= a fresh build)
        code, _, err = run_cli(
            [
                "build-tree",
                "--classes",
                "imagenette",
                "--levels",
                "3",
                "--no-date",
                "-o",
                str(nette),
            ],
            capsys,
        )
        assert code == 0, err
        assert "shipped tree imagenette-wordnet-L3" in " ".join(err.split())
        code, _, err = run_cli(
            [
                "build-tree",
                "--classes",
                "imagenette",
                "--levels",
                "3",
                "--groups",
                "3,6",
                "-o",
                str(out),
            ],
            capsys,
        )
        assert code == 2 and "nltk.downloader" in err and not out.exists()
    finally:
        monkeypatch.undo()
        get_wordnet.cache_clear()
    fresh = build_wordnet_tree(builtin_set("imagenette"), 3, date=None)
    assert nette.read_text(encoding="utf-8") == fresh.to_json()
    assert resolve_tree("imagenette-wordnet-L3") == fresh
