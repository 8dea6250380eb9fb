"""What a training run reads: the tree (file, shipped name, or the folders) and the image splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nhlcli.data.folders import ImageFolder, index_image_folder, tree_from_folders
from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree


def load_tree_spec(spec: str) -> Tree:
    """A tree file path, or the name of a tree shipped with nhl (e.g. imagenette-wordnet-L3)."""
    try:
        from nhlcli.hierarchy.shipped_trees import resolve_tree
    except ImportError:  # an installation without shipped trees
        return Tree.load(spec)
    return resolve_tree(spec)


def train_val_dirs(data: str | Path) -> tuple[Path, Path | None]:
    """DIR/train and DIR/val (val optional); NhlError when DIR/train is missing."""
    root = Path(data)
    if not root.is_dir():
        raise NhlError(f"data folder not found: {root}")
    train = root / "train"
    if not train.is_dir():
        raise NhlError(
            f"{root} has no train/ folder "
            f"(expected {root}/train/<class>/... and {root}/val/<class>/...)"
        )
    val = root / "val"
    return train, (val if val.is_dir() else None)


@dataclass(frozen=True)
class TrainingData:
    tree: Tree
    train: ImageFolder
    val: ImageFolder | None


def load_training_data(
    data: str | Path, tree_spec: str | None, allow_extra: bool, tree: Tree | None = None
) -> TrainingData:
    """Match DIR/train (and DIR/val) to the tree; without a tree, one class per train folder."""
    train_dir, val_dir = train_val_dirs(data)
    if tree is None:
        tree = load_tree_spec(tree_spec) if tree_spec else tree_from_folders(train_dir)
    train = index_image_folder(train_dir, tree, allow_extra=allow_extra)
    val = index_image_folder(val_dir, tree, allow_extra=allow_extra) if val_dir else None
    return TrainingData(tree, train, val)
