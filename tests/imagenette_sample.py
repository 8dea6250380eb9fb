"""Helpers for the data/train/eval tests: a small Imagenette copy and a hand-made 3-level tree."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from nhlcli.hierarchy.tree import Tree, TreeNode

# The ten Imagenette classes (wnid, name), in the order of hierarchies/classsets/imagenette.txt.
IMAGENETTE = [
    ("n01440764", "tench"),
    ("n02102040", "English springer"),
    ("n02979186", "cassette player"),
    ("n03000684", "chain saw"),
    ("n03028079", "church"),
    ("n03394916", "French horn"),
    ("n03417042", "garbage truck"),
    ("n03425413", "gas pump"),
    ("n03445777", "golf ball"),
    ("n03888257", "parachute"),
]

# level 1 -> level 2 -> classes (a small hand-made hierarchy, 3 levels like N3HL needs)
GROUPS = {
    "animal": {"fish": ["n01440764"], "dog": ["n02102040"]},
    "artifact": {
        "device": ["n02979186", "n03000684", "n03394916", "n03425413"],
        "structure": ["n03028079"],
        "vehicle": ["n03417042", "n03888257"],
        "ball": ["n03445777"],
    },
}


def small_tree(class_ids: Sequence[str] | None = None) -> Tree:
    """The 3-level tree over the ten classes (or over a subset, in the given order)."""
    names = dict(IMAGENETTE)
    nodes, classes = [], []
    parent_of = {}
    for top, subs in GROUPS.items():
        nodes.append(TreeNode(top, top, None))
        for sub, members in subs.items():
            nodes.append(TreeNode(sub, sub, top))
            for c in members:
                parent_of[c] = sub
    for cid in class_ids or [c for c, _ in IMAGENETTE]:
        classes.append(TreeNode(cid, names[cid], parent_of[cid]))
    used = {c.parent for c in classes}
    used |= {n.parent for n in nodes if n.id in used}
    return Tree(classes, [n for n in nodes if n.id in used], {"source": "test"})


def copy_sample(
    src: Path,
    dst: Path,
    train_per_class: int,
    val_per_class: int,
    class_ids: Sequence[str] | None = None,
) -> Path:
    """dst/train/<wnid>/… and dst/val/<wnid>/…: the first N files of each class (sorted names)."""
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for cid in class_ids or [c for c, _ in IMAGENETTE]:
            out = dst / split / cid
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted((src / split / cid).iterdir())[:n]:
                shutil.copyfile(f, out / f.name)
    return dst


def one_thread():
    """Fixture body: torch on one thread during a test module (restored afterwards).

    The suite runs with `pytest -n 2` on two cores; a second intra-op thread per worker only
    oversubscribes the CPU, and oversubscribed OpenMP threads make small convolutions ~10x slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
