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


def small_trees() -> list[tuple[str, Tree, list[str]]]:
    nette = resolve_tree("imagenette-wordnet-L3")
    expert = nette.subtree(nette.class_ids[:2])  # the tree of a 2-class cutout
    return [
        ("nette-L3", nette, []),
        ("nette-L1 expert", resolve_tree("imagenette-wordnet-L1"), nette.class_ids[:2]),
        ("2-class cutout", expert, []),
        ("2-class cutout expert", expert, expert.class_ids[:1]),
        ("1k cats", resolve_tree("imagenet1k-wordnet-L3"), CATS[:2]),
    ]


@pytest.mark.parametrize("case", range(5))
def test_the_title_is_inside_the_svg_canvas(case: int) -> None:
    _, tree, chosen = small_trees()[case]
    root = ET.fromstring(render_tree(tree, "svg", chosen))
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    texts = [t for t in root.iter() if t.tag.endswith("text")]
    title = next(t for t in texts if (t.text or "").startswith(("expert:", f"{tree.num_classes}")))
    size = float(title.attrib["style"].split("font-size:")[1].split("px")[0])
    x, y = float(title.attrib["x"]), float(title.attrib["y"])
    assert size == 10
    assert y - size >= 0 and y <= height and 0 <= x < width  # the whole line, ascenders included
    for t in texts:  # no label starts outside the canvas either
        assert 0 <= float(t.attrib["x"]) < width and 0 < float(t.attrib["y"]) <= height


@pytest.mark.parametrize("case", range(5))
def test_nothing_is_cut_at_the_png_edges(case: int) -> None:
    import io

    import numpy as np

    _, tree, chosen = small_trees()[case]
    with Image.open(io.BytesIO(render_tree(tree, "png", chosen))) as img:
        ink = np.asarray(img.convert("L")) < 200
    assert not ink[:3].any() and not ink[-3:].any()  # top and bottom rows blank: nothing cut
    assert not ink[:, :3].any() and not ink[:, -3:].any()
    first = int(np.argmax(ink.any(axis=1)))
    assert 3 < first < 60  # the title is the first thing drawn, just below the top margin


def test_continuing_groups_are_not_labelled_twice_and_columns_name_their_level() -> None:
    tree = resolve_tree("imagenette-wordnet-L3")  # tench@2 continues tench at level 2
    svg = render_tree(tree, "svg").decode("utf-8")
    assert svg.count(">tench</text>") == 1 and svg.count(">church</text>") == 1
    assert ">vertebrate</text>" in svg and ">instrumentality</text>" in svg
    assert "10 classes; nodes per level: 2 / 4 / 10" in svg
    assert all(f">level {k}</text>" in svg for k in (1, 2, 3)) and ">level 4<" not in svg
