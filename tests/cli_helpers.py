"""Run the real `nhl` entry point in-process and capture exit code, stdout and stderr."""

from __future__ import annotations

import io
import sys

import pytest

from nhlcli.cli.app import main


def run_cli(
    args: list[object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch | None = None,
    stdin: str = "",
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `nhl ARGS`; stdin is replaced when a monkeypatch is given."""
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
