"""What a training run reads: the tree (file, shipped name, WordNet, or the folders) and the image
splits."""

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


WORDNET_TREE = "wordnet"  # `--tree wordnet`: the WordNet tree of the class folders
RUN_TREE_FILE = "tree.json"  # where a run keeps the tree it built (args.yaml names it)


@dataclass(frozen=True)
class TrainingData:
    tree: Tree
    train: ImageFolder
    val: ImageFolder | None
    notes: tuple[str, ...] = field(default=())  # things to tell the user (ignored folders)
    built_tree: bool = False  # the tree was built here (WordNet): the run saves it


def _needs_tree(arch: str | None) -> bool:
    """Whether the preset nests levels, so one class per folder is not enough."""
    if not arch:
        return False
    from nhlcli.model.presets import get_preset

    return get_preset(arch).num_levels > 1


def wordnet_tree_of_folders(train_dir: Path, arch: str | None) -> tuple[Tree, list[str]]:
    """The WordNet tree of the classes the folders name (wnids, synsets or ImageNet class names),
    with the levels the preset needs (one for presets that need none); (tree, notes)."""
    from nhlcli.data.folders import folder_classes
    from nhlcli.hierarchy.classsets import ClassSet
    from nhlcli.hierarchy.sources import build_from_source
    from nhlcli.model.presets import get_preset

    levels = max(1, get_preset(arch).num_levels) if arch else 1
    refs = tuple(ref for _, ref in folder_classes(train_dir, strict=True))
    classes = ClassSet("class folders", str(train_dir), refs)
    tree, notes = build_from_source("wordnet", classes, levels)
    counts = [len(tree.level(lv)) for lv in range(1, levels + 1)]
    notes.append(
        f"tree: WordNet over the {len(refs)} class folders, nodes per level {counts} (saved "
        f"in the run as {RUN_TREE_FILE})"
    )
    return tree, notes


def _tree_for_folders(
    train_dir: Path, tree_spec: str | None, arch: str | None
) -> tuple[Tree, list[str], bool]:
    """(tree, notes, built here): --tree FILE or shipped name; --tree wordnet; without --tree,
    the WordNet tree for presets that nest levels, one class per folder for the others."""
    if tree_spec is not None and tree_spec != WORDNET_TREE:
        return resolve_tree(tree_spec), [], False
    if tree_spec is None and not _needs_tree(arch):
        return tree_from_folders(train_dir), [], False
    try:
        tree, notes = wordnet_tree_of_folders(train_dir, arch)
    except NhlError as e:
        if tree_spec is not None:
            raise
        raise NhlError(
            f"{arch} nests levels and needs a tree; the WordNet tree of the class folders "
            f"cannot be built ({e}): pass --tree FILE (nhl build-tree ... -o FILE)"
        ) from None
    return tree, notes, True


def load_training_data(
    data: str | Path,
    tree_spec: str | None,
    allow_extra: bool,
    tree: Tree | None = None,
    arch: str | None = None,
) -> TrainingData:
    """Match DIR/train (and DIR/val) to the tree (`_tree_for_folders` when none is given)."""
    train_dir, val_dir = train_val_dirs(data)
    notes: list[str] = []
    built = False
    if tree is None:
        tree, notes, built = _tree_for_folders(train_dir, tree_spec, arch)
    train = index_image_folder(train_dir, tree, allow_extra=allow_extra)
    val = index_image_folder(val_dir, tree, allow_extra=allow_extra) if val_dir else None
    notes += [
        f"ignored {len(split.ignored_folders)} folder(s) of {split.root} that match no class: "
        + ", ".join(split.ignored_folders[:8])
        + (f" and {len(split.ignored_folders) - 8} more" if len(split.ignored_folders) > 8 else "")
        for split in (train, val)
        if split is not None and split.ignored_folders
    ]
    return TrainingData(tree, train, val, tuple(notes), built)


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
