"""`--source induced`: a tree learned from what a trained model sees and confuses.

Input is data, not a checkpoint: a `ClassEvidence` (`evidence.py`) that the caller computed from a
model and an image folder (`nhlcli.evaluation.embeddings.collect_evidence`; `nhl build-tree
--source induced --model CKPT --data DIR` does that). The build:

1. **Embedding.** One vector per class (`ClassEvidence.embedding`): `features` (the mean of the
   last features all classes share: the pooled input of the classifier of a shared-head model, the
   pooled trunk output of a per-class-head model; unit length), `weights` (the rows of a shared
   classifier; unit length) or `confusion` (the rows of the confusion matrix, each divided by its
   sum).
2. **Clustering.** scipy's agglomerative clustering (`scipy.cluster.hierarchy.linkage`, Euclidean
   distance), Ward (default) or average linkage: a binary tree over the classes.
3. **Levelling.** Every merge becomes an ancestor of its classes; the paths are levelled by
   `level_tree`, the rule every levelled source uses (`levelling.py`), to `levels` levels and the
   `groups` targets (default round(C^(k/N))).
4. **Names and ids.** Groups get ids `g<level>.<position>` in network order; a class continued to a
   lower level keeps `<class>@k`. Names: `group_names.py` (the lowest WordNet hypernym of the
   members when WordNet is installed and every class is a WordNet noun and the hypernym is not too
   general, else the members: "gas pump + 2 more"), or a chat model (`names="llm"`).

Deterministic: the same evidence and options give a byte-identical tree (scipy's linkage breaks
ties by cluster index; nothing depends on the clock or on dict order). Provenance records the model
and the sha256 of its weights file, the embedding, the linkage, the data folder and the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet
from nhlcli.hierarchy.evidence import EMBEDDINGS, ClassEvidence
from nhlcli.hierarchy.group_names import (
    central_order,
    members_name,
    unique_per_level,
    wordnet_namer,
)
from nhlcli.hierarchy.levelling import (
    TODAY,
    ClassPath,
    check_levels_and_groups,
    default_targets,
    level_tree,
    provenance,
)
from nhlcli.hierarchy.llm.session import BuildReport, ProgressFn
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.hierarchy.sources import DEFAULT_LEVELS, SourceContext, TreeSource, register
from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.setting_fields import setting

LINKAGES = ("ward", "average")
NAMINGS = ("auto", "wordnet", "central", "llm")
LEVELLING_RULE = "nhl-levelling/1"


@dataclass
class InducedOptions:
    evidence: ClassEvidence | None = None  # computed by the caller from a model (and images)
    embedding: str | None = setting(
        None,
        "How classes are compared: features and confusion need images (--data), weights a "
        "shared classifier [default: features with images, else weights].",
        choices=EMBEDDINGS,
    )
    linkage: str = setting("ward", "Agglomerative clustering linkage.", choices=LINKAGES)
    names: str = setting(
        "auto",
        "Group names: auto (WordNet, else central members), wordnet, central or llm (the "
        "--llm-* options).",
        choices=NAMINGS,
    )
    llm: LLMSettings | None = None  # the chat model for names="llm"

    def problems(self) -> list[str]:
        p = []
        if self.embedding is not None and self.embedding not in EMBEDDINGS:
            p.append(f"--embedding must be one of {', '.join(EMBEDDINGS)} (got {self.embedding})")
        if self.linkage not in LINKAGES:
            p.append(f"--linkage must be one of {', '.join(LINKAGES)} (got {self.linkage})")
        if self.names not in NAMINGS:
            p.append(f"--names must be one of {', '.join(NAMINGS)} (got {self.names})")
        return p


def merge_paths(vectors: np.ndarray, method: str) -> list[list[str]]:
    """For every row: the ids (`m<cluster>`) of the merges above it, top-down, root excluded."""
    from scipy.cluster.hierarchy import linkage

    k = vectors.shape[0]
    if k < 2:
        return [[] for _ in range(k)]
    z = linkage(vectors, method=method, metric="euclidean")
    parent: dict[int, int] = {}
    for i, row in enumerate(z):
        parent[int(row[0])] = parent[int(row[1])] = k + i
    root = 2 * k - 2
    paths = []
    for c in range(k):
        chain = []
        cur = parent.get(c)
        while cur is not None and cur != root:
            chain.append(f"m{cur}")
            cur = parent.get(cur)
        paths.append(chain[::-1])
    return paths


def build_induced_tree(
    classes: ClassSet,
    levels: int = DEFAULT_LEVELS,
    groups: Sequence[int] | None = None,
    options: InducedOptions | None = None,
    date: str | None = TODAY,
    notes: list[str] | None = None,
    progress: ProgressFn | None = None,
    report: BuildReport | None = None,
) -> Tree:
    """The induced tree of `classes` with exactly `levels` levels (rules: module docstring)."""
    opts = options or InducedOptions()
    if opts.problems():
        raise NhlError("bad options for --source induced", opts.problems())
    ev = opts.evidence
    if ev is None:
        raise NhlError(
            "--source induced needs a trained model: --model CKPT, with --data DIR for the "
            "features or confusion embedding"
        )
    if len(classes) == 0:
        raise NhlError("the class set is empty")
    if opts.embedding is None:  # features when the evidence has images, else the weights
        opts = replace(opts, embedding="features" if ev.features is not None else "weights")
    check_levels_and_groups(levels, groups, len(classes))
    ev.require(classes.wnids, [c.name for c in classes.classes])
    sub = ev.restrict(classes.wnids)
    vectors = sub.embedding(str(opts.embedding))
    targets = list(groups) if groups is not None else default_targets(len(classes), levels)
    chains = merge_paths(vectors, opts.linkage)
    paths = [
        ClassPath(c.wnid, c.name, tuple((m, m) for m in chain))
        for c, chain in zip(classes.classes, chains, strict=True)
    ]
    levelled = level_tree(paths, levels, targets)
    naming, named = _names(levelled, classes, vectors, opts, notes, progress, report)
    params = {
        "classes": classes.name,
        "num_classes": len(classes),
        "levels": levels,
        "groups": list(groups) if groups is not None else None,
        "targets": targets,
        "embedding": opts.embedding,
        "linkage": opts.linkage,
        "names": opts.names,
    }
    src = ev.source
    model = {"path": src.get("model"), "arch": src.get("arch"), "sha256": src.get("weights_sha256")}
    data = {"folder": src.get("data"), "images": src.get("images")}
    extra: dict[str, Any] = {
        "model": model,
        "embedding": {"kind": opts.embedding, "features": ev.feature_kind},
        "naming": naming,
        "rules": {"levelling": LEVELLING_RULE, "clustering": f"scipy-linkage-{opts.linkage}"},
    }
    if opts.embedding != "weights":
        extra["data"] = data
    prov = provenance("induced", params, date=date, **extra)
    return Tree(named.classes, named.nodes, prov)


def _names(
    tree: Tree,
    classes: ClassSet,
    vectors: np.ndarray,
    opts: InducedOptions,
    notes: list[str] | None,
    progress: ProgressFn | None,
    report: BuildReport | None,
) -> tuple[dict[str, Any], Tree]:
    """(how the groups were named, the tree with ids g<level>.<i> and the names)."""
    groups = [n for n in tree.nodes if "@" not in n.id]
    new_id: dict[str, str] = {}
    count: dict[int, int] = {}
    for n in groups:  # canonical order: by level, then first class
        lv = tree.depth(n.id)
        count[lv] = count.get(lv, 0) + 1
        new_id[n.id] = f"g{lv}.{count[lv]}"
    members = {n.id: [tree.class_index(c) for c in tree.leaves_under(n.id)] for n in groups}
    order = {gid: central_order(vectors, m) for gid, m in members.items()}
    class_names = [c.name for c in classes.classes]
    by_members = {gid: members_name(class_names, o) for gid, o in order.items()}
    how = opts.names
    names: dict[str, str] = {}
    naming: dict[str, Any] = {"rule": how}
    if how in ("auto", "wordnet"):
        namer = wordnet_namer(classes)
        if namer is None and how == "wordnet":
            raise NhlError(
                "--names wordnet needs WordNet data and WordNet classes "
                "(`python -m nltk.downloader wordnet`); use --names central"
            )
        if namer is None:
            how = "central"
            if notes is not None and groups:
                notes.append(
                    "WordNet data is not installed (or a class is not a WordNet noun): groups are "
                    "named after their most central members"
                )
        else:
            how = "wordnet"
            names = {gid: namer.name(m) or by_members[gid] for gid, m in members.items()}
    if how == "central":
        names = dict(by_members)
    if how == "llm":
        from nhlcli.hierarchy.llm.labels import make_labels
        from nhlcli.hierarchy.llm.naming import name_groups

        labels = make_labels(classes.classes).labels
        asked = [(new_id[g.id], [labels[i] for i in order[g.id]]) for g in groups]
        answer, llm_prov = name_groups(opts.llm or LLMSettings(), asked, progress, report)
        names = {g.id: answer[new_id[g.id]] for g in groups}
        naming["llm"] = llm_prov
    naming["rule"] = how
    ids = [g.id for g in groups]
    final = unique_per_level(
        [names[g] for g in ids], [tree.depth(g) for g in ids], [by_members[g] for g in ids]
    )
    final_name = dict(zip(ids, final, strict=True))

    def rename(n: TreeNode) -> TreeNode:
        parent = new_id.get(n.parent, n.parent) if n.parent is not None else None
        if n.id in new_id:
            return TreeNode(new_id[n.id], final_name[n.id], parent, n.attrs)
        return TreeNode(n.id, n.name, parent, n.attrs)

    return naming, Tree([rename(c) for c in tree.classes], [rename(n) for n in tree.nodes])


def _induced(
    classes: ClassSet,
    levels: int | None,
    groups: list[int] | None,
    opts: InducedOptions,
    ctx: SourceContext,
) -> Tree:
    report = ctx.report if isinstance(ctx.report, BuildReport) else None
    return build_induced_tree(
        classes,
        DEFAULT_LEVELS if levels is None else levels,
        groups,
        opts,
        date=ctx.date,
        notes=ctx.notes,
        progress=ctx.progress,
        report=report,
    )


register(
    TreeSource(
        "induced",
        "clustering a trained model's class features, weights or confusions",
        InducedOptions,
        _induced,
    )
)
