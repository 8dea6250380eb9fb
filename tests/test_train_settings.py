"""Training settings are declared once: options, checks and the docs table derive from it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nhlcli.cli.app import command
from nhlcli.errors import NhlError
from nhlcli.training.config import SETTINGS, TrainConfig, build_config, settings_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def test_docs_table_is_the_generated_one() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("<!-- settings table: generated")[1].split("-->", 1)[1]
    table = table.split("<!-- end of settings table -->")[0].strip()
    assert table == settings_table()


def test_every_setting_is_a_train_option_and_a_field() -> None:
    train = command().commands["train"]
    options = {p.name: p for p in train.params}
    for spec in SETTINGS:
        assert spec.name in options, spec.name
        long_flag = next(f for f in spec.flag.split("/") if f.startswith("--"))
        assert long_flag in options[spec.name].opts
    # every field is a setting, but `explicit`: which settings were given (for recipe auto)
    assert [s.name for s in SETTINGS] + ["explicit"] == list(TrainConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", math.nan, "finite"),
        ("lr", math.inf, "finite"),
        ("lr", 1e30, "must be"),
        ("lr", 0.0, "must be"),
        ("warmup_epochs", math.nan, "finite"),
        ("momentum", 1.0, "must be"),
        ("epochs", 0, "must be"),
        ("optimizer", "adam", "not one of"),
        ("batch_size", 2.5, "integer"),
        ("deterministic", "yes", "true or false"),
    ],
)
def test_declared_ranges_are_enforced(key: str, value: object, message: str) -> None:
    with pytest.raises(NhlError) as e:
        build_config({"arch": "n3hl", "data": "d", key: value})
    assert any(message in p for p in e.value.problems), e.value.problems
