"""What a training run reads: the tree (file, shipped name, or the folders) and the image splits."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nhlcli.data.folders import ImageFolder, data_folder, index_image_folder, tree_from_folders
from nhlcli.errors import NhlError
from nhlcli.hierarchy.shipped_trees import resolve_tree
from nhlcli.hierarchy.tree import Tree


def train_val_dirs(data: str | Path) -> tuple[Path, Path | None]:
    """DIR/train and DIR/val (val optional); NhlError when DIR/train is missing."""
    root = data_folder(data)
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


def image_list_fingerprint(data: TrainingData) -> dict[str, dict[str, Any]]:
    """Per split (train, val): the image count and a SHA-256 of the image paths (relative to the
    split folder) with their classes. Cheap: no file is opened."""
    out: dict[str, dict[str, Any]] = {}
    for split, folder in (("train", data.train), ("val", data.val)):
        if folder is None:
            continue
        prefix = str(folder.root) + os.sep
        digest = hashlib.sha256()
        for path, label in folder.samples:
            rel = path[len(prefix) :] if path.startswith(prefix) else path
            line = f"{rel}\t{folder.class_ids[label]}\n"
            digest.update(line.encode("utf-8", "surrogateescape"))
        out[split] = {"images": len(folder), "sha256": digest.hexdigest()}
    return out


def describe_data_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two `image_list_fingerprint`s, one phrase per changed split."""
    changes = []
    for split in ("train", "val"):
        before, after = old.get(split), new.get(split)
        if before == after:
            continue
        if not isinstance(before, dict) or "images" not in before:
            changes.append(f"{split}: {after['images'] if after else 0} images, none before")
        elif after is None:
            changes.append(f"{split}: gone (it had {before['images']} images)")
        else:
            n0, n1 = int(before["images"]), int(after["images"])
            if n1 > n0:
                changes.append(f"{split}: {n1 - n0} image(s) added ({n0} -> {n1})")
            elif n1 < n0:
                changes.append(f"{split}: {n0 - n1} image(s) removed ({n0} -> {n1})")
            else:
                changes.append(f"{split}: the same number of images ({n0}) but other files")
    return changes
