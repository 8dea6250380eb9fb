"""The application shell: --version, --help examples, checks, fast start-up (the demo:
test_demo.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nhlcli import __version__
from nhlcli.cli.app import app, main

runner = CliRunner()
COMMANDS = [
    ["checks"], ["demo"], ["classes", "list"], ["classes", "show"], ["build-tree"],
    ["tree", "show"], ["tree", "export"], ["tree", "validate"], ["archs"], ["profile"],
    ["init"], ["cutout"], ["train"], ["eval"], ["export"], ["predict"],
]  # fmt: skip


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"nhl {__version__}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_help_shows_an_example(cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and f"$ nhl {cmd[0]}" in result.output


def test_checks_json_reports_torch_and_wordnet() -> None:
    result = runner.invoke(app, ["checks", "--json"])
    assert result.exit_code == 0
    rows = {r["item"]: r for r in json.loads(result.output)}
    assert rows["torch"]["ok"]
    assert "GPU" in rows["torch"]["detail"] or "CUDA" in rows["torch"]["detail"]
    assert rows["WordNet (nltk)"]["ok"]  # tests point NLTK_DATA at the shared WordNet


def test_checks_says_how_to_get_missing_wordnet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLTK_DATA", "/nonexistent")
    monkeypatch.setattr("nltk.data.path", ["/nonexistent"])
    result = runner.invoke(app, ["checks", "--json"])
    rows = {r["item"]: r for r in json.loads(result.output)}
    assert not rows["WordNet (nltk)"]["ok"]
    assert "python -m nltk.downloader wordnet" in rows["WordNet (nltk)"]["detail"]


def test_user_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["classes", "show", "no-such-set"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err


def test_cli_start_does_not_import_torch() -> None:
    code = "import sys, nhlcli.cli.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
