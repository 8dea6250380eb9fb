"""What a network is, as data (no torch): its nodes per level, image sizes, and its saved config.

The network (`network.py`), attention, fusing and the profiler all read these, so each rule is
written once:

* `level_node_ids` / `nodes_per_level`: the nodes a preset builds on each level of a tree (the
  tree's levels in network order; one shared node per level for shared-head presets);
* `check_img_size`: the image sizes every preset works at (`MIN_IMG_SIZE`..`MAX_IMG_SIZE`);
* `read_model_config`: a saved config (`HierNet.config()`, format ``nhl-model/1``) checked
  before anything is built; `nhlcli.model.rebuild` builds the network from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.presets import Preset, preset_problems

MODEL_FORMAT = "nhl-model/1"
# Every preset downsamples by 32 (ResNet: stem /4 and three stride-2 stages; ConvNeXt-V2: stem /4
# and three 2x2/2 downsamples, which fail on a 1-pixel map): 32 px is the smallest size at which
# all of them run. The largest keeps activations and profiles of huge images out of reach.
MIN_IMG_SIZE = 32
MAX_IMG_SIZE = 1024
MAX_PARAMS = 4_000_000_000  # a config asking for more is refused before anything is built


def check_img_size(size: Any, what: str = "image size") -> int:
    """`size` if it is an integer within MIN_IMG_SIZE..MAX_IMG_SIZE; NhlError otherwise."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise NhlError(f"{what} must be an integer number of pixels, not {size!r}")
    if size < MIN_IMG_SIZE:
        raise NhlError(f"{what} {size} is too small (at least {MIN_IMG_SIZE} px)")
    if size > MAX_IMG_SIZE:
        raise NhlError(f"{what} {size} is too large (at most {MAX_IMG_SIZE} px)")
    return size


def levels_hint(preset: Preset) -> str:
    """What to do when a tree's depth does not fit the preset (leads the error message)."""
    n = preset.num_levels
    if n == 1:
        return (
            f"{preset.name} is a one-level preset: give it a class set (--classes imagenette) or "
            "a 1-level tree (nhl build-tree --levels 1)"
        )
    return f"{preset.name} nests {n} levels: use a {n}-level tree (nhl build-tree --levels {n})"


def level_node_ids(preset: Preset, tree: Tree) -> list[list[str]]:
    """The node ids of each level the preset builds for `tree`, in network order.

    Per-class presets: the tree's levels 1..L (`Tree.level`; the last level is the classes, in
    logit order); the tree's depth is checked (NhlError naming what to do). Shared-head presets:
    one node ``shared<l>`` per level, whatever the tree.
    """
    if preset.head != "per_class":
        return [[f"shared{lv}"] for lv in range(1, len(preset.levels) + 1)]
    n = preset.num_levels
    tree.require_levels(n, hint=levels_hint(preset))
    return [tree.level(lv) for lv in range(1, n + 1)]


def nodes_per_level(preset: Preset, tree: Tree) -> list[int]:
    """How many nodes each level of the preset has for `tree` (see `level_node_ids`)."""
    return [len(ids) for ids in level_node_ids(preset, tree)]


@dataclass(frozen=True)
class ModelConfig:
    """A saved model config, checked (`read_model_config`); the network is not built yet."""

    preset: Preset
    tree: Tree
    img_size: int
    nodes_per_level: list[int]
    fused: bool
    cut_from: dict[str, Any] | None
    attention_level: int | None
    attention: dict[str, Any]  # node id -> scale, as saved (checked when it is set)
    stated: dict[str, Any]  # what the file says of nodes_per_level / params (checked when built)
    origin: str


def read_model_config(config: Any, origin: str = "config") -> ModelConfig:
    """The checked contents of `HierNet.config()` as saved; NhlError (naming `origin`) if unusable.

    Everything that can be checked without building is: the format, the preset's schema, the
    tree, the image size, the tree's depth for the preset and the parameter limit.
    """
    if not isinstance(config, dict):
        raise NhlError(f"{origin}: not an nhl model config (expected a JSON object)")
    fmt = config.get("format")
    if fmt != MODEL_FORMAT:
        raise NhlError(f"{origin}: unknown model format {fmt!r} (this nhl reads {MODEL_FORMAT!r})")
    problems = preset_problems(config.get("preset"))
    if problems:
        raise NhlError(f"{origin}: invalid model config", problems)
    preset = Preset.from_dict(config["preset"])
    if "tree" not in config:
        raise NhlError(f"{origin}: invalid model config: no 'tree' (the classes and groups)")
    tree = Tree.from_dict(config["tree"], origin=f"{origin}: tree")
    try:
        img_size = check_img_size(config.get("img_size", 224), "img_size")
    except NhlError as e:
        raise NhlError(f"{origin}: invalid model config: {e}") from None
    if "arch" in config and config["arch"] != preset.name:
        raise NhlError(
            f"{origin}: invalid model config: arch {config['arch']!r} but the preset is "
            f"{preset.name!r}"
        )
    try:
        counts = nodes_per_level(preset, tree)
    except NhlError as e:
        raise NhlError(f"{origin}: {e}") from None
    total = preset.params(counts, tree.num_classes)
    if total > MAX_PARAMS:
        raise NhlError(
            f"{origin}: invalid model config: {total:,} parameters (nhl builds at most "
            f"{MAX_PARAMS:,})"
        )
    fused = config.get("fused", False)
    if not isinstance(fused, bool):
        raise NhlError(f"{origin}: invalid model config: 'fused' must be true or false")
    cut_from = config.get("cut_from")
    if cut_from is not None and not isinstance(cut_from, dict):
        raise NhlError(f"{origin}: invalid model config: 'cut_from' must be an object or null")
    att = config.get("attention")
    level: int | None = None
    scales: dict[str, Any] = {}
    if att:
        if not isinstance(att, dict) or not isinstance(att.get("scales"), dict):
            raise NhlError(f"{origin}: invalid attention settings (expected level and scales)")
        level = att.get("level")
        if isinstance(level, bool) or not isinstance(level, int):
            raise NhlError(f"{origin}: invalid attention settings (level {level!r})")
        scales = dict(att["scales"])
    stated = {k: config[k] for k in ("nodes_per_level", "params") if k in config}
    return ModelConfig(
        preset, tree, img_size, counts, fused, cut_from, level, scales, stated, origin
    )
