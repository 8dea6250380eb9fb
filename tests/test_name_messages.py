"""Messages that lead to the fix: one did-you-mean for every class name, definitions that tell
classes of the same name apart, a file given for --data, class folders missing in an evaluation.

Real WordNet data (NLTK_DATA from conftest.py), real CLI runs, real images."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, small_tree

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import imagenet, load_classes, parse_class_lines, resolve_token
from nhlcli.hierarchy.names import sense_label, suggest
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.selection import select_classes
from nhlcli.training.inputs import train_val_dirs

SUGGESTION = re.compile(r"did you mean [^?]*\?")


def one_line(args: list[object], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def error_of(call: Callable[[], object]) -> str:
    with pytest.raises(NhlError) as e:
        call()
    return str(e.value)


def test_a_class_list_on_the_command_line_gets_a_did_you_mean(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = one_line(["cutout", model_dir, "-c", "tench,chruch"], capsys)
    assert "'chruch' is not a class or node" in listed
    assert "did you mean 'church'?" in listed
    # the same tokens in a class file: the same suggestion, from the same function
    class_file = tmp_path / "mine.txt"
    class_file.write_text("tench\nchruch\n", encoding="utf-8")
    from_file = one_line(["cutout", model_dir, "-c", class_file], capsys)
    assert "line 2: 'chruch'" in from_file
    assert SUGGESTION.findall(from_file) == SUGGESTION.findall(listed) == ["did you mean 'church'?"]


def test_a_class_list_without_a_tree_is_read_like_a_class_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # profile and init without --tree take the model's classes from -c
    listed = one_line(["profile", "-a", "phl-small", "-c", "tench,chruch"], capsys)
    assert "item 2: 'chruch' is not an ImageNet class name" in listed
    class_file = tmp_path / "mine.txt"
    class_file.write_text("tench\nchruch\n", encoding="utf-8")
    from_file = one_line(["profile", "-a", "phl-small", "-c", class_file], capsys)
    assert "line 2: 'chruch'" in from_file
    assert SUGGESTION.findall(from_file) == SUGGESTION.findall(listed)
    assert SUGGESTION.findall(listed)[0].startswith("did you mean 'church'")
    chosen = load_classes("tench, English springer ,church")
    assert chosen.wnids == ["n01440764", "n02102040", "n03028079"]


def test_class_files_and_class_lists_suggest_the_same_names() -> None:
    tree = small_tree()
    for typo in ("chruch", "springer", "gas pmp", "vehicel"):
        listed = error_of(lambda t=typo: select_classes(tree, f"tench,{t}"))
        in_file = error_of(lambda t=typo: select_classes(tree, ["tench", t]))
        assert SUGGESTION.findall(listed) == SUGGESTION.findall(in_file), typo
        assert SUGGESTION.findall(listed), typo  # each typo has a suggestion
    # --attend names go through the same resolver
    assert "did you mean 'tench'?" in error_of(lambda: select_classes(tree, ["tnch"]))


def test_springer_suggests_english_springer_first() -> None:
    for_file = error_of(lambda: parse_class_lines(["springer"]))
    assert "did you mean 'English springer', 'Welsh springer spaniel'" in for_file
    assert "did you mean 'English springer'?" in error_of(
        lambda: select_classes(small_tree(), "springer")
    )
    cat = imagenet().candidates
    # whole words and parts of names and WordNet synonyms come before close spellings
    assert suggest("retriev", cat)[0].endswith("retriever")
    assert suggest("Tinca", cat)[0] == "tench"  # synonym "Tinca tinca"
    assert suggest("tank suit", cat)[0] == "maillot"  # a synonym of one of two "maillot"s
    assert suggest("chruch", cat)[0] == "church"  # a close spelling when nothing else matches
    assert suggest("zzqx", cat) == []


def test_a_wordnet_group_is_suggested_by_its_synonyms() -> None:
    from nhlcli.hierarchy.shipped_trees import resolve_tree

    tree = resolve_tree("imagenet1k-wordnet-L3")
    msg = error_of(lambda: select_classes(tree, "Canis familiaris,tabby"))
    assert "did you mean 'dog'" in msg  # the group n02084071's WordNet synonym


def test_an_ambiguous_name_shows_each_definition(capsys: pytest.CaptureFixture[str]) -> None:
    msg = error_of(lambda: parse_class_lines(["crane"]))
    bird, machine = re.findall(r"n0\d{7} \(crane: ([^)]*)\)", msg)
    assert "bird" in bird and "heavy objects" in machine, msg
    # one line at 300 characters a problem: definitions are cut short
    assert "\n" not in msg and len(msg) < 300
    # the same in a model's tree with two classes of one name
    tree = Tree(
        [TreeNode("n02012849", "crane", None), TreeNode("n03126707", "crane", None)], [], {}
    )
    in_tree = error_of(lambda: select_classes(tree, "crane"))
    assert "ambiguous in this tree" in in_tree and "bird" in in_tree and "lifts" in in_tree
    # a class outside WordNet: its id and name
    assert sense_label("my-crane", "crane") == "my-crane (crane)"
    # a message nobody reads (folder matching) looks nothing up
    quiet = error_of(lambda: resolve_token("crane", suggest=False))
    assert "n02012849 (crane), n03126707 (crane)" in quiet


def test_a_file_given_for_data_is_named_a_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "six-classes.txt"
    listing.write_text("tench\nchurch\n", encoding="utf-8")
    msg = one_line(["eval", model_dir, "--data", listing, "--workers", "0"], capsys)
    assert "six-classes.txt is a file, not a folder" in msg and "not found" not in msg
    assert "pass it with --classes" in msg  # it looks like a class list
    # training has no --classes: the message says what --data wants
    train_msg = error_of(lambda: train_val_dirs(listing))
    assert "is a file, not a folder" in train_msg and "--classes" not in train_msg
    assert "data folder not found" in error_of(lambda: train_val_dirs(tmp_path / "absent"))


def test_missing_class_folders_name_the_classes_option(
    model_dir: Path, imagenette_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    six = [cid for cid, _ in IMAGENETTE[:6]]
    data = copy_sample(imagenette_dir, tmp_path / "six", 0, 1, class_ids=six)
    msg = one_line(["eval", model_dir, "--data", data, "--workers", "0"], capsys)
    assert "4 class(es) without images" in msg
    # the message spells out the option and its value; running it works
    value = msg.split("pass --classes ", 1)[1].rsplit(")", 1)[0]
    (selection,) = shlex.split(value)
    assert selection.split(",")[:2] == ["tench", "English springer"]
    code, out, err = run_cli(
        ["eval", model_dir, "--data", data, "--classes", selection, "--workers", "0", "--json"],
        capsys,
    )
    assert code == 0, err
    assert len(json.loads(out)["per_class"]) == 6
