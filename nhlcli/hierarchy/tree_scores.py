"""Scores of a category tree for a nested network, per group level (`nhl tree compare`).

Pure numpy/scipy on a `Tree` and, optionally, a model's `ClassEvidence`; docs/trees.md explains
what each score means for a network nested along the tree. For level l (1 .. depth-1) every class
belongs to its ancestor at depth l (a class already at depth <= l is a group of its own):

Always:
- `nodes`: groups at the level; `singletons`: groups holding exactly one class;
- `balance`: the entropy of the group sizes divided by log(nodes): 1 = equal sizes (1 for one
  group);
- `wordnet`: agreement with WordNet depth: the probability that two classes grouped together at
  this level share a deeper WordNet hypernym (kept paths, `wordnet_source.py`) than two classes
  split at this level (ties count half: an AUC). 0.5 = no better than chance, 1 = every grouped
  pair is closer in WordNet than every split pair. None without WordNet data or WordNet classes.

With a model and images:
- `confusion_share`: of the model's confusions among the tree's classes (off-diagonal mass of the
  confusion matrix), the share whose true and predicted class are in the same group;
- `confusion_chance`: the share a random grouping with the same group sizes keeps on average,
  sum n_g(n_g-1) / (k(k-1)); `confusion_gain` = (share - chance) / (1 - chance): 0 = no better than
  chance, 1 = every confusion stays inside a group;
- `silhouette`: the mean silhouette of the class embeddings (unit-length mean features, Euclidean)
  under the grouping; a class alone in its group scores 0; None with one group or all singletons;
- `group_top1`: top-1 (%) of predicting each image's group from the class scores restricted to the
  tree's classes: `sum` (default) = the group with the largest sum of softmax probabilities of its
  members; `max` = the group of the highest-scoring class.

A tree's `fit` is the mean `confusion_gain` over its group levels: the ranking of `compare_scores`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from nhlcli.errors import NhlError
from nhlcli.hierarchy.evidence import ClassEvidence, unit_rows
from nhlcli.hierarchy.tree import Tree

GROUP_SCORES = ("sum", "max")
SCORE_KEYS = (
    "balance",
    "wordnet",
    "confusion_share",
    "confusion_gain",
    "silhouette",
    "group_top1",
)


@dataclass(frozen=True)
class LevelScores:
    level: int
    nodes: int
    singletons: int
    balance: float
    wordnet: float | None
    confusion_share: float | None = None
    confusion_chance: float | None = None
    confusion_gain: float | None = None
    silhouette: float | None = None
    group_top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TreeScores:
    name: str
    classes: int
    levels: int | None
    rows: tuple[LevelScores, ...]

    @property
    def fit(self) -> float | None:
        """Mean confusion gain over the group levels (None without a model)."""
        gains = [r.confusion_gain for r in self.rows if r.confusion_gain is not None]
        return float(np.mean(gains)) if gains else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": self.name,
            "classes": self.classes,
            "levels": self.levels,
            "fit": self.fit,
            "rows": [r.to_dict() for r in self.rows],
        }


@dataclass
class TreeComparison:
    trees: list[TreeScores]
    group_score: str
    evidence: dict[str, Any] | None = None  # the model and data the scores come from
    notes: list[str] = field(default_factory=list)

    @property
    def ranking(self) -> list[str]:
        """Tree names by fit, best first (empty without a model); ties keep the given order."""
        scored = [(t.fit, i, t.name) for i, t in enumerate(self.trees) if t.fit is not None]
        return [name for _, _, name in sorted(scored, key=lambda x: (-x[0], x[1]))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_score": self.group_score,
            "evidence": self.evidence,
            "ranking": self.ranking,
            "ranked_by": "fit = mean confusion_gain over the group levels",
            "trees": [t.to_dict() for t in self.trees],
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- single scores
def level_groups(tree: Tree, level: int) -> np.ndarray:
    """Group number (0..n-1, in the order first seen) of each class at `level`."""
    keys: dict[str, int] = {}
    out = []
    for cid in tree.class_ids:
        path = tree.path(cid)
        node = path[level - 1] if level <= len(path) else cid
        out.append(keys.setdefault(node, len(keys)))
    return np.array(out, dtype=np.int64)


def balance(groups: np.ndarray) -> float:
    """Entropy of the group sizes over log(number of groups); 1.0 for a single group."""
    sizes = np.bincount(groups).astype(np.float64)
    if len(sizes) < 2:
        return 1.0
    p = sizes / sizes.sum()
    return float(-(p * np.log(p)).sum() / math.log(len(sizes)))


def confusion_share(confusion: np.ndarray, groups: np.ndarray) -> float | None:
    """Off-diagonal confusion mass inside groups over all off-diagonal mass (None: no errors)."""
    off = np.asarray(confusion, dtype=np.float64).copy()
    np.fill_diagonal(off, 0.0)
    total = off.sum()
    if total == 0:
        return None
    same = groups[:, None] == groups[None, :]
    return float(off[same].sum() / total)


def confusion_chance(groups: np.ndarray) -> float | None:
    """The share of ordered pairs of distinct classes that lie in one group."""
    k = len(groups)
    if k < 2:
        return None
    sizes = np.bincount(groups).astype(np.float64)
    return float((sizes * (sizes - 1)).sum() / (k * (k - 1)))


def silhouette(vectors: np.ndarray, groups: np.ndarray) -> float | None:
    """Mean silhouette (Euclidean); None unless 2 <= groups < classes."""
    from scipy.spatial.distance import cdist

    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if not 2 <= n_groups < len(groups):
        return None
    d = cdist(vectors, vectors)
    scores = []
    for i in range(len(groups)):
        own = groups == groups[i]
        if own.sum() == 1:
            scores.append(0.0)
            continue
        a = d[i, own].sum() / (own.sum() - 1)
        b = min(d[i, groups == g].mean() for g in range(n_groups) if g != groups[i])
        top = max(a, b)
        scores.append(0.0 if top == 0 else (b - a) / top)
    return float(np.mean(scores))


def group_top1(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, how: str = "sum"
) -> float | None:
    """Top-1 (%) of the right group from class scores (rows: images; columns: the tree's
    classes); None without images."""
    if how not in GROUP_SCORES:
        raise NhlError(f"--group-score must be one of {', '.join(GROUP_SCORES)} (got {how})")
    if len(labels) == 0:
        return None
    if how == "max":
        predicted = groups[scores.argmax(axis=1)]
    else:
        s = np.asarray(scores, dtype=np.float64)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        per_group = np.zeros((len(s), int(groups.max()) + 1))
        np.add.at(per_group.T, groups, p.T)
        predicted = per_group.argmax(axis=1)
    return float(100.0 * (predicted == groups[labels]).mean())


def wordnet_lca_depths(tree: Tree) -> np.ndarray | None:
    """(k, k) depth of the lowest common WordNet ancestor of each class pair, along the kept
    hypernym paths; None when WordNet is missing or a class is not a WordNet noun."""
    from nhlcli.hierarchy.classsets import ClassRef, ClassSet
    from nhlcli.hierarchy.wordnet_source import wordnet_placement_info

    refs = tuple(ClassRef(c.id, c.name) for c in tree.classes)
    try:
        info = wordnet_placement_info(ClassSet("tree", "tree", refs))
    except NhlError:
        return None
    chains = [[w for w, _ in info[r.wnid].path] + [r.wnid] for r in refs]
    k = len(chains)
    out = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        for j in range(i, k):
            a, b = chains[i], chains[j]
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            out[i, j] = out[j, i] = n
    return out


def wordnet_agreement(lca_depths: np.ndarray, groups: np.ndarray) -> float | None:
    """AUC of "same group" against WordNet LCA depth over class pairs (None: one kind absent)."""
    from scipy.stats import rankdata

    iu = np.triu_indices(len(groups), k=1)
    depth = lca_depths[iu].astype(np.float64)
    same = (groups[:, None] == groups[None, :])[iu]
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        return None
    ranks = rankdata(depth)
    u = ranks[same].sum() - n_same * (n_same + 1) / 2
    return float(u / (n_same * n_diff))


# ----------------------------------------------------------------------------- trees
def group_levels(tree: Tree) -> list[int]:
    """The levels that hold groups: 1 .. depth-1."""
    depth = max(tree.depth(c) for c in tree.class_ids)
    return list(range(1, depth))


def score_tree(
    tree: Tree,
    evidence: ClassEvidence | None = None,
    group_score: str = "sum",
    name: str = "tree",
    lca_depths: np.ndarray | None = None,
) -> TreeScores:
    """Every score of every group level of one tree (module docstring)."""
    if group_score not in GROUP_SCORES:
        allowed = ", ".join(GROUP_SCORES)
        raise NhlError(f"--group-score must be one of {allowed} (got {group_score})")
    ev = None
    if evidence is not None:
        missing = evidence.missing(tree.class_ids)
        if missing:
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            model = evidence.source.get("model", "the model")
            raise NhlError(
                f"{name}: {len(missing)} class(es) of the tree are not classes of {model}: "
                f"{', '.join(missing[:20])}{more}"
            )
        ev = evidence.restrict(tree.class_ids)
    feats = unit_rows(ev.features) if ev is not None and ev.features is not None else None
    rows = []
    for lv in group_levels(tree):
        g = level_groups(tree, lv)
        sizes = np.bincount(g)
        row: dict[str, Any] = {
            "level": lv,
            "nodes": len(sizes),
            "singletons": int((sizes == 1).sum()),
            "balance": balance(g),
            "wordnet": wordnet_agreement(lca_depths, g) if lca_depths is not None else None,
        }
        if ev is not None:
            if ev.confusion is not None:
                share, chance = confusion_share(ev.confusion, g), confusion_chance(g)
                row["confusion_share"], row["confusion_chance"] = share, chance
                if share is not None and chance is not None and chance < 1:
                    row["confusion_gain"] = (share - chance) / (1 - chance)
            if feats is not None:
                row["silhouette"] = silhouette(feats, g)
            if ev.scores is not None and ev.labels is not None:
                row["group_top1"] = group_top1(ev.scores, ev.labels, g, group_score)
        rows.append(LevelScores(**row))
    return TreeScores(name, tree.num_classes, tree.levels, tuple(rows))


def compare_scores(
    trees: Sequence[tuple[str, Tree]],
    evidence: ClassEvidence | None = None,
    group_score: str = "sum",
) -> TreeComparison:
    """Scores of several trees (name, tree) against one model's evidence (or none)."""
    if not trees:
        raise NhlError("give at least one tree to compare")
    notes: list[str] = []
    lca_cache: dict[tuple[str, ...], np.ndarray | None] = {}
    scored = []
    for name, tree in trees:
        key = tuple(tree.class_ids)
        if key not in lca_cache:
            lca_cache[key] = wordnet_lca_depths(tree)
        scored.append(score_tree(tree, evidence, group_score, name, lca_cache[key]))
    if any(v is None for v in lca_cache.values()):
        notes.append(
            "wordnet agreement left out: WordNet data is not installed or a class is not a "
            "WordNet noun (`python -m nltk.downloader wordnet`)"
        )
    rows = [r for t in scored for r in t.rows]
    no_errors = all(r.confusion_share is None for r in rows)
    if evidence is not None and evidence.confusion is not None and rows and no_errors:
        notes.append("the model made no mistakes on these images: confusion scores left out")
    return TreeComparison(scored, group_score, dict(evidence.source) if evidence else None, notes)
