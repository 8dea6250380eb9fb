"""The networks: presets as data, grouped levels, HierNet, cutouts (experts), top-down attention.

Torch only: no file I/O, no printing (checkpoints on disk: `nhlcli.checkpoint`). The names below are
imported lazily, so `nhlcli.model.presets` (pure data) can be used without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "clear_attention": "attention",
    "parse_attend": "attention",
    "set_attention": "attention",
    "cutout": "cutout",
    "cutout_summary": "cutout",
    "MODEL_FORMAT": "config",
    "HierNet": "network",
    "build_model": "network",
    "model_from_config": "rebuild",
    "get_kind": "kinds",
    "register_kind": "kinds",
    "PRESETS": "presets",
    "Preset": "presets",
    "get_preset": "presets",
    "register_preset": "presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nhlcli.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nhlcli.model.{module}"), name)
