"""Which classes of a tree an expert holds, from whatever the user names: for pictures and cutouts.

A selection is a model or expert folder (its `config.json` lists its classes), a built-in class
set, a class file, or comma-separated classes / tree nodes (a node stands for every class under
it).
"""

from __future__ import annotations

import json
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree


def model_dir_classes(folder: Path) -> list[str]:
    """The class ids of a model/expert folder, read from its config.json (no weights loaded)."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        for tag in ("best", "last"):  # a training run stands for its best (else last) checkpoint
            if (folder / tag / "config.json").is_file():
                cfg = folder / tag / "config.json"
                break
        else:
            raise NhlError(f"{folder} is a folder but not a model (no config.json)")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
        return Tree.from_dict(config["tree"], origin=f"{cfg}: tree").class_ids
    except NhlError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise NhlError(f"{cfg}: not a readable nhl model config ({type(e).__name__})") from None


def expert_classes(tree: Tree, spec: str) -> list[str]:
    """Class ids of `tree` named by `spec` (see the module docstring); others are an error."""
    path = Path(spec)
    if path.is_dir():
        ids = model_dir_classes(path)
        missing = [c for c in ids if not tree.is_class(c)]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise NhlError(f"{spec}: {len(missing)} of its classes are not in the tree: {shown}")
        return ids
    from nhlcli.profiling.targets import select_classes

    return select_classes(tree, spec)
