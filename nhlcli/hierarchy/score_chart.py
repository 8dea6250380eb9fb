"""A picture of `nhl tree compare`: one panel per score, levels on the x axis, one bar per tree."""

from __future__ import annotations

import io
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.fileio import write_bytes_atomic
from nhlcli.hierarchy.tree_scores import SCORE_KEYS, TreeComparison

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
TITLES = {
    "balance": "group-size balance",
    "wordnet": "agreement with WordNet",
    "confusion_share": "confusions inside groups",
    "confusion_gain": "confusion gain over chance",
    "silhouette": "feature silhouette",
    "group_top1": "group top-1 (%)",
}


def chart_bytes(comparison: TreeComparison, fmt: str) -> bytes:
    import matplotlib
    from matplotlib.figure import Figure

    keys = [
        k for k in SCORE_KEYS
        if any(getattr(r, k) is not None for t in comparison.trees for r in t.rows)
    ]  # fmt: skip
    cols = min(3, max(1, len(keys)))
    rows = max(1, -(-len(keys) // cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows + 0.6))
    n = len(comparison.trees)
    width = 0.8 / max(1, n)
    for p, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, p + 1)
        for i, t in enumerate(comparison.trees):
            xs = [
                r.level + (i - (n - 1) / 2) * width for r in t.rows if getattr(r, key) is not None
            ]
            ys = [getattr(r, key) for r in t.rows if getattr(r, key) is not None]
            ax.bar(xs, ys, width=width, label=t.name)
        ax.set_title(TITLES[key], fontsize=9)
        ax.set_xlabel("level", fontsize=8)
        levels = sorted({r.level for t in comparison.trees for r in t.rows})
        ax.set_xticks(levels)
        ax.tick_params(labelsize=7)
    if keys:
        fig.axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"tree compare (group score: {comparison.group_score})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    if fmt == "pdf":
        metadata = {"CreationDate": None}
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nhl"}):
        fig.savefig(buf, format=fmt, dpi=120, metadata=metadata)
    return buf.getvalue()


def draw_comparison(comparison: TreeComparison, path: str | Path) -> Path:
    """Write the chart to `path` (.png, .svg or .pdf), atomically."""
    out = Path(path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise NhlError(f"-o {out}: the picture must end in {', '.join(FORMATS)}")
    data = chart_bytes(comparison, fmt)
    try:
        write_bytes_atomic(out, data)
    except OSError as e:
        raise NhlError(f"cannot write {out}: {e.strerror or e}") from None
    return out
