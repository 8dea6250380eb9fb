"""The files of one evaluation: `runs/eval/NAME/` with report.json, confusion.csv, confusion.png.

The directory is numbered like training runs (`exp`, `exp-2`, ...; `nhlcli.rundirs`) and
created only once the evaluation has finished; each file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nhlcli.evaluation.confusion_files import (
    MAX_PICTURE_CLASSES,
    confusion_csv,
    confusion_figure,
    figure_png,
    group_matrix,
)
from nhlcli.fileio import write_bytes_atomic, write_text_atomic
from nhlcli.hierarchy.tree import Tree
from nhlcli.hierarchy_metrics import ancestors_by_level, tree_order
from nhlcli.rundirs import numbered_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_JSON = "report.json"
CONFUSION_CSV = "confusion.csv"
CONFUSION_PNG = "confusion.png"


def confusion_picture(
    tree: Tree, matrix: torch.Tensor, class_ids: Sequence[str], title: str = ""
) -> bytes:
    """confusion.png of a matrix over class_ids (any order; drawn in tree order, by group when
    there are more than `MAX_PICTURE_CLASSES` classes)."""
    return figure_png(confusion_picture_figure(tree, matrix, class_ids, title))


def confusion_picture_figure(
    tree: Tree, matrix: torch.Tensor, class_ids: Sequence[str], title: str = ""
) -> Figure:
    """The Figure behind `confusion_picture`."""
    order = tree_order(tree, class_ids)
    m = matrix[order][:, order]
    ids = [class_ids[i] for i in order]
    anc = ancestors_by_level(tree, ids)
    if len(ids) <= MAX_PICTURE_CLASSES:
        names = [tree.node(c).name for c in ids]
        parent = anc[-2] if len(anc) >= 3 else None
        return confusion_figure(m, names, anc[0], parent, title, group_names=_names(tree, anc[0]))
    level = next(
        (d for d in range(len(anc) - 2, -1, -1) if len(set(anc[d])) <= MAX_PICTURE_CLASSES), 0
    )
    grouped, groups = group_matrix(m, anc[level])
    top = [tree.path(g)[0] for g in groups]
    names = [tree.node(g).name for g in groups]
    note = f"{len(ids)} classes by their {len(groups)} level-{level + 1} groups\n"
    note += "cells: % of the true group's images"
    heading = f"{title}\n{note}" if title else note
    return confusion_figure(
        grouped, names, top, None, heading, shares_in_cells=True, group_names=_names(tree, top)
    )


def _names(tree: Tree, node_ids: Sequence[str]) -> dict[str, str]:
    return {n: tree.node(n).name for n in set(node_ids)}


def write_eval_dir(
    project: str | Path,
    name: str,
    report: dict[str, Any],
    tree: Tree,
    matrix: torch.Tensor,
    class_ids: Sequence[str],
    exist_ok: bool = False,
) -> Path:
    """Create `project/NAME` (numbered) and write the report and the confusion files into it."""
    order = tree_order(tree, class_ids)
    ids = [class_ids[i] for i in order]
    names = [tree.node(c).name for c in ids]
    title = f"{report.get('arch', '')} on {len(ids)} classes: top-1 {report.get('top1', 0):.1f}%"
    picture = confusion_picture(tree, matrix, class_ids, title)
    out = numbered_dir(project, name, exist_ok)
    write_text_atomic(out / REPORT_JSON, json.dumps({**report, "output_dir": str(out)}, indent=1))
    write_text_atomic(out / CONFUSION_CSV, confusion_csv(matrix[order][:, order], ids, names))
    write_bytes_atomic(out / CONFUSION_PNG, picture)
    return out
