"""Pictures of trees with an expert's paths highlighted: layout, PNG/SVG/HTML files, the CLI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_helpers import run_cli
from PIL import Image

from nhlcli.errors import NhlError
from nhlcli.hierarchy.drawing import MAX_ROWS, draw_tree, layout_tree, render_tree
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree

CATS = ["n02123045", "n02123159", "n02123394", "n02123597", "n02124075"]


@pytest.fixture(scope="module")
def tree1k() -> Tree:
    return resolve_tree("imagenet1k-wordnet-L3")


def rows_of(layout):
    return [n for n in layout.nodes if n.kind in ("class", "collapsed")]


def test_a_small_tree_is_drawn_whole_with_red_paths() -> None:
    tree = resolve_tree("imagenet100-wordnet-L3")
    chosen = tree.class_ids[:20]  # the paper's Fig. 4: 20 of 100 classes
    layout = layout_tree(tree, chosen)
    rows = rows_of(layout)
    assert not layout.summarised and layout.rows == 100
    assert {n.key for n in rows} == set(tree.class_ids)
    assert {n.key for n in rows if n.highlighted} == set(chosen)
    on_paths = {a for c in chosen for a in tree.path(c)}
    groups = [n for n in layout.nodes if n.kind == "group"]
    assert {n.key for n in groups if n.highlighted} == on_paths - set(chosen)


@pytest.mark.parametrize("count", [0, 5, 500])
def test_a_large_tree_is_summarised_but_accounts_for_every_class(tree1k: Tree, count: int) -> None:
    chosen = CATS if count == 5 else tree1k.class_ids[::2][:count]
    layout = layout_tree(tree1k, chosen)
    rows = rows_of(layout)
    assert layout.summarised and layout.rows <= MAX_ROWS
    assert sum(n.classes for n in rows) == 1000  # every class drawn or counted exactly once
    assert sum(n.selected for n in rows) == len(chosen)
    if count == 5:
        assert [n.key for n in rows if n.kind == "class"] == CATS  # the cats drawn one by one
        assert layout.cut_depth is None
    if count == 500:
        assert layout.cut_depth is not None


def test_png_svg_html_files(tmp_path: Path) -> None:
    tree = resolve_tree("imagenette-wordnet-L3")
    chosen = tree.class_ids[:3]
    png = draw_tree(tree, tmp_path / "t.png", chosen)
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 100
    svg = draw_tree(tree, tmp_path / "t.svg", chosen)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text(encoding="utf-8")
    for c in chosen:
        assert tree.node(c).name in text
    page = draw_tree(tree, tmp_path / "t.html", chosen).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and page.count("<li>") == 3
    assert render_tree(tree, "svg", chosen) == render_tree(tree, "svg", chosen)  # reproducible
    with pytest.raises(NhlError, match="not in the tree"):
        layout_tree(tree, ["n02123045"])


def test_tree_show_highlight_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cats = tmp_path / "cats.txt"
    cats.write_text("tabby\ntiger cat\n# comment\nPersian cat\n", encoding="utf-8")
    out = tmp_path / "cutout.png"
    code, stdout, _ = run_cli(
        ["tree", "show", "imagenet1k-wordnet-L3", "--highlight", str(cats), "-o", str(out)], capsys
    )
    assert code == 0 and out.stat().st_size > 1000
    assert "3 highlighted" in stdout
    bad = tmp_path / "bad.txt"
    bad.write_text("tabby\nnot a class at all\n", encoding="utf-8")
    for args in (
        [
            "tree",
            "show",
            "imagenet1k-wordnet-L3",
            "--highlight",
            str(bad),
            "-o",
            str(tmp_path / "b.png"),
        ],
        [
            "tree",
            "show",
            "imagenet1k-wordnet-L3",
            "--highlight",
            str(cats),
            "-o",
            str(tmp_path / "b.gif"),
        ],
        [
            "tree",
            "show",
            "imagenette-wordnet-L3",
            "--highlight",
            "tabby",
            "-o",
            str(tmp_path / "b.svg"),
        ],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "cats.txt", "cutout.png"]
