"""One name per idea: every option spelling means the same thing in every `nhl` command."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import typer

from nhlcli.cli.app import command, main
from nhlcli.cli.vocabulary import PLACEHOLDERS, SHORT_FLAGS, spelling_of

# Old spellings kept for one version (README "Options: one vocabulary"): alias -> the option it is.
DEPRECATED = {
    "--model": "--llm-model",
    "--base-url": "--llm-base-url",
    "--api-key-env": "--llm-api-key-env",
    "--timeout": "--llm-timeout",
    "--max-repairs": "--llm-max-repairs",
    "--cache-dir": "--llm-cache-dir",
    "--no-cache": "--llm-no-cache",
    "--refresh": "--llm-refresh",
    "--batch": "--batch-size",
    "--max-batches": "--max-val-batches",
}
# build-tree's old `--batch-size` (classes per LLM request) shadows a name; `--model` is a trained
# model where it is the canonical option (build-tree --source induced, tree compare), and the old
# spelling of `--llm-model` elsewhere (build-tree still reads it so with --source llm|hybrid).
SHADOWING = {
    ("build-tree", "--batch-size"): "--llm-batch-size",
    ("build-tree", "--model"): "--model",
    ("tree compare", "--model"): "--model",
}


def _commands() -> list[tuple[str, Any]]:
    out, todo = [], [("", command())]
    while todo:
        path, cmd = todo.pop()
        subs = getattr(cmd, "commands", {})
        if subs:
            todo.extend((f"{path} {n}".strip(), c) for n, c in subs.items())
        else:
            out.append((path, cmd))
    return sorted(out, key=lambda x: x[0])


def _options(cmd: Any) -> list[tuple[str, list[str]]]:
    """(canonical long name, all spellings) of each option of a command."""
    out = []
    for p in cmd.params:
        names = [*p.opts, *getattr(p, "secondary_opts", [])]
        if not any(n.startswith("-") for n in names):
            continue  # an argument
        long = [n for n in p.opts if n.startswith("--")]
        out.append((spelling_of(p) or (long[0] if long else p.opts[0]), names))
    return out


def test_every_spelling_means_one_option_everywhere() -> None:
    meaning: dict[str, set[str]] = defaultdict(set)
    where: dict[str, set[str]] = defaultdict(set)
    for path, cmd in _commands():
        for canonical, names in _options(cmd):
            for name in names:
                if (path, name) in SHADOWING:
                    assert canonical == SHADOWING[(path, name)]
                    continue
                if name in DEPRECATED:
                    assert canonical == DEPRECATED[name], f"{path}: {name} is not {canonical}"
                    continue
                if name.startswith("--no-") and name[5:] and canonical != name:
                    continue  # the negative half of a --x/--no-x switch
                meaning[name].add(canonical)
                where[name].add(path)
    clashes = {n: sorted(m) for n, m in meaning.items() if len(m) > 1}
    assert not clashes, f"one spelling, several options: {clashes}"


def test_the_shared_vocabulary() -> None:
    spelled = {}
    for _path, cmd in _commands():
        for canonical, names in _options(cmd):
            for name in names:
                spelled.setdefault(name, canonical)
    # the README's table, checked against the commands
    assert spelled["-c"] == "--classes"
    assert spelled["-t"] == "--tree"
    assert spelled["-o"] == "--output"
    assert "--config" in spelled and spelled.get("-c") != "--config"
    for old, new in DEPRECATED.items():
        assert old in spelled, f"{old} was removed: drop it from DEPRECATED and the README"
        assert new in spelled
    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text(encoding="utf-8")
    table = readme.split("### Options: one vocabulary", 1)[1].split("\n## ", 1)[0]
    for short in SHORT_FLAGS:
        assert re.search(rf"`{short}`", table), short
    deprecated = table.split("#### Deprecated spellings", 1)[1]
    for old, new in DEPRECATED.items():
        assert f"| `{old}` | `{new}` |" in deprecated, f"README does not list {old}"


def test_flags_show_no_value_placeholder() -> None:
    for _path, cmd in _commands():
        for p in cmd.params:
            if getattr(p, "is_flag", False):
                assert p.metavar == "", (cmd.name, p.name)


def test_the_model_argument_has_one_name() -> None:
    takes_model = {"cutout", "eval", "export", "predict", "profile"}
    for path, cmd in _commands():
        if path in takes_model:
            first = next(p for p in cmd.params if not p.opts[0].startswith("-"))
            assert first.metavar == "MODEL", path


# Defaults that are the same in every command having the option (train's options default to None:
# its settings' declared defaults apply).
SHARED_DEFAULTS = {"--device": "auto", "--name": "exp", "--seed": 0, "--runs": 20, "--warmup": 3}


def _default(p: Any) -> str:
    """The default as help shows it (an option generated from a setting defaults to None, the
    setting's declared default applying: its help says `[default: ...]`)."""
    if p.default is not None:
        return str(p.default)
    shown = re.search(r"\[default: ([^\]]+)\]", p.help or "")
    return shown.group(1) if shown else "None"


def test_short_flags_and_shared_defaults() -> None:
    for path, cmd in _commands():
        for p in cmd.params:
            if spelling_of(p) or not p.opts[0].startswith("-"):
                continue  # a hidden old spelling, an argument
            long = next(o for o in p.opts if o.startswith("--"))
            for short, option in SHORT_FLAGS.items():
                if long == option:
                    assert short in p.opts, f"{path} {long} lacks {short}"
                if short in p.opts:
                    assert long == option, f"{path}: {short} is {long}, not {option}"
            if long in SHARED_DEFAULTS:
                assert _default(p) == str(SHARED_DEFAULTS[long]), (path, long)
            if long == "--device":
                assert "auto" in (p.help or ""), path


def test_placeholders_are_uniform() -> None:
    for path, cmd in _commands():
        for p in cmd.params:
            if not p.opts[0].startswith("-"):  # an argument: upper case, no typer braces
                assert p.metavar and p.metavar == p.metavar.upper(), (path, p.name)
                usage = " ".join(cmd.collect_usage_pieces(typer.Context(cmd)))
                assert "{" not in usage and p.metavar in usage, (path, usage)
                continue
            if getattr(p, "is_flag", False) or spelling_of(p):
                continue
            long = next(o for o in p.opts if o.startswith("--"))
            assert p.metavar and re.fullmatch(r"[A-Z]+", p.metavar), (path, long, p.metavar)
            if long in PLACEHOLDERS and (path, long) not in SHADOWING:
                assert p.metavar == PLACEHOLDERS[long], (path, long)


def test_a_former_short_flag_points_to_its_option(capsys: pytest.CaptureFixture[str]) -> None:
    for args, hint in (
        (["train", "-c", "train.yaml"], "use --config (-c is --classes elsewhere)"),
        (["build-tree", "-t", "t.csv", "-o", "t.json"], "use --table (-t is --tree elsewhere)"),
    ):
        with pytest.raises(SystemExit) as stop:
            main(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"No such option: {args[1]}; {hint}" in err, err
