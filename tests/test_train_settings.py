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


def test_recipe_auto_chooses_by_the_optimizer_steps_of_the_run() -> None:
    from nhlcli.training.auto_recipe import choose_recipe, optimizer_steps, settle_recipe

    # the full Imagenette benchmark: 8 epochs of ⌈9,469 / 32⌉ = 296 batches
    assert optimizer_steps(9_469, 8, 32) == 2_368
    assert optimizer_steps(9_469, 8, 32, accumulate=2) == 8 * 148
    assert optimizer_steps(9_469, 8, 32, max_train_batches=10) == 80
    assert choose_recipe(2_368) == "fast" and choose_recipe(9_999) == "fast"
    assert choose_recipe(10_000) == "paper" and choose_recipe(1_000_000) == "paper"
    base = {"arch": "n3hl", "data": "d"}
    cfg = build_config(base, {"epochs": 8})
    assert cfg.recipe == "auto" and cfg.optimizer == "sgd"  # nothing decided before the images
    short, choice = settle_recipe(cfg, 9_469)
    assert choice is not None and choice.line() == (
        "recipe auto → fast: 2,368 optimizer steps < 10,000"
    )
    assert (short.optimizer, short.lr, short.randaugment_n, short.min_crop_scale) == (
        "adamw", 0.002, 0, 0.35,
    )  # fmt: skip
    assert short.recipe == "auto" and short.epochs == 8
    # ImageNet for 10 epochs: the paper's augmentation, but the run keeps its length
    long, choice = settle_recipe(build_config(base), 1_281_167)
    assert choice is not None and choice.recipe == "paper"
    assert choice.reason == "400,370 optimizer steps ≥ 10,000"
    assert (long.optimizer, long.randaugment_n, long.randaugment_m) == ("sgd", 2, 9)
    assert (long.min_crop_scale, long.warmup_epochs) == (0.08, 5.0)
    assert (long.epochs, long.batch_size) == (10, 32)  # not the paper recipe's 300 epochs


def test_recipe_auto_keeps_what_was_given_and_an_explicit_recipe_wins() -> None:
    from nhlcli.training.auto_recipe import settle_recipe

    base = {"arch": "n3hl", "data": "d"}
    cfg, choice = settle_recipe(build_config(base, {"lr": 0.01, "min_crop_scale": 0.2}), 100)
    assert choice is not None and choice.kept == ("lr", "min_crop_scale")
    assert (cfg.optimizer, cfg.lr, cfg.min_crop_scale) == ("adamw", 0.01, 0.2)
    assert choice.line().endswith("(kept as given: lr, min_crop_scale)")
    # an option equal to the default still counts as given: a config file's `optimizer: sgd`
    cfg, choice = settle_recipe(build_config({**base, "optimizer": "sgd"}), 100)
    assert (cfg.optimizer, cfg.lr, cfg.randaugment_n) == ("sgd", None, 0)  # fast's lr is AdamW's
    for recipe in ("fast", "paper"):
        given = build_config(base, {"recipe": recipe})
        assert settle_recipe(given, 100) == (given, None)
    assert build_config(base, {"recipe": "paper"}).epochs == 300
    # a printed config leaves what auto decides to auto (commented out), so it still decides
    from nhlcli.training.config import config_text

    text = config_text()
    assert "recipe: auto" in text and "# optimizer: sgd" in text and "\nepochs: 10" in text
    assert "# optimizer" not in config_text({"recipe": "fast"})
