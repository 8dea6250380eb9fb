"""The demo (`nhl.demo`, `nhl demo`): the papers' example, then a small network end to end.

Two parts, both on shipped trees, nothing downloaded:

* **the headline**: a network for the 1000 ImageNet classes (`imagenet1k-wordnet-L3`) and its
  "meow" expert, the 5 domestic cats (the papers' example: the sound "meow" narrows 1000 classes
  to the cats). Counted one block shape at a time (`nhl.profile`), so nothing is allocated: a few
  seconds for a 95 M-parameter N3HL. N3HL: −89.6 % parameters, −73.8 % GMACs.
* **a small network to hold**: the same preset for Imagenette's 10 classes, built with random
  weights and saved, and an expert of classes that share one group of the tree (the smallest group
  holding enough classes, so the cut is large), cut out, saved and profiled.

Every step is a public function (`load_tree`, `profile`, `build_model`, `cutout`, `save_model`);
this module only chains them (layer 4, beside `api.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nhlcli import api
from nhlcli.errors import NhlError

if TYPE_CHECKING:
    from nhlcli.hierarchy.tree import Tree
    from nhlcli.profiling.report import Profile

HEADLINE_TREE = "imagenet1k-wordnet-L3"
HEADLINE_IMG_SIZE = 224  # the papers' input size
MEOW = "domestic cat"  # the tree node the sound "meow" points to
SMALL_TREE = "imagenette-wordnet-L3"


@dataclass(frozen=True)
class DemoExpert:
    """One expert of the demo: its classes, the tree group they share, and the profile (baseline,
    full model, expert)."""

    tree: str
    group: str  # the name of the tree node every class of the expert lies under
    classes: list[dict[str, str]]  # {"id", "name"} in logit order
    profile: Profile

    @property
    def reduction_pct(self) -> dict[str, float]:
        """How much smaller the expert is than the full model, in % (params, gmacs)."""
        red = self.profile.row("cutout").reduction_vs_full_pct
        return {"params": red["params"], "gmacs": red["macs"]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": self.tree,
            "group": self.group,
            "classes": self.classes,
            "reduction_pct": self.reduction_pct,
            "profile": self.profile.to_dict(),
        }


@dataclass(frozen=True)
class DemoResult:
    """What `nhl.demo` returns; `to_dict()` is what `nhl demo --json` prints."""

    arch: str
    headline: DemoExpert  # 1000 classes and the "meow" expert, counted (nothing allocated)
    headline_seconds: float  # the time the headline's counting took
    small: DemoExpert  # the Imagenette network and its expert
    checkpoint: Path  # the Imagenette network, random weights
    expert_dir: Path  # its expert
    cutout: dict[str, Any]  # what the cut kept (`nhlcli.model.cutout.cutout_summary`)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "headline": {
                **self.headline.to_dict(),
                "cue": "meow",
                "seconds": self.headline_seconds,
            },
            "imagenette": {
                **self.small.to_dict(),
                "checkpoint": str(self.checkpoint),
                "expert": {**self.cutout, "path": str(self.expert_dir)},
            },
        }


def shared_group(tree: Tree, count: int) -> tuple[str, list[str]]:
    """The first `count` classes of the smallest group holding at least `count` (deepest first on
    a tie; the whole tree when no group is large enough): (the group's name, the class ids)."""
    if count > tree.num_classes:
        raise NhlError(f"--expert-classes {count}: the tree has only {tree.num_classes} classes")
    fitting = [n for n in tree.nodes if len(tree.leaves_under(n.id)) >= count]
    if not fitting:
        return "the whole tree", tree.class_ids[:count]
    # tree.nodes is in canonical order (depth, first leaf), so min keeps the first of equals
    node = min(fitting, key=lambda n: (len(tree.leaves_under(n.id)), -tree.depth(n.id)))
    return node.name, tree.leaves_under(node.id)[:count]


def _named(tree: Tree, ids: list[str]) -> list[dict[str, str]]:
    return [{"id": i, "name": tree.node(i).name} for i in ids]


def run_demo(output: str | Path, arch: str, expert_classes: int, img_size: int) -> DemoResult:
    """The body of `nhl.demo` (see there)."""
    from nhlcli.model.cutout import cutout_summary

    output = Path(output)
    start = time.perf_counter()
    big = api.load_tree(HEADLINE_TREE)
    cats = api.select_classes(big, MEOW)
    headline_profile = api.profile(arch, big, subset=cats, img_size=HEADLINE_IMG_SIZE)
    seconds = time.perf_counter() - start
    headline = DemoExpert(HEADLINE_TREE, MEOW, _named(big, cats), headline_profile)

    tree = api.load_tree(SMALL_TREE)
    group, subset = shared_group(tree, expert_classes)
    model_dir = output / f"{arch}-imagenette"
    expert_dir = output / f"{arch}-expert-{len(subset)}"
    model = api.build_model(arch, tree, img_size=img_size, seed=0)
    api.save_model(model, model_dir, extra={"init": {"seed": 0}})
    expert = api.cutout(api.load_model(model_dir), subset, origin=str(model_dir))
    api.save_model(expert, expert_dir, extra={"cut_from_checkpoint": str(model_dir)})
    small = DemoExpert(SMALL_TREE, group, _named(tree, subset),
                       api.profile(model, subset=expert.class_ids))  # fmt: skip
    return DemoResult(
        arch=arch, headline=headline, headline_seconds=round(seconds, 2), small=small,
        checkpoint=model_dir, expert_dir=expert_dir, cutout=cutout_summary(model, expert),
    )  # fmt: skip
