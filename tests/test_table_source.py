"""Table trees: the built-in superclass table checked against the raw upstream files, CSV/TSV
tables, and BREEDS' modified hierarchy (../shared/data/breeds/modified)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import builtin_set, parse_class_lines
from nhlcli.hierarchy.table_source import MISSING_GROUP, build_table_tree
from nhlcli.resources import shipped


def raw_superclass(shared: Path) -> tuple[list[int], list[str]]:
    folder = shared / "imagenet_superclass"
    ids = [int(x) for x in (folder / "superclass.txt").read_text().split()]
    names = (folder / "superclass_names.txt").read_text(encoding="utf-8").split("\n")
    return ids, names


def test_superclass_tree_matches_the_raw_table(shared_data: Path) -> None:
    ids, names = raw_superclass(shared_data)
    assert len(ids) == len(names) == 1000
    tree = build_table_tree(builtin_set("imagenet1k"), "imagenet-superclass", date=None)
    assert tree.levels == 2 and tree.class_ids == builtin_set("imagenet1k").wnids
    assert len(tree.level(1)) == 558 == len(set(ids))
    parent_of_id: dict[int, str] = {}
    for i, cid in enumerate(tree.class_ids):
        parent = tree.parent(cid)
        assert parent is not None
        assert tree.node(parent).name == names[i].split(",")[0].strip()
        # one table superclass <-> one tree node
        assert parent_of_id.setdefault(ids[i], parent) == parent
    assert len(set(parent_of_id.values())) == 558


def test_superclass_wnids_are_the_imagenet_parents(shared_data: Path) -> None:
    """The shipped id -> wnid file follows the upstream rule on ImageNet's wordnet.is_a.txt."""
    last_parent: dict[str, str] = {}
    with gzip.open(shared_data / "imagenet_wordnet" / "wordnet.is_a.txt.gz", "rt") as f:
        for line in f:
            parent, child = line.split()
            last_parent[child] = parent
    distinct = sorted({last_parent[w] for w in builtin_set("imagenet1k").wnids})
    rows = shipped("tables", "imagenet-superclass", "superclass_wnids.txt").read_text().splitlines()
    shipped_ids = [r.split("\t")[1] for r in rows if not r.startswith("#")]
    assert shipped_ids == distinct
    tree = build_table_tree(builtin_set("imagenet1k"), date=None)
    assert all(tree.parent(w) == last_parent[w] for w in tree.class_ids)


def test_superclass_subset_and_errors() -> None:
    tree = build_table_tree(builtin_set("imagenette"), date=None)
    assert tree.parent("n01440764") == "n01439121"  # tench -> cyprinid
    assert tree.node("n01439121").name == "cyprinid"
    with pytest.raises(NhlError, match="gives trees of 2 levels, not 3"):
        build_table_tree(builtin_set("imagenette"), levels=3)
    with pytest.raises(NhlError, match="--groups does not apply"):
        build_table_tree(builtin_set("imagenette"), groups=[3])
    wolf = parse_class_lines(["tench", "wolf.n.01"])
    with pytest.raises(NhlError, match=r"1 class\(es\) are not in the table .*n02114100 \(wolf\)"):
        build_table_tree(wolf)
    placed = build_table_tree(wolf, allow_missing=True, date=None)
    assert placed.parent("n02114100") == MISSING_GROUP[0]
    assert placed.provenance["params"]["missing"] == ["n02114100"]


CSV = """class,group,kingdom
# a comment row: each row reads upwards (a tench is a fish, a fish is an animal)
tench,fish,animal
goldfish.n.01,fish,animal
n01484850,shark,animal
church,building,
tabby,animal,
wolf.n.01,other,animal
cassette player,other,thing
"""


def test_csv_table_exactly(tmp_path: Path) -> None:
    table = tmp_path / "mine.csv"
    table.write_text(CSV, encoding="utf-8")
    classes = parse_class_lines(
        [
            "tench",
            "goldfish",
            "great white shark",
            "church",
            "tabby",
            "wolf.n.01",
            "cassette player",
        ]
    )
    tree = build_table_tree(classes, table, date=None)
    assert tree.levels == 3
    assert tree.path("n01440764") == ["animal", "fish", "n01440764"]
    assert tree.path("n01484850") == ["animal", "shark", "n01484850"]
    assert tree.path("n03028079") == ["building", "n03028079@2", "n03028079"]  # empty cell
    # "other" names two different groups: ids become their paths
    assert tree.path("n02114100")[:2] == ["animal", "animal/other"]
    assert tree.path("n02979186")[:2] == ["thing", "thing/other"]
    assert tree.node("animal/other").name == "other"
    # a subset: rows of other classes are ignored; TSV works the same
    tsv = tmp_path / "mine.tsv"
    tsv.write_text(CSV.replace(",", "\t"), encoding="utf-8")
    small = build_table_tree(parse_class_lines(["tabby", "tench"]), tsv, date=None)
    assert small.path("n02123045") == ["animal", "n02123045@2", "n02123045"]
    with pytest.raises(NhlError, match="gives trees of 3 levels, not 2"):
        build_table_tree(classes, table, levels=2)


def test_csv_problems_are_listed_with_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "class,a,b\ntench,x,y\ncrane,x,y\ntench,x,z\ngoldfish,,y\nbeagle,x,y,z\n", encoding="utf-8"
    )
    with pytest.raises(NhlError) as e:
        build_table_tree(builtin_set("imagenette"), bad)
    probs = e.value.problems
    assert len(probs) == 4
    assert probs[0].startswith("line 3: 'crane' is ambiguous")
    assert probs[1].startswith("line 4:") and "line 2" in probs[1]
    assert probs[2] == "line 5: an empty level is followed by a filled one"
    assert probs[3].startswith("line 6: 4 cells")
    missing = tmp_path / "partial.csv"
    missing.write_text("class,group\ntench,fish\n", encoding="utf-8")
    with pytest.raises(NhlError, match=r"9 class\(es\) are not in the table partial.csv"):
        build_table_tree(builtin_set("imagenette"), missing)
    with pytest.raises(NhlError, match="neither a built-in table"):
        build_table_tree(builtin_set("imagenette"), tmp_path / "nope.csv")


def test_breeds_modified_hierarchy(shared_data: Path) -> None:
    folder = shared_data / "breeds" / "modified"
    in1k = builtin_set("imagenet1k")
    with pytest.raises(NhlError, match=r"110 class\(es\) are not in the table modified"):
        build_table_tree(in1k, folder)
    tree = build_table_tree(in1k, folder, levels=3, allow_missing=True, date=None)
    assert tree.levels == 3 and tree.class_ids == in1k.wnids
    missing = tree.leaves_under(MISSING_GROUP[0])
    assert len(missing) == 110 and tree.depth(MISSING_GROUP[0]) == 1
    covered = {ln.split()[1] for ln in (folder / "class_hierarchy.txt").read_text().splitlines()}
    assert set(missing) == set(in1k.wnids) - covered
    # BREEDS renamed artifact to "non-living thing"; names are the first synonym
    assert tree.node("n00015388").name == "animal"
    woof = builtin_set("imagewoof")  # all dogs (dingo too) are in BREEDS
    nette = build_table_tree(woof, folder, levels=2, date=None)
    assert nette.levels == 2 and nette.num_classes == 10
    again = build_table_tree(woof, folder, levels=2, date=None)
    assert again.to_json() == nette.to_json()


def test_not_a_breeds_folder(tmp_path: Path) -> None:
    with pytest.raises(
        NhlError,
        match=r"not a BREEDS hierarchy folder: class_hierarchy\.txt, node_names\.txt missing",
    ):
        build_table_tree(builtin_set("imagenette"), tmp_path)
