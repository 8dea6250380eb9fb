"""`nhl build-tree` and `nhl tree show|export|validate` end to end, including every bad-input path
(exit 2, one line, no traceback, no file left behind)."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
from cli_helpers import run_cli

from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.hierarchy.wordnet_source import build_wordnet_tree


def assert_user_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_build_tree_writes_the_tree_and_prints_stats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nette.json"
    code, stdout, err = run_cli(
        [
            "build-tree",
            "--source",
            "wordnet",
            "--classes",
            "imagenette",
            "--levels",
            "3",
            "--no-date",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    expected = build_wordnet_tree(builtin_set("imagenette"), 3, date=None).to_json()
    assert out.read_text(encoding="utf-8") == expected
    assert "2 / 4 / 10" in stdout and "instrumentality (7 children)" in stdout
    code, stdout, _ = run_cli(
        ["build-tree", "-c", "imagenette", "-l", "3", "--no-date", "-o", "-"], capsys
    )
    assert code == 0 and stdout == expected  # `-o -` prints exactly the file
    code, stdout, _ = run_cli(
        ["build-tree", "-c", "imagewoof", "-l", "2", "-o", str(tmp_path / "w.json"), "--json"],
        capsys,
    )
    data = json.loads(stdout)
    assert data["stats"]["nodes_per_level"][-1] == 10 and data["stats"]["levels"] == 2
    assert len(data["provenance"]["date"]) == 10  # today, YYYY-MM-DD


def test_build_tree_from_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sc.json"
    code, stdout, err = run_cli(
        [
            "build-tree",
            "--source",
            "superclass",
            "--classes",
            "imagenet100",
            "--table",
            "imagenet-superclass",
            "-o",
            str(out),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(stdout)["stats"]["levels"] == 2
    table = tmp_path / "t.csv"
    table.write_text("class,group\ntench,fish\ngoldfish,fish\nchurch,building\n", encoding="utf-8")
    classes = tmp_path / "three.txt"
    classes.write_text("tench\ngoldfish\nchurch\n", encoding="utf-8")
    code, _, err = run_cli(
        [
            "build-tree",
            "-s",
            "superclass",
            "-c",
            str(classes),
            "--table",
            str(table),
            "-o",
            str(tmp_path / "csv.json"),
        ],
        capsys,
    )
    assert code == 0, err
    assert Tree.load(tmp_path / "csv.json").path("n03028079") == ["building", "n03028079"]


def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.json"
    out.write_text("previous content", encoding="utf-8")  # must survive every failure
    base = ["build-tree", "-o", str(out)]
    cases = [
        (["-c", "imagenette", "--source", "nope"], "unknown source 'nope'"),
        (["-c", "imagenette", "--groups", "17,x"], "--groups takes whole numbers"),
        (["-c", "imagenette", "--levels", "3", "--groups", "4"], "--groups needs 2 number(s)"),
        (["-c", "imagenette", "--levels", "0"], "greater than or equal to 1"),
        (["-c", "imagenet-2k"], "neither a built-in class set"),
        (["-c", "imagenette", "--table", "imagenet-superclass"], "apply to --source superclass"),
        (
            ["-c", "imagenette", "-s", "superclass", "--table", str(tmp_path / "no.csv")],
            "neither a built-in table",
        ),
        (["-c", "imagenette", "-s", "superclass", "--levels", "3"], "gives trees of 2 levels"),
    ]
    for extra, needle in cases:
        code, stdout, err = run_cli([*base, *extra], capsys)
        assert_user_error(code, stdout, err, needle)
        assert out.read_text(encoding="utf-8") == "previous content"
    fresh = tmp_path / "fresh.json"
    cls = tmp_path / "bad.txt"
    cls.write_text("crane\ntabby\n", encoding="utf-8")
    code, stdout, err = run_cli(["build-tree", "-c", str(cls), "-o", str(fresh)], capsys)
    assert_user_error(code, stdout, err, "line 1: 'crane' is ambiguous")
    assert not fresh.exists() and list(tmp_path.glob(".*tmp")) == []
    code, stdout, err = run_cli(["build-tree", "-c", "imagenette", "-o", str(tmp_path)], capsys)
    assert_user_error(code, stdout, err, "is a folder")


def attrs_tree() -> Tree:
    return Tree(
        [
            TreeNode("a", "alpha", "g", {"placed_by": "llm"}),
            TreeNode("b", "beta", "g"),
            TreeNode("c", "gamma [x]", "h", {"ambiguous": True}),
        ],
        [TreeNode("g", "group g", None), TreeNode("h", "group h", None)],
        {"source": "test"},
    )


def test_tree_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["tree", "show", "imagewoof-wordnet-L3"], capsys)
    assert code == 0, err
    assert "hunting dog" in out and "Shih-Tzu" in out and "2 / 5 / 10" in out
    assert "largest group" in out and "singleton groups" in out
    code, out, _ = run_cli(["tree", "show", "imagenet1k-wordnet-L3", "--depth", "1"], capsys)
    assert "vertebrate" in out and "hunting dog" not in out and "10 / 107 / 1000" in out
    code, out, _ = run_cli(["tree", "show", "imagenet1k-wordnet-L3", "--json", "-d", "1"], capsys)
    data = json.loads(out)
    assert data["depth_shown"] == 1 and len(data["outline"]) == 10
    assert "children" not in data["outline"][0] and data["outline"][0]["classes"] > 0
    assert data["stats"]["nodes_per_level"] == [10, 107, 1000]
    p = tmp_path / "attrs.json"
    attrs_tree().save(p)
    code, out, _ = run_cli(["tree", "show", str(p)], capsys)
    assert "placed_by=llm" in out and "ambiguous" in out and "gamma [x]" in out
    assert "placed by" in out and "llm: 1" in out


def test_tree_show_explains_its_notation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["tree", "show", "imagenette-wordnet-L3"], capsys)
    assert code == 0, err
    text = " ".join(out.split())  # the legend wraps at the console width
    assert "vertebrate n01471682 (2 classes)" in text and "tench n01440764@2 (1 class)" in text
    assert "tench n01440764 #0" in text
    assert "legend: after each name its id (--classes and --highlight take it)" in text
    assert "#i: a class's output (logit) index" in text
    assert "<class id>@k: a group holding only that class, at level k" in text
    assert "instrumentality (7 children)" in text and "(1 children)" not in text
    table = tmp_path / "t.csv"
    table.write_text(
        "class,parent,grandparent\ntench,fish,animal\nEnglish springer,dog,animal\n"
        "church,building,artifact\n",
        encoding="utf-8",
    )
    classes = tmp_path / "three.txt"
    classes.write_text("tench\nEnglish springer\nchurch\n", encoding="utf-8")
    tree = tmp_path / "t.json"
    code, _, err = run_cli(
        ["build-tree", "-s", "superclass", "--table", table, "-c", classes, "-o", tree], capsys
    )
    assert code == 0, err
    code, out, err = run_cli(["tree", "show", tree], capsys)
    text = " ".join(out.split())
    assert "animal (2 classes)" in text and "fish (1 class)" in text  # the id is the name
    assert "animal animal" not in text and "fish fish" not in text
    assert "an id equal to its name is not repeated" in text and "@" not in text
    code, out, _ = run_cli(["tree", "show", "imagenet1k-wordnet-L3", "--depth", "1"], capsys)
    text = " ".join(out.split())
    assert "…: more below (raise --depth)" in text and "#i" not in text  # no class shown


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot on new pyparsing
def test_export_graph_formats_read_back_with_networkx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = resolve_tree("imagenette-wordnet-L3")
    ref = tree.to_networkx()
    for fmt in ("graphml", "dot", "json"):
        out = tmp_path / f"t.{fmt}"
        code, _, err = run_cli(
            ["tree", "export", "imagenette-wordnet-L3", "--format", fmt, "-o", str(out)], capsys
        )
        assert code == 0, err
        if fmt == "graphml":
            g = nx.read_graphml(out)
        elif fmt == "json":
            g = nx.node_link_graph(json.loads(out.read_text()), edges="links")
        else:
            pytest.importorskip("pydot")
            g = nx.nx_pydot.read_dot(out)
        assert set(g.nodes) == set(ref.nodes)
        assert {(str(u), str(v)) for u, v, *_ in g.edges} == set(ref.edges)
        if fmt == "graphml":
            assert g.nodes["n01440764"]["name"] == "tench" and g.nodes["n01440764"]["index"] == 0
    g = nx.read_graphml(tmp_path / "t.graphml")
    assert json.loads(g.graph["provenance"])["source"] == "wordnet"


def test_export_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    assert (
        run_cli(["tree", "export", "imagenette-wordnet-L3", "-f", "png", "-o", str(png)], capsys)[0]
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_cli(["tree", "export", "imagenet100-wordnet-L2", "-o", str(svg)], capsys)[0] == 0
    assert b"<svg" in svg.read_bytes()[:2000]
    code, out, err = run_cli(
        ["tree", "export", "imagenette-wordnet-L3", "-f", "gif", "-o", str(tmp_path / "t.gif")],
        capsys,
    )
    assert_user_error(code, out, err, "unknown format 'gif'")
    code, out, err = run_cli(
        ["tree", "export", "imagenette-wordnet-L3", "-o", str(tmp_path / "t.bin")], capsys
    )
    assert_user_error(code, out, err, "cannot tell the export format")
    assert not (tmp_path / "t.gif").exists() and not (tmp_path / "t.bin").exists()


def test_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["tree", "validate", "imagenet100-wordnet-L3", "--levels", "3"], capsys)
    assert code == 0 and "valid" in out and "100 classes" in out
    code, out, err = run_cli(
        ["tree", "validate", "imagenet100-wordnet-L3", "--levels", "2"], capsys
    )
    assert_user_error(code, out, err, "has 3 levels but 2 are required")
    broken = tmp_path / "broken.json"
    d = attrs_tree().to_dict()
    d["classes"][0]["parent"] = "nowhere"
    broken.write_text(json.dumps(d), encoding="utf-8")
    code, out, err = run_cli(["tree", "validate", str(broken)], capsys)
    assert_user_error(code, out, err, "'a' has a parent 'nowhere' that is not in the tree")
    code, out, err = run_cli(["tree", "show", str(tmp_path / "absent.json")], capsys)
    assert_user_error(code, out, err, "tree file not found")
    code, out, _ = run_cli(["tree", "validate", "imagenette-wordnet-L2", "--json"], capsys)
    assert json.loads(out) == {
        "tree": "imagenette-wordnet-L2",
        "valid": True,
        "classes": 10,
        "levels": 2,
        "nodes_per_level": [3, 10],
    }


@pytest.mark.parametrize(
    "command", [["build-tree"], ["tree", "show"], ["tree", "export"], ["tree", "validate"]]
)
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0 and "Examples" in out and "$ nhl " in out
