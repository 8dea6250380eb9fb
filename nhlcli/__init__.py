"""nhl: hierarchical image classifiers whose class branches can be cut out as experts.

The public API (`import nhlcli as nhl`; docs/api.md): `load_tree`, `save_tree`, `build_tree`,
`select_classes`, `collect_evidence`, `compare_trees`, `build_model`, `load_model`, `save_model`,
`cutout`, `profile`, `train`, `evaluate`, `experts`, `predict`, `export` (`nhlcli/api.py`,
which imports torch only inside the functions, so `import nhlcli` and `nhl --help` stay fast).
"""

from __future__ import annotations

from typing import Any

from nhlcli.api import *  # noqa: F403 - the public functions
from nhlcli.api import __all__ as _API
from nhlcli.api import expert_frontier  # noqa: F401 - the first name of `experts`
from nhlcli.version import __version__

_TYPES = {
    "Tree": "nhlcli.hierarchy.tree",
    "HierNet": "nhlcli.model.network",
    "Profile": "nhlcli.profiling.report",
    "TrainConfig": "nhlcli.training.config",
    "NhlError": "nhlcli.errors",
}

__all__ = ["__version__", *_API, *_TYPES]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _TYPES:
        return getattr(importlib.import_module(_TYPES[name]), name)
    raise AttributeError(f"module 'nhlcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
