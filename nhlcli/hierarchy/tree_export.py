"""Exporting a tree: GraphML, DOT, node-link JSON (networkx) and pictures; outlines for display.

All graph formats hold the same graph as `Tree.to_networkx()`: a synthetic node `root`, edges
parent → child, node attributes `name`, `kind` (root/group/class), `level` and, for classes,
`index` (logit index). DOT is written here (no pydot or graphviz needed); pictures come from
`drawing.draw_tree`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.fileio import write_bytes_atomic
from nhlcli.hierarchy.tree import Tree

GRAPH_FORMATS = ("graphml", "dot", "json")
PICTURE_FORMATS = ("png", "svg")
FORMATS = GRAPH_FORMATS + PICTURE_FORMATS


def format_from_suffix(path: Path) -> str | None:
    suffix = path.suffix.lower().lstrip(".")
    return {"gv": "dot", "xml": "graphml"}.get(suffix, suffix) if suffix else None


def to_graphml(tree: Tree) -> bytes:
    import networkx as nx

    g = tree.to_networkx()
    g.graph["format"] = "nhl-tree/1"
    g.graph["provenance"] = json.dumps(tree.provenance, ensure_ascii=False)
    buf = io.BytesIO()
    nx.write_graphml(g, buf, encoding="utf-8")
    return buf.getvalue()


def to_node_link_json(tree: Tree) -> bytes:
    import networkx as nx

    g = tree.to_networkx()
    g.graph["provenance"] = tree.provenance
    data = nx.node_link_data(g, edges="links")
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(tree: Tree) -> bytes:
    """Graphviz DOT, left to right: groups as boxes, classes as ellipses with their logit index."""
    lines = [
        "digraph nhl_tree {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  root [label="root", shape=point];',
    ]
    for n in tree.nodes:
        lines.append(
            f"  {_dot_quote(n.id)} [label={_dot_quote(n.name)}, shape=box, "
            f"level={tree.depth(n.id)}];"
        )
    for i, c in enumerate(tree.classes):
        lines.append(
            f"  {_dot_quote(c.id)} [label={_dot_quote(f'{i}: {c.name}')}, shape=ellipse, "
            f"level={tree.depth(c.id)}, index={i}];"
        )
    for n in (*tree.nodes, *tree.classes):
        lines.append(f"  {_dot_quote(n.parent) if n.parent else 'root'} -> {_dot_quote(n.id)};")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def export_bytes(tree: Tree, fmt: str) -> bytes:
    if fmt == "graphml":
        return to_graphml(tree)
    if fmt == "dot":
        return to_dot(tree)
    if fmt == "json":
        return to_node_link_json(tree)
    raise NhlError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")


def export_tree(tree: Tree, out: str | Path, fmt: str | None = None) -> str:
    """Write the tree to `out` in `fmt` (default: from the suffix); returns the format used."""
    path = Path(out)
    chosen = fmt or format_from_suffix(path)
    if chosen not in FORMATS:
        raise NhlError(
            f"cannot tell the export format of {path.name}: give --format ({', '.join(FORMATS)})"
        )
    if path.is_dir():
        raise NhlError(f"{path} is a folder; give a file name")
    if chosen in PICTURE_FORMATS:
        from nhlcli.hierarchy.drawing import draw_tree

        draw_tree(tree, path, fmt=chosen)
        return chosen
    data = export_bytes(tree, chosen)
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        raise NhlError(f"cannot write {path}: {e.strerror or e}") from None
    return chosen


# --------------------------------------------------------------------------- outlines
def outline(tree: Tree, depth: int | None = None) -> list[dict[str, Any]]:
    """The tree as nested dicts down to `depth` (None: all); deeper parts are counted, not listed.

    Each entry: id, name, kind (group/class), classes (number below), and `children` (when opened)
    or nothing; classes carry `index` and their `attrs`.
    """
    sizes: dict[str, int] = {}
    for c in tree.classes:
        for a in tree.path(c.id)[:-1]:
            sizes[a] = sizes.get(a, 0) + 1

    def entry(node_id: str) -> dict[str, Any]:
        n = tree.node(node_id)
        if tree.is_class(node_id):
            out: dict[str, Any] = {
                "id": n.id,
                "name": n.name,
                "kind": "class",
                "index": tree.class_index(node_id),
            }
            if n.attrs:
                out["attrs"] = n.attrs
            return out
        out = {"id": n.id, "name": n.name, "kind": "group", "classes": sizes.get(node_id, 0)}
        if depth is None or tree.depth(node_id) < depth:
            out["children"] = [entry(k) for k in tree.children(node_id)]
        return out

    return [entry(k) for k in tree.children(None)]


def tree_summary(tree: Tree) -> dict[str, Any]:
    """Stats plus the facts `tree show` prints (provenance, classes with attrs)."""
    stats = tree.stats()
    stats["class_attrs"] = {c.id: c.attrs for c in tree.classes if c.attrs}
    return stats
