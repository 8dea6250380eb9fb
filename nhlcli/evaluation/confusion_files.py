"""The confusion matrix as files: `confusion.csv` (counts) and `confusion.png` (a picture).

Both list the classes in depth-first tree order, so the classes of one group sit together. The
picture shows each row normalised (the share of a true class's images given to each prediction)
and draws the group boundaries: thick lines between top-level groups, thin ones between the
groups one level above the classes. Up to `MAX_PICTURE_CLASSES` classes are drawn one by one;
with more (ImageNet's 1000), the matrix is summarised by group: the deepest level that has at
most that many nodes, with its counts summed per (true group, predicted group).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import torch

from nhlcli.csvsafe import csv_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_PICTURE_CLASSES = 100
GROUP_COLOR = "crimson"


def confusion_csv(matrix: torch.Tensor, class_ids: Sequence[str], names: Sequence[str]) -> str:
    """Rows = true class, columns = predicted class, both in the order given; counts."""
    rows = (
        [cid, name, *(int(v) for v in matrix[i].tolist())]
        for i, (cid, name) in enumerate(zip(class_ids, names, strict=True))
    )
    return csv_text(["true_id", "true_name", *class_ids], rows)


def group_matrix(matrix: torch.Tensor, groups: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
    """Counts summed per (true group, predicted group); groups[i] is class i's group, the groups
    in order of first appearance.

    >>> m = torch.tensor([[1, 2, 0], [0, 3, 1], [4, 0, 5]])
    >>> group_matrix(m, ["A", "A", "B"])[0].tolist()
    [[6, 1], [4, 5]]
    """
    names = list(dict.fromkeys(groups))
    pos = {g: i for i, g in enumerate(names)}
    onehot = torch.zeros(len(groups), len(names), dtype=torch.float64)
    for i, g in enumerate(groups):
        onehot[i, pos[g]] = 1.0
    summed = onehot.T @ matrix.double() @ onehot
    return summed.round().long(), names


def _boundaries(groups: Sequence[str]) -> list[float]:
    """Positions (between cells) where the group changes."""
    return [i - 0.5 for i in range(1, len(groups)) if groups[i] != groups[i - 1]]


def group_spans(groups: Sequence[str]) -> list[tuple[str, int, int]]:
    """(group, first cell, last cell) of each run of equal groups, in order.

    >>> group_spans(["A", "A", "B", "C", "C", "C"])
    [('A', 0, 1), ('B', 2, 2), ('C', 3, 5)]
    """
    spans: list[tuple[str, int, int]] = []
    for i, g in enumerate(groups):
        if spans and spans[-1][0] == g:
            spans[-1] = (g, spans[-1][1], i)
        else:
            spans.append((g, i, i))
    return spans


def confusion_figure(
    matrix: torch.Tensor,
    labels: Sequence[str],
    top_groups: Sequence[str],
    parent_groups: Sequence[str] | None = None,
    title: str = "",
    shares_in_cells: bool = False,
    group_names: Mapping[str, str] | None = None,
) -> Figure:
    """A row-normalised confusion matrix picture (already in tree order): group lines drawn (thick
    between the top-level groups, thin between the groups one level above the classes) and the
    top-level groups named along the top and the right side (`group_names`: id -> name).

    Up to 30 rows, each cell shows its count (or, with `shares_in_cells`, its row share in %).
    A matplotlib Figure without pyplot (no global state); `figure_png` turns it into a file."""
    from matplotlib.figure import Figure

    k = matrix.shape[0]
    rows = matrix.double()
    shares = (rows / rows.sum(1, keepdim=True).clamp(min=1)).numpy()
    side = min(22.0, 3.5 + 0.16 * k)
    font = max(3.0, min(9.0, 0.55 * side * 54.0 / max(k, 1)))  # ~55% of a cell's height in pt
    fig = Figure(figsize=(side + 2.0, side + 0.4), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(labels, rotation=90, fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:  # counts are readable in the cells
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    color = "white" if shares[i, j] > 0.5 else "black"
                    count = int(matrix[i, j])
                    text = f"{100 * shares[i, j]:.0f}" if shares_in_cells else str(count)
                    ax.text(j, i, text, ha="center", va="center", fontsize=font, color=color)
    if parent_groups is not None:
        for b in _boundaries(parent_groups):
            ax.axhline(b, color="0.55", linewidth=0.6)
            ax.axvline(b, color="0.55", linewidth=0.6)
    for b in _boundaries(top_groups):
        ax.axhline(b, color=GROUP_COLOR, linewidth=1.4)
        ax.axvline(b, color=GROUP_COLOR, linewidth=1.4)
    spans = group_spans(top_groups)
    if len(spans) < k:  # name the groups (unless every group is one cell: the labels name them)
        _name_groups(fig, ax, spans, group_names or {}, min(10.0, 1.2 * font))
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="share of the true class's images")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _name_groups(
    fig: Figure,
    ax: Axes,
    spans: list[tuple[str, int, int]],
    names: Mapping[str, str],
    font: float,
) -> None:
    """The top-level groups' names along the top (columns) and the right side (rows), each at the
    middle of its group; the top names turn vertical when side by side they would come closer than
    a letter's width."""
    centres = [(a + b) / 2 for _, a, b in spans]
    text = [names.get(g, g) for g, _, _ in spans]
    style: dict[str, Any] = {"fontsize": font, "color": GROUP_COLOR, "fontweight": "bold"}
    top = ax.secondary_xaxis("top")
    top.set_xticks(centres, text, **style)
    top.tick_params(length=0)
    right = ax.secondary_yaxis("right")
    right.set_yticks(centres, text, **style)
    right.tick_params(length=0)
    for side in (top, right):
        side.set_gid("group-names")
    fig.draw_without_rendering()
    boxes = [t.get_window_extent() for t in top.get_xticklabels()]
    gap = font  # points at 72 dpi: about a letter's width between two names
    if any(a.x1 + gap * fig.dpi / 72 > b.x0 for a, b in pairwise(boxes)):
        top.set_xticks(centres, text, rotation=90, **style)


def figure_png(fig: Figure) -> bytes:
    """The picture as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
