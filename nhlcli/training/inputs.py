"""What a training run reads: the tree (file, shipped name, or the folders) and the image splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nhlcli.data.folders import ImageFolder, index_image_folder, tree_from_folders
from nhlcli.errors import NhlError
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree


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
    notes: tuple[str, ...] = field(default=())  # things to tell the user (ignored folders)


def _tree_for_folders(train_dir: Path, arch: str | None) -> Tree:
    """Without --tree: one class per folder, which only one-level presets can use."""
    tree = tree_from_folders(train_dir)
    if not arch:
        return tree
    from nhlcli.model.presets import get_preset
    from nhlcli.selection import trees_fitting

    preset = get_preset(arch)
    if preset.num_levels <= 1 or preset.head == "shared":
        return tree
    fits = trees_fitting(tree.class_ids, preset.num_levels)
    hint = (
        f"pass --tree {fits[0]} (shipped, fits these classes)"
        if fits
        else f"build one: nhl build-tree --classes <your classes> --levels {preset.num_levels} "
        "-o tree.json, then --tree tree.json"
    )
    raise NhlError(f"{preset.name} nests {preset.num_levels} levels and needs a tree: {hint}")


def load_training_data(
    data: str | Path,
    tree_spec: str | None,
    allow_extra: bool,
    tree: Tree | None = None,
    arch: str | None = None,
) -> TrainingData:
    """Match DIR/train (and DIR/val) to the tree; without a tree, one class per train folder."""
    train_dir, val_dir = train_val_dirs(data)
    if tree is None:
        tree = resolve_tree(tree_spec) if tree_spec else _tree_for_folders(train_dir, arch)
    train = index_image_folder(train_dir, tree, allow_extra=allow_extra)
    val = index_image_folder(val_dir, tree, allow_extra=allow_extra) if val_dir else None
    notes = [
        f"ignored {len(split.ignored_folders)} folder(s) of {split.root} that match no class: "
        + ", ".join(split.ignored_folders[:8])
        + (f" and {len(split.ignored_folders) - 8} more" if len(split.ignored_folders) > 8 else "")
        for split in (train, val)
        if split is not None and split.ignored_folders
    ]
    return TrainingData(tree, train, val, tuple(notes))
