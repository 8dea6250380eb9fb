"""`--source induced` on class evidence given as arrays: levelling, determinism, names (WordNet,
central members, a chat model on a real local HTTP server), provenance and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llm_server import LLMServer, Reply, task_of

import nhlcli as nhl
from nhlcli.errors import NhlError
from nhlcli.hierarchy import wordnet_data
from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.evidence import ClassEvidence
from nhlcli.hierarchy.induced_source import merge_paths
from nhlcli.hierarchy.levelling import ClassPath, level_tree
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.hierarchy.sources import SOURCES
from nhlcli.hierarchy.tree import Tree

NETTE = builtin_set("imagenette")
# three well-separated clusters of the ten Imagenette classes (class positions)
CLUSTERS = [[0, 1], [2, 3, 5, 6, 7, 9], [4, 8]]


def evidence(
    seed: int = 0, dims: int = 16, clusters: list[list[int]] = CLUSTERS, **kw: Any
) -> ClassEvidence:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(clusters), dims)) * 5
    feats = np.zeros((len(NETTE), dims))
    for c, members in enumerate(clusters):
        for m in members:
            feats[m] = centres[c] + rng.normal(size=dims) * 0.3
    source = {"model": "runs/x/best", "arch": "resnet50", "weights_sha256": "ab" * 32,
              "data": "imagenette/val", "images": 30}  # fmt: skip
    return ClassEvidence(
        tuple(NETTE.wnids),
        tuple(c.name for c in NETTE.classes),
        features=feats,
        counts=np.full(len(NETTE), 3),
        source=source,
        **kw,
    )


def build(levels: int = 3, groups: list[int] | None = None, **options: Any) -> Tree:
    options.setdefault("evidence", evidence())
    from nhlcli.hierarchy.sources import SourceContext

    return nhl.build_tree(
        "induced", NETTE, levels, groups=groups, context=SourceContext(date=None), **options
    )


def partition(tree: Tree, level: int) -> list[list[int]]:
    return sorted(
        sorted(tree.class_index(c) for c in tree.leaves_under(n)) for n in tree.level(level)
    )


def test_registered_in_the_typed_registry() -> None:
    assert "induced" in SOURCES
    assert SOURCES["induced"].options.__name__ == "InducedOptions"


@pytest.mark.parametrize(
    ("levels", "groups", "per_level"),
    [
        (1, None, [10]),
        (2, None, [3, 10]),
        (3, None, [2, 5, 10]),
        (3, [3, 6], [3, 6, 10]),
        (4, [2, 4, 7], [2, 4, 7, 10]),
    ],
)
def test_levels_and_groups_follow_the_levelling_rule(
    levels: int, groups: list[int] | None, per_level: list[int]
) -> None:
    tree = build(levels, groups)
    tree.require_levels(levels)
    assert tree.stats()["nodes_per_level"] == per_level
    assert tree.class_ids == NETTE.wnids  # leaf order = the class set's order
    assert Tree.from_dict(json.loads(tree.to_json())) == tree  # a valid nhl-tree/1 file
    # the same rule as every levelled source: level_tree on the dendrogram's merge paths
    chains = merge_paths(evidence().embedding("features"), "ward")
    paths = [
        ClassPath(c.wnid, c.name, tuple((m, m) for m in ch))
        for c, ch in zip(NETTE.classes, chains, strict=True)
    ]
    reference = level_tree(paths, levels, groups or None)
    for lv in range(1, levels + 1):
        assert partition(tree, lv) == partition(reference, lv)


def test_clusters_of_the_embedding_become_the_groups() -> None:
    tree = build(2, [3])
    assert partition(tree, 1) == sorted(sorted(c) for c in CLUSTERS)
    assert [n.id for n in tree.nodes] == ["g1.1", "g1.2", "g1.3"]
    average = build(2, [3], linkage="average")
    assert partition(average, 1) == partition(tree, 1)


def test_byte_identical_rebuilds() -> None:
    a = build(3).to_json()
    ev = evidence()
    copy = ClassEvidence(
        ev.class_ids, ev.class_names, features=ev.features.copy(), counts=ev.counts,
        source=dict(ev.source),
    )  # fmt: skip
    assert build(3, evidence=copy).to_json() == a
    assert build(3).to_json() == a


def test_wordnet_names_are_the_lowest_common_hypernym() -> None:
    tree = build(2, [3])
    names = {tuple(sorted(tree.class_index(c) for c in tree.leaves_under(n))): tree.node(n).name
             for n in tree.level(1)}  # fmt: skip
    assert names == {
        (0, 1): "vertebrate",
        (2, 3, 5, 6, 7, 9): "instrumentality",
        (4, 8): "artifact",
    }
    assert tree.provenance["naming"] == {"rule": "wordnet"}


def test_names_clashing_in_a_level_get_their_members() -> None:
    tree = build(2, [4])  # the six artifacts split: two groups are both "instrumentality"
    level1 = [tree.node(n).name for n in tree.level(1)]
    assert len(set(level1)) == len(level1)
    clashing = sorted(n for n in level1 if n.startswith("instrumentality: "))
    assert len(clashing) == 2 and not any("(" in n for n in level1)
    for n in clashing:  # "instrumentality: gas pump + 2 more": the hypernym, then its members
        shown = n.removeprefix("instrumentality: ").split(" + ")[0]
        assert shown in [c.name for c in NETTE.classes]


def name_of(tree: Tree, level: int) -> dict[tuple[int, ...], str]:
    return {tuple(sorted(tree.class_index(c) for c in tree.leaves_under(n))): tree.node(n).name
            for n in tree.level(level)}  # fmt: skip


def test_a_too_general_hypernym_gives_way_to_the_members() -> None:
    # a model that mixes fish, tools and buildings: WordNet holds them together only as "whole"
    mixed = [[0, 7, 3], [1, 2, 4], [5, 6, 8, 9]]
    tree = build(2, [3], evidence=evidence(clusters=mixed))
    names = name_of(tree, 1)
    assert names[(5, 6, 8, 9)] == "instrumentality"  # specific enough: kept
    for group in ((0, 3, 7), (1, 2, 4)):  # "whole", twice: named after the members instead
        first, rest = names[group].split(" + ")
        assert rest == "2 more" and first in [NETTE.classes[i].name for i in group]
    every = [n.name for n in tree.nodes]
    assert not any("whole" in n or "(" in n for n in every)
    for n in every:  # no word twice in a name
        words = n.replace("+", " ").split()
        assert len(words) == len(set(words)), n


def test_the_naming_rule_on_single_members_pairs_and_general_hypernyms() -> None:
    from nhlcli.hierarchy.group_names import members_name, unique_per_level, wordnet_namer

    namer = wordnet_namer(NETTE)
    assert namer is not None
    assert namer.name([4]) == "church"  # one member names its group
    assert namer.name([0, 1]) == "vertebrate" and namer.name([5, 6]) == "instrumentality"
    assert namer.name([4, 8]) == "artifact"  # depth 4: specific enough
    assert namer.name([0, 4]) is None and namer.name([1, 7, 3]) is None  # "whole": too general
    names = [c.name for c in NETTE.classes]
    assert members_name(names, [4]) == "church"
    assert members_name(names, [0, 4]) == "tench + church"
    assert members_name(names, [7, 0, 3]) == "gas pump + 2 more"
    assert unique_per_level(
        ["dog", "dog", "dog", "cat"], [1, 1, 2, 1], ["beagle + 2 more", "pug + Shih-Tzu", "x", "y"]
    ) == ["dog: beagle + 2 more", "dog: pug + Shih-Tzu", "dog", "cat"]


@pytest.fixture
def no_wordnet(monkeypatch: pytest.MonkeyPatch):
    import nltk.data  # imported first with the real NLTK_DATA: its search path is built at import

    monkeypatch.setattr(nltk.data, "path", ["/nonexistent"])
    wordnet_data.get_wordnet.cache_clear()
    yield
    wordnet_data.get_wordnet.cache_clear()


def test_without_wordnet_groups_are_named_after_central_members(no_wordnet: None) -> None:
    notes: list[str] = []
    from nhlcli.hierarchy.sources import SourceContext

    ctx = SourceContext(date=None)
    tree = nhl.build_tree("induced", NETTE, 2, groups=[3], context=ctx, evidence=evidence())
    notes = ctx.notes
    names = sorted(tree.node(n).name for n in tree.level(1))
    assert {"tench + English springer", "English springer + tench"} & set(names)  # both listed
    assert sum(n.endswith(" + 5 more") for n in names) == 1  # the 6-class group
    assert not any(n.startswith("group of") for n in names)
    assert tree.provenance["naming"] == {"rule": "central"}
    assert any("WordNet data is not installed" in n for n in notes)
    with pytest.raises(NhlError, match="--names wordnet needs WordNet"):
        build(2, [3], names="wordnet")


def test_central_member_is_nearest_to_the_group_mean() -> None:
    ev = evidence()
    feats = ev.features.copy()
    # make chain saw the exact centre of the six-artifact group
    others = [2, 5, 6, 7, 9]
    feats[3] = feats[others].mean(axis=0)
    ev2 = ClassEvidence(ev.class_ids, ev.class_names, features=feats, source=ev.source)
    tree = build(2, [3], evidence=ev2, names="central")
    names = {tree.node(n).name for n in tree.level(1)}
    assert "chain saw + 5 more" in names


def test_provenance_records_model_embedding_linkage_and_data() -> None:
    tree = build(3, linkage="average")
    prov = tree.provenance
    assert prov["source"] == "induced"
    assert prov["params"]["embedding"] == "features" and prov["params"]["linkage"] == "average"
    assert prov["model"] == {"path": "runs/x/best", "arch": "resnet50", "sha256": "ab" * 32}
    assert prov["data"] == {"folder": "imagenette/val", "images": 30}
    assert prov["rules"]["clustering"] == "scipy-linkage-average"
    assert "date" in prov and prov["date"] is None


def test_confusion_and_weights_embeddings() -> None:
    conf = np.full((10, 10), 0)
    for members in CLUSTERS:  # confusions only inside the clusters
        for i in members:
            for j in members:
                conf[i, j] = 10 if i == j else 3
    ev = evidence(confusion=conf, weights=evidence(seed=1).features)
    tree = build(2, [3], evidence=ev, embedding="confusion")
    assert partition(tree, 1) == sorted(sorted(c) for c in CLUSTERS)
    w = build(2, [3], evidence=ev, embedding="weights")
    assert partition(w, 1) == sorted(sorted(c) for c in CLUSTERS)
    assert "data" not in w.provenance  # the weights need no images


def test_errors_are_one_clear_message() -> None:
    ev = evidence()
    small = ev.restrict([c for c in NETTE.wnids if c not in ("n03028079", "n03888257")])
    with pytest.raises(NhlError) as e:
        build(3, evidence=small)
    assert "2 class(es) are not classes of runs/x/best" in str(e.value)
    assert "n03028079 (church)" in str(e.value) and "n03888257 (parachute)" in str(e.value)
    with pytest.raises(NhlError, match="needs a trained model"):
        nhl.build_tree("induced", NETTE, 3)
    with pytest.raises(NhlError, match="shared classifier"):
        build(3, embedding="weights")
    with pytest.raises(NhlError, match="give --data"):
        build(3, embedding="confusion")
    with pytest.raises(NhlError) as bad:
        build(3, linkage="single", embedding="pixels")
    assert len(bad.value.problems) == 2
    with pytest.raises(NhlError, match="--groups needs 2"):
        build(3, [4])
    empty = ClassEvidence(ev.class_ids, ev.class_names, features=ev.features,
                          counts=np.array([3] * 9 + [0]), source=ev.source)  # fmt: skip
    with pytest.raises(NhlError, match=r"no images were read for 1 class\(es\): n03888257"):
        build(3, evidence=empty)


def test_a_subset_of_the_model_classes_in_the_given_order() -> None:
    wanted = ["n03888257", "n01440764", "n02102040", "n03417042"]
    classes = nhl.build_tree("wordnet", NETTE, 1).subtree(wanted).class_ids
    from nhlcli.hierarchy.classsets import ClassRef, ClassSet

    names = dict(zip(NETTE.wnids, (c.name for c in NETTE.classes), strict=True))
    subset = ClassSet("four", "test", tuple(ClassRef(c, names[c]) for c in classes))
    tree = nhl.build_tree("induced", subset, 2, groups=[2], evidence=evidence())
    assert tree.class_ids == wanted
    assert partition(tree, 1) == [[0, 3], [1, 2]]  # parachute + garbage truck; the two animals


def naming_server(body: dict[str, Any]) -> Reply:
    task = task_of(body)
    assert task["kind"] == "name"
    names = [{"id": g["id"], "name": f"things like {g['classes'][0]}"} for g in task["groups"]]
    return Reply.json({"names": names})


def test_llm_names_against_a_local_server(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    settings = LLMSettings(model="namer", base_url=None, cache_dir=tmp_path / "cache")
    with LLMServer(fallback=naming_server) as server:
        settings.base_url = server.url
        tree = build(2, [3], names="llm", llm=settings)
        again = build(2, [3], names="llm", llm=settings)  # from the cache
        assert len(server.requests) == 1
    assert again == tree
    level1 = {tree.node(n).name for n in tree.level(1)}
    # members are listed nearest to their group's mean first (ties: class order)
    assert {"things like tench", "things like church"} < level1
    assert all(n.startswith("things like ") for n in level1) and len(level1) == 3
    prov = tree.provenance["naming"]
    assert prov["rule"] == "llm" and prov["llm"]["model"] == "namer"


def test_llm_answer_with_problems_is_repaired(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    bad = Reply.json({"names": [{"id": "g1.1", "name": "same"}, {"id": "g1.2", "name": "same"}]})
    with LLMServer([bad], fallback=naming_server) as server:
        settings = LLMSettings(model="namer", base_url=server.url, use_cache=False)
        tree = build(2, [3], names="llm", llm=settings)
        assert len(server.requests) == 2
        repair = server.requests[1]["messages"][-1]["content"]
    assert "have the same name" in repair and "groups without a name: 'g1.3'" in repair
    assert all(tree.node(n).name.startswith("things like ") for n in tree.level(1))
