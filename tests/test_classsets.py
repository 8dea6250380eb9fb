"""Class sets: the built-in lists against the shared source files, and class-file resolution with
every error reported at once."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from cli_helpers import run_cli

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import builtin_set, imagenet, load_classes, parse_class_lines


@pytest.mark.parametrize(
    ("name", "source_file"),
    [
        ("imagenette", "imagenette.txt"),
        ("imagewoof", "imagewoof.txt"),
        ("imagenet100", "imagenet100_kaggle.txt"),
        ("imagenet100-cmc", "imagenet100_cmc.txt"),
    ],
)
def test_builtin_sets_equal_the_source_lists(
    name: str, source_file: str, shared_data: Path
) -> None:
    lines = (shared_data / source_file).read_text(encoding="utf-8").splitlines()
    expected = [line.split("\t")[0] for line in lines if line.strip()]
    assert builtin_set(name).wnids == expected


def test_imagenet1k_is_the_standard_index_order(shared_data: Path) -> None:
    with (shared_data / "imagenet1k_classes.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert builtin_set("imagenet1k").wnids == [r["wnid"] for r in rows]
    assert [c.index for c in imagenet().classes] == list(range(1000))


def test_every_form_of_a_class_resolves() -> None:
    lines = [
        "n01440764        # a wnid (tench)",
        "goldfish.n.01    # a synset name",
        "Great White Shark",
        "tiger_shark      # keras name",
        "Tinca tinca      # a synonym of tench",
        "",
        "# only a comment",
        "tabby cat        # synonym of tabby, case-insensitive",
        "wolf.n.01        # a noun synset outside ImageNet-1k",
        "n02115913        # dhole by wnid",
    ]
    # Tinca tinca repeats tench: drop it to check the others
    cs = parse_class_lines([ln for ln in lines if "Tinca" not in ln], origin="mine.txt")
    assert cs.wnids == [
        "n01440764",
        "n01443537",
        "n01484850",
        "n01491361",
        "n02123045",
        "n02114100",
        "n02115913",
    ]
    assert cs.classes[5].name == "wolf"
    assert cs.name == "mine"
    only_synonym = parse_class_lines(["Tinca tinca"])
    assert only_synonym.wnids == ["n01440764"]


def test_all_problems_are_reported_at_once_with_line_numbers() -> None:
    lines = [
        "tabby",  # 1
        "crane",  # 2: ambiguous
        "goldfsh",  # 3: unknown, close to goldfish
        "",  # 4
        "tabby cat",  # 5: duplicate of line 1
        "n99999999",  # 6: no such synset
        "zzqx",  # 7: unknown, nothing close
    ]
    with pytest.raises(NhlError) as e:
        parse_class_lines(lines, origin="bad.txt")
    problems = e.value.problems
    assert len(problems) == 5
    assert problems[0].startswith("line 2: 'crane' is ambiguous")
    assert "n02012849" in problems[0] and "n03126707" in problems[0]
    assert problems[1].startswith("line 3:") and "'goldfish'" in problems[1]
    assert (
        problems[2].startswith("line 5:") and "line 1" in problems[2] and "n02123045" in problems[2]
    )
    assert problems[3].startswith("line 6:") and "n99999999" in problems[3]
    assert problems[4].startswith("line 7:") and "did you mean" not in problems[4]
    assert str(e.value).startswith("bad.txt: 5 problems")


def test_class_file_errors_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("crane\nmaillot\n", encoding="utf-8")
    code, out, err = run_cli(["classes", "show", str(bad)], capsys)
    assert code == 2 and out == ""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "line 1: 'crane' is ambiguous" in err and "line 2: 'maillot' is ambiguous" in err


def test_empty_and_missing_class_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(NhlError, match="no classes"):
        load_classes(empty)
    with pytest.raises(NhlError, match="neither a built-in class set"):
        load_classes(tmp_path / "absent.txt")


def test_classes_show_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = run_cli(["classes", "show", "imagewoof", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["size"] == 10 and data["classes"][0]["wnid"] == "n02086240"
