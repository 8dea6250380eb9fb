"""`nhl ... --help` and wide tables at 80 columns (COLUMNS=80, and piped, which rich treats as 80
columns): no option name or value cut to `…`, descriptions in a column wide enough to read."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from cli_helpers import run_cli
from rich.console import Console
from rich.table import Table

from nhlcli.cli import common
from nhlcli.cli.app import command

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # CI forces colour into typer's help (GITHUB_ACTIONS)
NARROWEST_DESCRIPTION = 30  # characters of the description column at 80 columns


def _command_paths() -> list[str]:
    out, todo = [], [("", command())]
    while todo:
        path, cmd = todo.pop()
        if path:
            out.append(path)
        todo.extend((f"{path} {n}".strip(), c) for n, c in getattr(cmd, "commands", {}).items())
    return sorted(out)


def _layout_problems(text: str) -> list[str]:
    """Cut names or values, and option rows whose description starts too far right."""
    problems = [f"cut: {line.strip()}" for line in text.splitlines() if "…" in line]
    for line in text.splitlines():
        if len(line) > 80:
            problems.append(f"wider than 80: {line}")
        row = re.match(r"│ (\*? *)(-[-\w]+|[A-Z]+)", line)
        if row is None:
            continue
        cells = list(re.finditer(r"(?<=\s\s)\S", line[: line.rindex("│")]))
        start = cells[-1].start() if cells else 0
        if 79 - start < NARROWEST_DESCRIPTION:
            problems.append(f"description {79 - start} wide: {line}")
    return problems


@pytest.mark.parametrize("columns", ["80", None])
def test_every_help_fits_80_columns(
    columns: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)  # piped: rich assumes 80
    else:
        monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    problems = {}
    for path in _command_paths():
        code, out, err = run_cli([*path.split(), "--help"], capsys)
        assert code == 0, err
        text = ANSI.sub("", out)
        assert "Usage: nhl" in text
        assert "{" not in text.split("\n", 3)[1], text  # `nhl eval [OPTIONS] MODEL`
        if found := _layout_problems(text):
            problems[path] = found
    assert not problems, problems


def test_train_help_piped_in_a_real_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    done = subprocess.run(
        [sys.executable, "-m", "nhlcli", "train", "--help"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = ANSI.sub("", done.stdout)
    assert not _layout_problems(text), _layout_problems(text)
    assert "--max-val-batches" in text and "--zero-init-residual" in text
    assert "(--no-zero-init-residual: off)" in text  # the switch's other half, in its description
    # one spelling per option: a hidden old spelling is not shown but still works
    assert "--max-batches" not in text


def test_hidden_spellings_still_parse(capsys: pytest.CaptureFixture[str]) -> None:
    # `--batch` (old) and `-b` reach export's --batch-size and its range check
    for spelling in ("--batch", "-b", "--batch-size"):
        code, _, err = run_cli(["export", "no-such-model", "-f", "onnx", spelling, "0"], capsys)
        assert code == 2 and "Invalid value for '--batch" in err, (spelling, err)
    # a switch's negative half, hidden from the option column, still switches it off
    for given, value in (([], "true"), (["--no-zero-init-residual"], "false")):
        code, out, err = run_cli(["train", "--print-config", *given], capsys)
        assert code == 0 and f"zero_init_residual: {value}" in out, err


def _wide_table() -> Table:
    cols = ["level", "nodes", "single", "balance", "wordnet", "inside", "chance", "gain",
            "silhouette", "group top-1 (sum)"]  # fmt: skip
    table = Table(*cols, title="mine.json (10 classes)", caption="what the columns mean")
    table.add_row("1", "2", "0", "0.722", "-", "0.512", "0.444", "-0.213", "0.031", "55.00%")
    table.add_row("2", "4", "3", "0.678", "-", "0.312", "0.144", "0.113", "-0.031", "35.00%")
    return table


def _printed(width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    out = Console(file=io.StringIO(), width=width, highlight=False)
    monkeypatch.setattr(common, "console", out)
    common.print_table(_wide_table())
    file: Any = out.file
    return str(file.getvalue())


def test_a_wide_table_falls_back_to_records_when_narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = _printed(80, monkeypatch)
    assert "…" not in narrow and "┃" not in narrow, narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80
    for value in ("-0.213", "-0.031", "55.00%", "35.00%", "group top-1 (sum)", "silhouette"):
        assert value in narrow, value
    assert narrow.splitlines()[:2] == ["mine.json (10 classes)", "level: 1"]
    assert "what the columns mean" in narrow
    wide = _printed(140, monkeypatch)  # room enough: the table itself
    assert "┃ level ┃" in wide and "level: 1" not in wide and "-0.213" in wide
