"""A tree source is one module: a source registered in this test file only (its own option
`--fanout`) is built by the real `nhl build-tree`, its option generated from its options dataclass
and listed in `--help`; the shared options (--classes, --levels) it takes without declaring them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import run_cli

import nhlcli as nhl
from nhlcli.hierarchy.classsets import ClassSet
from nhlcli.hierarchy.levelling import ClassPath, exact_tree, provenance
from nhlcli.hierarchy.sources import SOURCES, SourceContext, TreeSource, register, sources
from nhlcli.hierarchy.tree import Tree
from nhlcli.setting_fields import setting

NAME = "chunks"


@dataclass
class ChunkOptions:
    fanout: int = setting(2, "Classes per group, in class order.")
    prefix: str | None = setting(None, "Group names start with this.", flag="--chunk-prefix")


def build_chunks(
    classes: ClassSet, levels: int | None, groups: list[int] | None, opts: ChunkOptions,
    ctx: SourceContext,
) -> Tree:  # fmt: skip
    """Consecutive classes in groups of `fanout`: a 2-level tree."""
    prefix = opts.prefix or "chunk"
    paths = [
        ClassPath(c.wnid, c.name, ((f"g{i // opts.fanout}", f"{prefix} {i // opts.fanout}"),))
        for i, c in enumerate(classes.classes)
    ]
    prov = provenance(NAME, {"fanout": opts.fanout, "levels": levels}, date=ctx.date)
    return exact_tree(paths, levels, prov)


@pytest.fixture
def chunks() -> Iterator[None]:
    register(TreeSource(NAME, "consecutive classes in groups", ChunkOptions, build_chunks))
    yield
    SOURCES.pop(NAME)


def assert_user_error(code: int, out: str, err: str, needle: str) -> None:
    assert code == 2 and "Traceback" not in err + out, err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def group_sizes(tree: Tree) -> list[int]:
    return [len(tree.leaves_under(n)) for n in tree.level(1)]


def test_a_source_registered_here_runs_through_the_cli(
    chunks: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.json"
    args = ["build-tree", "--source", NAME, "-c", "imagenette", "--no-date", "-o", out]
    code, _, err = run_cli([*args, "--fanout", "3", "--chunk-prefix", "part", "--json"], capsys)
    assert code == 0, err
    tree = Tree.load(out)
    assert tree.levels == 2 and group_sizes(tree) == [3, 3, 3, 1]
    assert [n.name for n in tree.nodes] == ["part 0", "part 1", "part 2", "part 3"]
    assert tree.provenance["source"] == NAME and tree.provenance["params"]["fanout"] == 3
    # not given: the declared default; a shared option (--levels) reaches the build
    code, _, err = run_cli([*args, "--levels", "2"], capsys)
    assert code == 0, err
    tree = Tree.load(out)
    assert group_sizes(tree) == [2] * 5 and tree.provenance["params"]["levels"] == 2
    assert tree.nodes[0].name == "chunk 0"
    # the same source through the library, by field name
    assert group_sizes(nhl.build_tree(NAME, "imagenette", fanout=5)) == [5, 5]


def test_its_option_is_in_the_help_and_refused_for_other_sources(
    chunks: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["build-tree", "--help"], capsys)
    assert code == 0
    assert f"--source {NAME}" in out  # its help panel
    assert "--fanout" in out and "Classes per group, in class order. [default: 2]" in out
    assert "--chunk-prefix" in out and NAME in out.split("Where the groups come", 1)[1][:200]
    code, stdout, err = run_cli(
        ["build-tree", "-c", "imagenette", "--fanout", "3", "-o", tmp_path / "t.json"], capsys
    )
    assert_user_error(code, stdout, err, f"--fanout apply to --source {NAME}, not wordnet")
    code, stdout, err = run_cli(
        ["build-tree", "-s", NAME, "-c", "imagenette", "--table", "x", "-o", tmp_path / "t.json"],
        capsys,
    )
    assert_user_error(code, stdout, err, f"--table apply to --source superclass, not {NAME}")
    assert not (tmp_path / "t.json").exists()


def test_without_the_registration_the_option_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert NAME not in sources()
    code, _, err = run_cli(["build-tree", "-s", NAME, "-c", "imagenette", "-o", "-"], capsys)
    assert code == 2 and f"unknown source '{NAME}'" in err
    code, _, err = run_cli(["build-tree", "-c", "imagenette", "--fanout", "3", "-o", "-"], capsys)
    assert code == 2 and "No such option: --fanout" in err


def test_every_option_of_every_source_is_generated_from_its_dataclass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nhlcli.cli.build_tree_cmd import source_options

    options = source_options()
    flags = {o.flag: set(o.fields) for o in options.values()}
    assert flags["--table"] == {"superclass"} and flags["--linkage"] == {"induced"}
    assert flags["--llm-batch-size"] == {"llm", "hybrid"}
    assert flags["--llm-timeout"] == {"llm", "hybrid", "induced"}  # InducedOptions.llm: nested
    assert options["llm_timeout"].fields["induced"] == ("llm", "timeout")
    assert flags["--model"] == {"induced"}  # ClassEvidence: read from a trained model
    code, out, _ = run_cli(["build-tree", "--help"], capsys)
    assert code == 0
    for flag in flags:
        assert flag in out, flag


def test_help_is_clear_at_80_columns_piped() -> None:
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "nhlcli", "build-tree", "--help"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for panel in ("--source superclass", "--source induced", "--source hybrid, induced, llm"):
        assert any(panel in line for line in lines), panel
    assert "[default: gpt-4o]" in done.stdout and done.stderr == ""


def test_json_result_of_a_registered_source(
    chunks: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.json"
    code, stdout, _ = run_cli(
        ["build-tree", "-s", NAME, "-c", "imagewoof", "--fanout", "4", "-o", out, "--json"], capsys
    )
    assert code == 0
    result = json.loads(stdout)
    assert result["provenance"]["source"] == NAME and "llm" not in result


def test_old_spelling_owned_by_another_option_keeps_its_meaning() -> None:
    """`--model` is induced's trained model; for llm and hybrid it is still the old --llm-model."""
    from nhlcli.cli.build_tree_cmd import source_values
    from nhlcli.hierarchy.sources import get_source

    _, values = source_values(get_source("llm"), {"model": Path("llama3.1")}, "imagenette")
    assert values == {"model": "llama3.1"}
    _, values = source_values(
        get_source("hybrid"), {"llm_model": "given", "model": Path("old")}, "imagenette"
    )
    assert values == {"model": "given"}  # the new spelling wins
    _, values = source_values(
        get_source("llm"), {"llm_no_cache": True, "llm_timeout": 5.0}, "imagenette"
    )
    assert values == {"use_cache": False, "timeout": 5.0}  # a plain flag switches the default
