"""Pictures of a category tree, optionally with an expert's paths highlighted (the paper's Fig. 4).

The picture is drawn left to right: the trunk (root) on the left, one column per level, the classes
on the right, each class on its own row with a readable horizontal label. Highlighted classes and
every node on their paths are drawn in red with thick edges, the rest in grey.

Large trees are summarised so the picture stays readable (at most `max_rows` rows, 120 by default):

1. a tree with at most `max_rows` classes is drawn whole;
2. otherwise only the groups on a highlighted path are opened; the other children of an opened
   group are drawn as collapsed rows ("name (n classes)"), or, when there are more than
   `SIBLINGS_SHOWN` of them, as one row "k other groups (n classes)";
3. if that is still too many rows (many highlighted classes), the opened part is cut at a shallower
   level, and the cut groups become rows "name (k of n selected)";
4. with nothing highlighted, the top levels of the whole tree are drawn, cut at the deepest level
   that fits, each cut group a row "name (n classes)".

Formats: PNG and SVG through matplotlib (no pyplot, so no global backend state), HTML = the SVG
inside a small standalone page that also lists the highlighted classes. Files are written
atomically.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.fileio import write_bytes_atomic
from nhlcli.hierarchy.tree import Tree

FORMATS = ("png", "svg", "html")
MAX_ROWS = 120
SIBLINGS_SHOWN = 4
ROOT = "__root__"
HIGHLIGHT = "#d62728"
MUTED = "#9a9a9a"
TEXT = "#333333"
MARGIN = 0.15  # inches of white around everything drawn


@dataclass(frozen=True)
class DrawnNode:
    """One node of the picture: a row (a class or a collapsed entry) or a group, which sits at the
    middle of its children."""

    key: str
    label: str
    depth: int  # 0 = the trunk (root)
    parent: str | None
    kind: str  # root | group | class | collapsed
    highlighted: bool
    classes: int  # classes under it
    selected: int  # highlighted classes under it
    y: float


@dataclass(frozen=True)
class TreeLayout:
    nodes: tuple[DrawnNode, ...]
    rows: int
    depth: int
    summarised: bool
    cut_depth: int | None  # groups at this depth were collapsed although on a highlighted path

    def node(self, key: str) -> DrawnNode:
        for n in self.nodes:
            if n.key == key:
                return n
        raise KeyError(key)


def picture_format(path: Path, fmt: str | None = None) -> str:
    """The picture format from `fmt` or the file suffix (png, svg, html)."""
    chosen = (fmt or path.suffix.lstrip(".")).lower()
    if chosen == "htm":
        chosen = "html"
    if chosen not in FORMATS:
        raise NhlError(
            f"cannot tell the picture format of '{path}': use a .png, .svg or .html file name"
        )
    return chosen


def layout_tree(tree: Tree, highlight: Iterable[str] = (), max_rows: int = MAX_ROWS) -> TreeLayout:
    """Where every drawn node goes (see the module docstring for how large trees are summarised)."""
    selected = list(dict.fromkeys(highlight))
    unknown = [c for c in selected if not tree.is_class(c)]
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise NhlError(f"highlighted classes not in the tree: {shown}")
    counter = _Counter(tree, set(selected))
    if tree.num_classes <= max_rows:
        return _Builder(tree, counter, open_all=True, cut=None).build()
    open_all = not selected  # nothing highlighted: show the top of the whole tree
    depth = max(tree.depth(c) for c in tree.class_ids)
    cut: int | None = depth - 1 if open_all else None
    layout = _Builder(tree, counter, open_all=open_all, cut=cut).build()
    while layout.rows > max_rows and (cut is None or cut > 1):
        cut = depth - 1 if cut is None else cut - 1
        layout = _Builder(tree, counter, open_all=open_all, cut=cut).build()
    return layout


class _Counter:
    def __init__(self, tree: Tree, selected: set[str]) -> None:
        self.selected = selected
        self.total: dict[str | None, int] = {}
        self.chosen: dict[str | None, int] = {}
        for cid in tree.class_ids:
            hit = cid in selected
            for node in [None, *tree.path(cid)]:
                self.total[node] = self.total.get(node, 0) + 1
                self.chosen[node] = self.chosen.get(node, 0) + int(hit)


class _Builder:
    def __init__(self, tree: Tree, counter: _Counter, open_all: bool, cut: int | None) -> None:
        self.tree = tree
        self.c = counter
        self.open_all = open_all
        self.cut = cut
        self.rows: list[
            tuple[str, str, int, str | None, str]
        ] = []  # key, label, depth, parent, kind
        self.groups: list[tuple[str, str, int, str | None, list[str]]] = []
        self.summarised = False
        self._bucket_counts: dict[str, tuple[int, int]] = {}

    def build(self) -> TreeLayout:
        children = self._open(None, ROOT, 0)
        self.groups.append((ROOT, "trunk", 0, None, children))
        y: dict[str, float] = {}
        nodes: list[DrawnNode] = []
        for i, (key, label, depth, parent, kind) in enumerate(self.rows):
            y[key] = float(i)
            tree_id = None if key.startswith("__") else key
            total, chosen = self._counts(key, tree_id)
            nodes.append(
                DrawnNode(key, label, depth, parent, kind, chosen > 0, total, chosen, y[key])
            )
        for key, label, depth, parent, kids in self.groups:  # innermost groups were added first
            y[key] = (y[kids[0]] + y[kids[-1]]) / 2 if kids else 0.0
            node_id = None if key == ROOT else key
            total, chosen = self.c.total[node_id], self.c.chosen[node_id]
            kind = "root" if key == ROOT else "group"
            nodes.append(
                DrawnNode(key, label, depth, parent, kind, chosen > 0, total, chosen, y[key])
            )
        depth = max((n.depth for n in nodes), default=0)
        return TreeLayout(tuple(nodes), len(self.rows), depth, self.summarised, self.cut)

    def _counts(self, key: str, tree_id: str | None) -> tuple[int, int]:
        if tree_id is None:  # an "others" bucket: counts are in the label's bookkeeping
            return self._bucket_counts[key]
        return self.c.total[tree_id], self.c.chosen[tree_id]

    def _open(self, node_id: str | None, key: str, depth: int) -> list[str]:
        """Lay out the children of an opened node; returns the keys of the drawn children."""
        drawn: list[str] = []
        closed: list[str] = []
        for child in self.tree.children(node_id):
            node = self.tree.node(child)
            d = depth + 1
            if self.tree.is_class(child):
                if self.open_all or child in self.c.selected:
                    self.rows.append((child, node.name, d, key, "class"))
                    drawn.append(child)
                else:
                    closed.append(child)
                continue
            on_path = self.c.chosen[child] > 0
            if self.cut is not None and d >= self.cut and (self.open_all or on_path):
                n, k = self.c.total[child], self.c.chosen[child]
                label = (
                    f"{node.name} ({k} of {n} selected)" if k else f"{node.name} ({_classes(n)})"
                )
                self.summarised = True
                self.rows.append((child, label, d, key, "collapsed"))
                drawn.append(child)
            elif self.open_all or on_path:
                kids = self._open(child, child, d)
                self.groups.append((child, node.name, d, key, kids))
                drawn.append(child)
            else:
                closed.append(child)
        if closed:
            self.summarised = True
            drawn += self._closed_rows(closed, key, depth + 1)
        return drawn

    def _closed_rows(self, closed: list[str], parent_key: str, depth: int) -> list[str]:
        if len(closed) <= SIBLINGS_SHOWN:
            out = []
            for cid in closed:
                n = self.c.total[cid]
                label = self.tree.node(cid).name
                if not self.tree.is_class(cid):
                    label += f" ({_classes(n)})"
                self.rows.append((cid, label, depth, parent_key, "collapsed"))
                out.append(cid)
            return out
        n_classes = sum(self.c.total[cid] for cid in closed)
        groups = sum(1 for cid in closed if not self.tree.is_class(cid))
        what = "groups" if groups == len(closed) else "classes" if groups == 0 else "nodes"
        key = f"__others__{parent_key}"
        label = f"{len(closed)} other {what} ({_classes(n_classes)})"
        self.rows.append((key, label, depth, parent_key, "collapsed"))
        self._bucket_counts[key] = (n_classes, 0)
        return [key]


def _classes(n: int) -> str:
    return f"{n} class" if n == 1 else f"{n} classes"


# ------------------------------------------------------------------------------------------ render
def render_tree(
    tree: Tree,
    fmt: str,
    highlight: Iterable[str] = (),
    title: str | None = None,
    max_rows: int = MAX_ROWS,
) -> bytes:
    """The picture as bytes in `fmt` (png, svg or html)."""
    if fmt not in FORMATS:
        raise NhlError(f"unknown picture format '{fmt}' (choose from {', '.join(FORMATS)})")
    selected = list(dict.fromkeys(highlight))
    layout = layout_tree(tree, selected, max_rows)
    heading = title or _default_title(tree, selected, layout)
    if fmt == "html":
        svg = _matplotlib_bytes(layout, "svg", heading).decode("utf-8")
        return _html_page(tree, selected, svg, heading).encode("utf-8")
    return _matplotlib_bytes(layout, fmt, heading)


def draw_tree(
    tree: Tree,
    path: str | Path,
    highlight: Iterable[str] = (),
    fmt: str | None = None,
    title: str | None = None,
    max_rows: int = MAX_ROWS,
) -> Path:
    """Write the picture to `path` (format from `fmt` or the suffix), atomically."""
    out = Path(path)
    return write_picture(
        out, render_tree(tree, picture_format(out, fmt), highlight, title, max_rows)
    )


def write_picture(path: Path, data: bytes) -> Path:
    """Write rendered picture bytes atomically (NhlError if the file cannot be written)."""
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        raise NhlError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _default_title(tree: Tree, selected: list[str], layout: TreeLayout) -> str:
    per_level = " / ".join(map(str, tree.stats()["nodes_per_level"]))
    text = f"{tree.num_classes} classes; nodes per level: {per_level}"
    if selected:
        text = f"expert: {len(selected)} of {tree.num_classes} classes (red paths)"
        if layout.summarised:
            text += "; groups off the red paths collapsed"
    elif layout.summarised:
        text += f"; summarised at level {layout.cut_depth}"
    return text


def _matplotlib_bytes(layout: TreeLayout, fmt: str, title: str) -> bytes:
    import matplotlib
    from matplotlib.figure import Figure

    label_len = max((len(n.label) for n in layout.nodes), default=10)
    width = 1.2 + 1.9 * max(layout.depth, 1) + 0.075 * min(label_len, 60)
    height = max(2.5, 0.21 * layout.rows + 1.0)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.94 if layout.rows > 8 else 0.88))
    ax.set_axis_off()
    ax.set_title(title, fontsize=10, color=TEXT, loc="left")
    by_key = {n.key: n for n in layout.nodes}
    children: dict[str, list[DrawnNode]] = {}
    for n in layout.nodes:
        if n.parent is not None:
            children.setdefault(n.parent, []).append(n)
    for lit in (False, True):  # red paths on top
        for n in layout.nodes:
            if n.parent is None or n.highlighted != lit:
                continue
            p = by_key[n.parent]
            xm = p.depth + 0.5
            ax.plot(
                [p.depth, xm, xm, n.depth],
                [p.y, p.y, n.y, n.y],
                color=HIGHLIGHT if lit else MUTED,
                linewidth=2.0 if lit else 0.7,
                solid_joinstyle="miter",
                zorder=3 if lit else 1,
            )
    for n in layout.nodes:
        color = HIGHLIGHT if n.highlighted else MUTED
        marker = {"collapsed": ">", "root": "s"}.get(n.kind, "o")
        ax.plot(
            [n.depth],
            [n.y],
            marker=marker,
            markersize=4 if n.kind != "root" else 6,
            color=color,
            zorder=4,
        )
        if n.kind in ("class", "collapsed"):
            ax.text(
                n.depth + 0.08,
                n.y,
                n.label,
                va="center",
                ha="left",
                fontsize=7,
                color=HIGHLIGHT if n.highlighted else TEXT,
                fontweight="bold" if n.highlighted else "normal",
                fontstyle="italic" if n.kind == "collapsed" else "normal",
            )
        elif not _continues(n, children.get(n.key, [])):
            ax.text(
                n.depth,
                n.y - 0.35,
                n.label,
                va="bottom",
                ha="center",
                fontsize=6.5,
                color=HIGHLIGHT if n.highlighted else TEXT,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                zorder=5,
            )
    bottom = layout.rows - 0.5 if layout.rows else 0.5
    for d in range(1, layout.depth + 1):  # which level of the network each column is
        ax.text(d, bottom + 0.2, f"level {d}", ha="center", va="top", fontsize=6.5, color=MUTED)
    ax.set_xlim(-0.3, layout.depth + 0.1 + 0.075 * min(label_len, 60) / 1.9)
    ax.set_ylim(bottom + 0.7, -1.2)
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    # SVG keeps its text as text (searchable, smaller) and fixed ids (reproducible files)
    # the canvas is cut to what is drawn, plus a margin: the title and the longest labels are
    # always inside it, however small or large the tree
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nhl"}):
        fig.savefig(
            buf, format=fmt, dpi=150, metadata=metadata, bbox_inches="tight", pad_inches=MARGIN
        )
    return buf.getvalue()


def _continues(group: DrawnNode, children: list[DrawnNode]) -> bool:
    """A group that only continues its one child to the next level (`<class>@k`, named after
    the class) is drawn unlabelled: the child's label already names it."""
    return len(children) == 1 and children[0].label == group.label


def _html_page(tree: Tree, selected: list[str], svg: str, title: str) -> str:
    start = svg.find("<svg")
    body_svg = svg[start:] if start >= 0 else svg
    items = "\n".join(
        f"<li><code>{html.escape(c)}</code> {html.escape(tree.node(c).name)}"
        f" <span class=path>{html.escape(' › '.join(tree.node(p).name for p in tree.path(c)[:-1]))}"
        "</span></li>"
        for c in selected
    )
    listing = (
        f"<h2>Highlighted classes ({len(selected)})</h2>\n<ol>\n{items}\n</ol>" if selected else ""
    )
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:1.5em;color:#333}"
        ".path{color:#888;font-size:90%}svg{max-width:100%;height:auto}</style>\n"
        f"</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"<p>{tree.num_classes} classes, {len(tree.nodes)} groups; drawn by nhl.</p>\n"
        f"{body_svg}\n{listing}\n</body>\n</html>\n"
    )
