"""`--recipe auto`, the default: the fast recipe for short runs, the paper's for long ones.

The choice is made by the run's length in optimizer steps, epochs × ⌈train images / batch size⌉
(capped by `--max-train-batches`, divided by `--accumulate`), against `AUTO_RECIPE_STEPS`
(`nhlcli/training/config.py` says why 10,000). It is made once, when a run starts and its
training images are known; a resumed run keeps it (args.yaml records it as `recipe_auto`). The
chosen recipe fills in only the settings not given in a config file or as options, and never the
run's length (epochs, batch size), which decided it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nhlcli.training.config import (
    AUTO_RECIPE,
    AUTO_RECIPE_STEPS,
    RECIPES,
    RUN_LENGTH_KEYS,
    TrainConfig,
)


@dataclass(frozen=True)
class RecipeChoice:
    """What `auto` chose, from how many optimizer steps, and the settings kept as given."""

    recipe: str
    optimizer_steps: int
    threshold: int = AUTO_RECIPE_STEPS
    kept: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        sign = "<" if self.optimizer_steps < self.threshold else "≥"
        steps = "step" if self.optimizer_steps == 1 else "steps"
        return f"{self.optimizer_steps:,} optimizer {steps} {sign} {self.threshold:,}"

    def line(self) -> str:
        """`recipe auto → fast: 2,368 optimizer steps < 10,000`, the run's first line."""
        kept = f" (kept as given: {', '.join(self.kept)})" if self.kept else ""
        return f"recipe auto → {self.recipe}: {self.reason}{kept}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "reason": self.reason,
            "optimizer_steps": self.optimizer_steps,
            "threshold": self.threshold,
            "kept": list(self.kept),
        }


def optimizer_steps(
    train_images: int,
    epochs: int,
    batch_size: int,
    accumulate: int = 1,
    max_train_batches: int | None = None,
) -> int:
    """The optimizer steps of a whole run (what its learning-rate schedule spans).

    >>> optimizer_steps(9_469, 8, 32)
    2368
    """
    batches = -(-train_images // batch_size)
    if max_train_batches:
        batches = min(batches, max_train_batches)
    return epochs * -(-batches // accumulate)


def choose_recipe(steps: int, threshold: int = AUTO_RECIPE_STEPS) -> str:
    """`fast` below `threshold` optimizer steps, `paper` from it on."""
    return "fast" if steps < threshold else "paper"


def apply_recipe(cfg: TrainConfig, name: str) -> tuple[TrainConfig, tuple[str, ...]]:
    """`cfg` with recipe `name` filling in the settings not given (never the run's length), and
    the settings kept as given against the recipe. The recipe's learning rate belongs to its
    optimizer: with another optimizer given, the rate stays that optimizer's default."""
    given = cfg.given_settings()
    values = {k: v for k, v in RECIPES[name].items() if k not in RUN_LENGTH_KEYS}
    if "optimizer" in given and given["optimizer"] != values.get("optimizer", given["optimizer"]):
        values.pop("lr", None)
    kept = tuple(k for k, v in values.items() if k in given and given[k] != v)
    return replace(cfg, **{k: v for k, v in values.items() if k not in given}), kept


def settle_recipe(cfg: TrainConfig, train_images: int) -> tuple[TrainConfig, RecipeChoice | None]:
    """`cfg` with recipe auto decided for `train_images` (its recipe still reads `auto`), and the
    choice; any other recipe is returned as it is, with None."""
    if cfg.recipe != AUTO_RECIPE:
        return cfg, None
    steps = optimizer_steps(
        train_images, cfg.epochs, cfg.batch_size, cfg.accumulate, cfg.max_train_batches
    )
    name = choose_recipe(steps)
    settled, kept = apply_recipe(cfg, name)
    return settled, RecipeChoice(name, steps, AUTO_RECIPE_STEPS, kept)
