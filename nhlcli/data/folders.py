"""Image folders (`root/<class>/*.jpg`) matched to a tree's classes.

A class folder is named by the class's id (a wnid, as in Imagenette), by its name in the tree
(`tench`, `English_springer`), or by any token that resolves to the class through the ImageNet
catalogue (`nhlcli.hierarchy.classsets.resolve_token`). Every problem is reported at once: tree
classes without images, folders that match no class (unless extra folders are allowed), two folders
for one class, folders that name several classes.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.fileio import register_input
from nhlcli.hierarchy.classsets import CLASS_FILE_SUFFIXES, ClassRef, resolve_token
from nhlcli.hierarchy.names import sense_label
from nhlcli.hierarchy.tree import Tree

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class ImageFolder:
    """The images of a folder tree, labelled with class indices in the tree's logit order."""

    root: Path
    class_ids: tuple[str, ...]  # logit order of the model the labels refer to
    samples: tuple[tuple[str, int], ...]  # (file path, class index)
    folders: dict[str, str] = field(default_factory=dict)  # class id -> folder name
    ignored_folders: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> list[int]:
        """Images per class, in class order."""
        out = [0] * len(self.class_ids)
        for _, label in self.samples:
            out[label] += 1
        return out

    def restricted(self, keep: Iterable[int]) -> ImageFolder:
        """Only the images whose label is in `keep` (labels unchanged)."""
        wanted = set(keep)
        return ImageFolder(
            self.root,
            self.class_ids,
            tuple(s for s in self.samples if s[1] in wanted),
            {c: f for c, f in self.folders.items() if self.class_ids.index(c) in wanted},
            self.ignored_folders,
        )


MAX_LISTED_CLASSES = 10  # a hint spells out a --classes value of at most this many classes


def data_folder(path: str | Path, classes_option: str | None = None) -> Path:
    """`path` when it is a folder; else NhlError: not found, or a file given for a folder (with
    `classes_option` named when the file looks like a class list)."""
    base = Path(path)
    if base.is_dir():
        return base
    if not base.exists():
        raise NhlError(f"data folder not found: {base}")
    hint = ""
    if classes_option and base.suffix.lower() in CLASS_FILE_SUFFIXES:
        hint = f"; if it is a class list, pass it with {classes_option}"
    raise NhlError(
        f"{base} is a file, not a folder: --data takes a folder of images in class folders{hint}"
    )


def split_dir(root: str | Path, split: str, classes_option: str | None = None) -> Path:
    """`root/split` when it exists (the usual train/ val/ layout), else `root` itself."""
    base = data_folder(root, classes_option)
    sub = base / split
    return sub if sub.is_dir() else base


def class_folders(root: Path) -> list[str]:
    """Sub-folder names of root (hidden ones skipped), sorted."""
    data_folder(root)
    names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise NhlError(f"{root} has no class folders (expected {root}/<class>/<image files>)")
    return names


def match_folder(folder: str, tree: Tree) -> list[str]:
    """Class ids of the tree that a folder name stands for (empty: none)."""
    if tree.is_class(folder):
        return [folder]
    by_name = [n for n in tree.find(folder) if tree.is_class(n)]
    if by_name:
        return by_name
    try:
        refs = resolve_token(folder, suggest=False)
    except NhlError:
        return []
    return [r.wnid for r in refs if tree.is_class(r.wnid)]


def scan_images(folder: Path) -> list[str]:
    """Image files under a class folder (recursively), sorted for a reproducible order.

    A symbolic link to a folder is followed only when its target lies inside `folder` itself (a
    link back up, `back -> ..`, would count the other classes' images as this class), and every
    real folder is read once (`loop -> .` neither repeats images nor loops forever). Links to files
    are followed wherever they point (datasets built from links), and each real file is listed once.
    """
    register_input(folder)
    top = os.path.realpath(folder)
    out: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            st = os.stat(current)
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        real_dir = os.path.realpath(current)
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            link = entry.is_symlink()
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                continue
            if is_dir:
                if not link or _within(os.path.realpath(entry.path), top):
                    subdirs.append(entry.path)
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                real = os.path.realpath(entry.path) if link else os.path.join(real_dir, entry.name)
                if real not in seen_files:
                    seen_files.add(real)
                    out.append(entry.path)
        stack.extend(reversed(subdirs))
    return sorted(out)


def _within(path: str, top: str) -> bool:
    return os.path.commonpath([path, top]) == top


def index_image_folder(
    root: str | Path,
    tree: Tree,
    allow_extra: bool = False,
    required: Sequence[str] | None = None,
    classes_option: str | None = None,
) -> ImageFolder:
    """Match the class folders of `root` to the tree's classes and list their images.

    `required` is the list of class ids that must have images (default: all classes of the tree).
    Folders that match no class are an error unless `allow_extra`; they are then ignored. When
    required classes have no images, the message shows how `classes_option` (the caller's option
    naming `required`, if it has one) selects only the classes that have images.
    """
    root = Path(root)
    folders = class_folders(root)
    problems: list[str] = []
    owner: dict[str, str] = {}  # class id -> folder
    extra: list[str] = []
    for folder in folders:
        ids = match_folder(folder, tree)
        if not ids:
            extra.append(folder)
            continue
        if len(ids) > 1:
            senses = ", ".join(sense_label(i, tree.node(i).name) for i in ids)
            problems.append(f"folder '{folder}' matches several classes: {senses}")
            continue
        cid = ids[0]
        if cid in owner:
            problems.append(f"folders '{owner[cid]}' and '{folder}' are both class {cid}")
            continue
        owner[cid] = folder
    samples: list[tuple[str, int]] = []
    empty: list[str] = []
    for cid, folder in owner.items():
        files = scan_images(root / folder)
        if not files:
            empty.append(folder)
        label = tree.class_index(cid)
        samples.extend((f, label) for f in files)
    need = list(required) if required is not None else tree.class_ids
    missing = [c for c in need if c not in owner or owner[c] in empty]
    if missing:
        shown = ", ".join(f"{c} ({tree.node(c).name})" for c in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        hint = _subset_hint(tree, [c for c in need if c not in missing], classes_option)
        problems.append(f"{len(missing)} class(es) without images: {shown}{more}{hint}")
    if extra and not allow_extra:
        shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        problems.append(
            f"{len(extra)} folder(s) match no class of the tree: {shown} "
            "(pass --allow-extra to ignore them)"
        )
    if problems:
        raise NhlError(f"{root}: the class folders do not fit the tree", problems)
    samples.sort(key=lambda s: (s[1], s[0]))
    return ImageFolder(root, tuple(tree.class_ids), tuple(samples), owner, tuple(extra))


def _subset_hint(tree: Tree, present: Sequence[str], classes_option: str | None) -> str:
    """` (to use only the N classes with images, pass --classes 'a,b')`, or "" without an option
    or without such classes; the value is spelled out for up to MAX_LISTED_CLASSES classes."""
    if not classes_option or not present:
        return ""
    if len(present) > MAX_LISTED_CLASSES:
        return f" (pass {classes_option} to use only the {len(present)} classes with images)"
    tokens = []
    for cid in present:  # a class's name where it names only this class, else its id
        name = tree.node(cid).name
        tokens.append(name if "," not in name and tree.find(name) == [cid] else cid)
    value = shlex.quote(",".join(tokens))
    return f" (to use only the {len(present)} classes with images, pass {classes_option} {value})"


def folder_classes(root: str | Path, strict: bool = False) -> list[tuple[str, ClassRef]]:
    """Each class folder (sorted) with the class it names: a wnid, synset or ImageNet class name
    becomes that class (its wnid as id). `strict`: every folder must name one (a WordNet tree
    needs it), else NhlError listing those that do not; otherwise such a folder is its own class.
    """
    out: list[tuple[str, ClassRef]] = []
    seen: dict[str, str] = {}
    problems = []
    for folder in class_folders(Path(root)):
        try:
            refs = resolve_token(folder, suggest=strict)
        except NhlError as e:
            if strict:
                problems.append(f"folder '{folder}': {e}")
                continue
            refs = []
        ref = refs[0] if len(refs) == 1 else ClassRef(folder, folder)
        if ref.wnid in seen:
            problems.append(f"folders '{seen[ref.wnid]}' and '{folder}' are both class {ref.wnid}")
            continue
        seen[ref.wnid] = folder
        out.append((folder, ref))
    if problems:
        raise NhlError(f"{root}: cannot derive classes from the folders", problems)
    return out


def tree_from_folders(root: str | Path) -> Tree:
    """A one-level tree (no groups) with one class per folder, for presets that need no hierarchy.

    Folder names that resolve to an ImageNet class (wnids, names) become that class (its wnid as
    id); other folder names are used as they are. Folder order (sorted) is the logit order.
    """
    from nhlcli.hierarchy.tree import TreeNode

    nodes = [TreeNode(ref.wnid, ref.name, None) for _, ref in folder_classes(root)]
    return Tree(nodes, [], {"source": "folders", "params": {"root": str(root)}})
