"""A network from its saved config: the structure (fused or not) and the attention, no weights.

`model_from_config` is the inverse of `HierNet.config()`. It checks the config first
(`nhlcli.model.config.read_model_config`: nothing is built from a damaged or edited file), builds
the network (on the meta device with ``meta=True``, for loading weights with ``assign``), gives a
fused model its fused structure (`nhlcli.model.fuse.fuse_structure`), checks the node counts and
parameters the file states against the network, and sets the saved attention. It sits below the
network, fusing and attention, which all three know nothing of.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from nhlcli.errors import NhlError
from nhlcli.model.attention import set_attention
from nhlcli.model.config import read_model_config
from nhlcli.model.fuse import fuse_structure
from nhlcli.model.network import HierNet


def model_from_config(config: Any, meta: bool = False, origin: str = "config") -> HierNet:
    """Rebuild a network (uninitialised if meta=True) from `HierNet.config()`; NhlError if the
    config is unusable (naming `origin`)."""
    cfg = read_model_config(config, origin)
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = HierNet(cfg.preset, cfg.tree, cfg.img_size)
        if cfg.fused:
            fuse_structure(model)
    built = {"nodes_per_level": model.nodes_per_level(), "params": model.num_params()}
    wrong = [
        f"'{k}' says {cfg.stated[k]!r}, the preset and tree give {v!r}"
        for k, v in built.items()
        if k in cfg.stated and cfg.stated[k] != v
    ]
    if wrong:
        raise NhlError(f"{origin}: invalid model config", wrong)
    model.cut_from = cfg.cut_from
    if cfg.attention_level is not None:
        set_attention(model, cfg.attention, level=cfg.attention_level)
    return model
