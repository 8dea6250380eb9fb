"""The networks: presets as data, grouped levels, HierNet, cutouts (experts), top-down attention.

Torch only: no file I/O, no printing (checkpoints on disk: `nhlcli.checkpoint`).
"""

from nhlcli.model.attention import clear_attention, parse_attend, set_attention
from nhlcli.model.cutout import cutout, cutout_summary, resolve_selection
from nhlcli.model.network import MODEL_FORMAT, HierNet, build_model
from nhlcli.model.presets import PRESETS, Preset, get_preset

__all__ = [
    "MODEL_FORMAT",
    "PRESETS",
    "HierNet",
    "Preset",
    "build_model",
    "clear_attention",
    "cutout",
    "cutout_summary",
    "get_preset",
    "parse_attend",
    "resolve_selection",
    "set_attention",
]
