"""Category trees from tables: the built-in ImageNet superclass table, CSV/TSV, BREEDS folders.

`--table` takes one of:

- **`imagenet-superclass`** (built in): s-kumano/imagenet-superclass (MIT), each ImageNet-1k
  class's immediate parent in ImageNet's WordNet (558 superclasses). Gives a 2-level tree:
  superclass → class, each class under exactly its table superclass. Node ids are the superclass
  wnids (`superclass_wnids.txt`), names the first word of the table's name.
- **a CSV or TSV file** with a header and one row per class: `class,parent,grandparent,...` (`.tsv`
  or a tab in the header: tab-separated), read the way the row reads: `tabby,cat,pet` is "a tabby
  is a cat, a cat is a pet", so pet is the top group, cat under it, tabby under cat. The class is a
  wnid, a synset name or a name that resolves to one ImageNet class. Any number of levels; cells
  may be left empty at the end of a row: its last group is then a top group and the class is
  continued by single-child nodes. The tree follows the table
  exactly. A group's id is its cell text, or its whole path joined by `/` when the same text names
  groups under different parents. Rows for classes outside the class set are checked and ignored.
- **a BREEDS hierarchy folder** (`class_hierarchy.txt`: `parent child` lines, `node_names.txt`:
  `id<TAB>name`, `dataset_class_info.json`), e.g. BREEDS' `modified/` hierarchy (a node's name is
  the first of its comma-separated synonyms). Its nodes are ancestors of any depth, so the groups
  of each level are chosen by the levelling rule (`levelling.level_tree`, `--levels`, `--groups`).
  A node listed with several parents keeps the first.

Classes a table does not cover are an error listing them, unless `allow_missing=True`, which puts
them in a group of their own (`missing-from-table`, "not in the table").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.fileio import register_input
from nhlcli.hierarchy.classsets import ClassSet, resolve_token
from nhlcli.hierarchy.levelling import (
    TODAY,
    ClassPath,
    check_levels_and_groups,
    default_targets,
    exact_tree,
    level_tree,
    provenance,
)
from nhlcli.hierarchy.sources import SourceContext, TreeSource, register
from nhlcli.hierarchy.tree import Tree
from nhlcli.resources import shipped
from nhlcli.setting_fields import setting
from nhlcli.textio import read_json, read_text

SUPERCLASS = "imagenet-superclass"
BUILTIN_TABLES = {SUPERCLASS: "s-kumano/imagenet-superclass (MIT): each ImageNet class's parent"}
MISSING_GROUP = ("missing-from-table", "not in the table")
BREEDS_FILES = ("class_hierarchy.txt", "node_names.txt")

Ancestors = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    """Paths read from a table: class wnid -> ancestors (top first), and the tree kind."""

    kind: str  # "superclass" | "csv" | "breeds"
    name: str  # what provenance records: the built-in name or the file/folder name
    paths: dict[str, Ancestors]
    levels: int | None  # fixed number of levels (exact tables), None: levelled (BREEDS)


# ------------------------------------------------------------------- built-in superclass table
@cache
def superclass_table() -> Table:
    folder = shipped("tables", SUPERCLASS)
    ids = _lines(folder / "superclass.txt")
    names = _lines(folder / "superclass_names.txt")
    wnids: dict[int, str] = {}
    for line in _lines(folder / "superclass_wnids.txt"):
        if not line.startswith("#"):
            idx, w = line.split("\t")
            wnids[int(idx)] = w
    from nhlcli.hierarchy.classsets import imagenet

    classes = imagenet().classes
    if not (len(ids) == len(names) == len(classes)):
        raise NhlError(f"the shipped {SUPERCLASS} table is damaged; reinstall nhl")
    paths: dict[str, Ancestors] = {
        c.wnid: ((wnids[int(i)], n.split(",")[0].strip()),)
        for c, i, n in zip(classes, ids, names, strict=True)
    }
    return Table("superclass", SUPERCLASS, paths, 2)


def _lines(path: Path) -> list[str]:
    return [line for line in read_text(path).splitlines() if line.strip()]


# --------------------------------------------------------------------------- CSV / TSV
def read_csv_table(path: Path) -> Table:
    """A `class,parent,grandparent,...` table with a header (see the module docstring)."""
    text = read_text(path, "table")
    lines = text.splitlines()
    header_line = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), None)
    if header_line is None:
        raise NhlError(f"{path}: the table is empty (it needs a header: class,parent,...)")
    delim = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in header_line else ","
    rows = _csv_rows(text, delim, path)
    problems: list[str] = []
    header: list[str] | None = None
    raw: dict[str, tuple[int, list[str]]] = {}
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if header is None:
            header = cells
            if len(header) < 2:
                raise NhlError(
                    f"{path}: the header needs a class column and at least one level "
                    f"column (class,parent,...), got {','.join(header)!r}"
                )
            continue
        if len(cells) > len(header):
            problems.append(f"line {lineno}: {len(cells)} cells but the header has {len(header)}")
            continue
        levels = cells[1:] + [""] * (len(header) - len(cells))
        filled = [c for c in levels if c]
        if levels[: len(filled)] != filled:
            problems.append(f"line {lineno}: an empty level is followed by a filled one")
            continue
        try:
            refs = resolve_token(cells[0])
        except NhlError as e:
            problems.append(f"line {lineno}: {e}")
            continue
        wnid = refs[0].wnid
        if wnid in raw:
            problems.append(
                f"line {lineno}: class {wnid} ({refs[0].name}) is already on line {raw[wnid][0]}"
            )
            continue
        raw[wnid] = (lineno, filled[::-1])  # the row goes upwards; paths go top-down
    if problems:
        raise NhlError(f"{path}: {len(problems)} problem(s)", problems)
    if header is None or not raw:
        raise NhlError(f"{path}: the table has no rows")
    # a group is its path of cells; its id is its text unless that text names several groups
    prefixes: dict[str, set[tuple[str, ...]]] = {}
    for _, cells in raw.values():
        for k in range(len(cells)):
            prefixes.setdefault(cells[k], set()).add(tuple(cells[: k + 1]))
    paths: dict[str, Ancestors] = {}
    for wnid, (_, cells) in raw.items():
        anc = []
        for k, cell in enumerate(cells):
            node_id = cell if len(prefixes[cell]) == 1 else "/".join(cells[: k + 1])
            anc.append((node_id, cell))
        paths[wnid] = tuple(anc)
    return Table("csv", path.name, paths, len(header))


def _csv_rows(text: str, delim: str, path: Path) -> list[list[str]]:
    """The rows of a CSV/TSV text; an unclosed quote is named by the line where it opens."""
    reader = csv.reader(io.StringIO(text), delimiter=delim, strict=True)
    rows: list[list[str]] = []
    start = 1
    try:
        for row in reader:
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as e:
        what = "an unclosed quote" if "end of data" in str(e) or "EOF" in str(e) else str(e)
        raise NhlError(
            f'{path}: line {start}: {what} (a cell that starts with " must end with "; '
            'write "" for a quote inside a cell)'
        ) from None
    return rows


# --------------------------------------------------------------------------- BREEDS folder
def read_breeds(folder: Path) -> Table:
    """A BREEDS-style hierarchy folder: `parent child` edges and `id<TAB>name` node names."""
    missing = [f for f in BREEDS_FILES if not (folder / f).is_file()]
    if missing:
        raise NhlError(f"{folder} is not a BREEDS hierarchy folder: {', '.join(missing)} missing")
    register_input(folder)
    parent: dict[str, str] = {}
    problems: list[str] = []
    edges = read_text(folder / "class_hierarchy.txt").splitlines()
    for lineno, line in enumerate(edges, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            problems.append(f"class_hierarchy.txt line {lineno}: expected 'parent child'")
            continue
        parent.setdefault(parts[1], parts[0])  # several parents: the first listed is kept
    names: dict[str, str] = {}
    for line in read_text(folder / "node_names.txt").splitlines():
        if "\t" in line:
            node, name = line.split("\t", 1)
            names[node.strip()] = name.strip()
    info = folder / "dataset_class_info.json"
    if info.is_file():  # optional here: class names come from the class set
        try:
            read_json(info)
        except NhlError as e:
            problems.append(str(e))
    if problems:
        raise NhlError(f"{folder}: {len(problems)} problem(s)", problems)
    paths: dict[str, Ancestors] = {}
    for node in sorted(parent):
        chain: list[str] = []
        cur = parent.get(node)
        while cur is not None:
            if cur in chain or cur == node:
                raise NhlError(f"{folder}: class_hierarchy.txt has a cycle through '{cur}'")
            chain.append(cur)
            cur = parent.get(cur)
        chain.pop()  # the top node (entity) is the implicit root
        paths[node] = tuple((a, _first_name(names.get(a, a))) for a in reversed(chain))
    return Table("breeds", folder.name, paths, None)


def _first_name(text: str) -> str:
    """BREEDS names are synonym lists ("animal, animate being, beast"): keep the first."""
    return text.split(",")[0].strip() or text


# --------------------------------------------------------------------------- the tree
def load_table(spec: str | Path) -> Table:
    """The built-in table by name, a BREEDS folder or a CSV/TSV file."""
    text = str(spec)
    if text in BUILTIN_TABLES:
        return superclass_table()
    path = Path(text)
    if path.is_dir():
        return read_breeds(path)
    if path.is_file():
        return read_csv_table(path)
    raise NhlError(
        f"'{text}' is neither a built-in table ({', '.join(BUILTIN_TABLES)}) "
        "nor a CSV/TSV file or BREEDS folder"
    )


def build_table_tree(
    classes: ClassSet,
    table: str | Path = SUPERCLASS,
    levels: int | None = None,
    groups: Sequence[int] | None = None,
    allow_missing: bool = False,
    date: str | None = TODAY,
    notes: list[str] | None = None,
) -> Tree:
    """The tree a table gives a class set (`notes` receives which classes were missing).

    Exact tables (superclass, CSV) fix the number of levels (columns + 1): `levels` may be omitted
    or must equal it, and `groups` does not apply. A BREEDS folder is levelled (default 3 levels).
    """
    if len(classes) == 0:
        raise NhlError("the class set is empty")
    tab = load_table(table)
    missing = [c for c in classes.classes if c.wnid not in tab.paths]
    if missing and not allow_missing:
        shown = ", ".join(f"{c.wnid} ({c.name})" for c in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise NhlError(
            f"{len(missing)} class(es) are not in the table {tab.name}: {shown}{more} "
            "(--allow-missing puts them in a group of their own)"
        )
    if missing and notes is not None:
        shown = ", ".join(f"{c.name} ({c.wnid})" for c in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        notes.append(
            f"{len(missing)} class(es) are not in the table and went to the group "
            f"'{MISSING_GROUP[1]}': {shown}{more}"
        )
    paths = [
        ClassPath(c.wnid, c.name, tab.paths.get(c.wnid, (MISSING_GROUP,))) for c in classes.classes
    ]
    params: dict = {
        "classes": classes.name,
        "num_classes": len(classes),
        "table": tab.name,
        "table_kind": tab.kind,
    }
    if tab.levels is not None:
        if groups is not None:
            raise NhlError(f"--groups does not apply to the table {tab.name}: it fixes every group")
        if levels is not None and levels != tab.levels:
            raise NhlError(
                f"the table {tab.name} gives trees of {tab.levels} levels, "
                f"not {levels} (leave out --levels)"
            )
        params.update(
            levels=tab.levels, allow_missing=allow_missing, missing=[c.wnid for c in missing]
        )
        return exact_tree(paths, tab.levels, provenance("superclass", params, date=date))
    n = 3 if levels is None else levels
    check_levels_and_groups(n, groups, len(classes))
    targets = list(groups) if groups is not None else default_targets(len(classes), n)
    params.update(
        levels=n,
        groups=list(groups) if groups is not None else None,
        targets=targets,
        allow_missing=allow_missing,
        missing=[c.wnid for c in missing],
    )
    return level_tree(paths, n, targets, provenance("superclass", params, date=date))


# ------------------------------------------------------------------------------ the source
@dataclass
class TableOptions:
    table: str | None = setting(
        None,
        "imagenet-superclass (default), a CSV/TSV file (class,parent,grandparent,...: "
        "tabby,cat,pet puts pet on top) or a BREEDS folder.",
    )
    allow_missing: bool = setting(False, "Put classes the table lacks in a group of their own.")


def _table(
    classes: ClassSet, levels: int | None, groups: list[int] | None, opts: TableOptions,
    ctx: SourceContext,
) -> Tree:  # fmt: skip
    return build_table_tree(
        classes,
        opts.table or SUPERCLASS,
        levels=levels,
        groups=groups,
        allow_missing=opts.allow_missing,
        date=ctx.date,
        notes=ctx.notes,
    )


register(TreeSource("superclass", "a superclass table (CSV/TSV, BREEDS)", TableOptions, _table))
