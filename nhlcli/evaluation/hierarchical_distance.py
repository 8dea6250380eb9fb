"""The field's hierarchical metrics, and cost-aware (CRM) decoding, over an evaluated class list.

Classes are positions 0..k-1 in a class list taken from a tree. The distance between two classes
is the height of their lowest common ancestor (LCA), as in Bertinetto et al., "Making Better
Mistakes", CVPR 2020:

    d(a, b) = max(depth(a), depth(b)) - depth(LCA(a, b)),   d(a, a) = 0

with depth(root) = 0 and level-1 nodes at depth 1. In a levelled tree with L levels every class
sits at depth L, so d = L - depth(LCA). With leaves at several depths the height is measured from
the deeper of the two leaves (the longer of the two paths up to the LCA), so d is still a metric
(symmetric, 0 only for a = b) and a shallow leaf is not "closer" to everything.

* **mistake severity**: the mean d(ŷ, y) over the misclassified images (0.0 when none is);
* **AHD@k** (average hierarchical distance at k): the mean over images of the mean d(ŷ_r, y) of
  the top-k predictions r = 1..k; k is capped at the number of classes;
* **hierarchical precision / recall / F1** (Kiritchenko et al. 2006): ŷ and y are extended with
  all their ancestors except the root, A(ŷ) and A(y); summed over images (micro-averaged)
  hP = Σ|A(ŷ) ∩ A(y)| / Σ|A(ŷ)|, hR = Σ|A(ŷ) ∩ A(y)| / Σ|A(y)|, hF = 2·hP·hR / (hP + hR).

**CRM decoding** (Karthik et al., "No Cost Likelihood Manipulation at Test Time for Making Better
Mistakes in Deep Networks", ICLR 2021): ŷ = argmin_i Σ_j d(i, j)·p_j, the class of least expected
distance under the (restricted) softmax p; its ranking orders the classes by that risk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nhlcli.hierarchy.tree import Tree

AHD_KS = (1, 5, 20)
DISTANCE_RULE = "d(a, b) = max(depth(a), depth(b)) - depth(LCA(a, b)); depth(root) = 0; d(a, a) = 0"


def common_depths(tree: Tree, class_ids: Sequence[str]) -> torch.Tensor:
    """(k, k) long matrix: depth of the LCA of every two classes (a class with itself: its depth).

    Also |A(a) ∩ A(b)|, the overlap of the two root paths, since both paths start at level 1.
    """
    paths = [tree.path(c) for c in class_ids]
    k = len(paths)
    depth = max((len(p) for p in paths), default=0)
    ids: dict[str, int] = {}
    codes = torch.empty(depth, k, dtype=torch.long)
    for j, p in enumerate(paths):
        for d in range(depth):  # past its own depth a class gets a code no other class has
            codes[d, j] = ids.setdefault(p[d], len(ids)) if d < len(p) else -1 - j
    same = torch.ones(k, k, dtype=torch.bool)
    common = torch.zeros(k, k, dtype=torch.long)
    for d in range(depth):
        same &= codes[d][:, None] == codes[d][None, :]
        common += same
    return common


def lca_distances(tree: Tree, class_ids: Sequence[str]) -> torch.Tensor:
    """(k, k) float matrix of d(a, b) between the classes (rule above; classes of `tree`)."""
    depths = torch.tensor([tree.depth(c) for c in class_ids], dtype=torch.long)
    deeper = torch.maximum(depths[:, None], depths[None, :])
    out = (deeper - common_depths(tree, class_ids)).float()
    out.fill_diagonal_(0.0)
    return out


def mistake_severity(preds: torch.Tensor, labels: torch.Tensor, dist: torch.Tensor) -> float:
    """Mean d(ŷ, y) over the misclassified images (positions 0..k-1); 0.0 when none is wrong."""
    wrong = preds != labels
    if not bool(wrong.any()):
        return 0.0
    return float(dist[preds[wrong], labels[wrong]].mean())


def average_hierarchical_distance(
    ranked: torch.Tensor, labels: torch.Tensor, dist: torch.Tensor, k: int
) -> float:
    """AHD@k: mean over images of the mean d of the top-k of `ranked` (N, >= k), best first."""
    if labels.numel() == 0:
        return 0.0
    top = ranked[:, :k]
    return float(dist[top, labels[:, None].expand_as(top)].mean())


def ancestor_sets(tree: Tree, class_ids: Sequence[str]) -> list[frozenset[str]]:
    """Each class with all its ancestors except the (implicit) root."""
    return [frozenset(tree.path(c)) for c in class_ids]


def hierarchical_prf(
    preds: torch.Tensor, labels: torch.Tensor, tree: Tree, class_ids: Sequence[str]
) -> tuple[float, float, float]:
    """Micro-averaged hierarchical precision, recall and F1 in percent (Kiritchenko 2006).

    |A(ŷ) ∩ A(y)| is the depth of their LCA (both sets are paths down from level 1), |A(c)| the
    depth of c."""
    overlap = common_depths(tree, class_ids)
    size = torch.tensor([tree.depth(c) for c in class_ids], dtype=torch.long)
    common = int(overlap[preds, labels].sum())
    pred_total, true_total = int(size[preds].sum()), int(size[labels].sum())
    hp = 100.0 * common / pred_total if pred_total else 0.0
    hr = 100.0 * common / true_total if true_total else 0.0
    hf = 2 * hp * hr / (hp + hr) if hp + hr else 0.0
    return hp, hr, hf


def crm_risk(probs: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """(N, k) expected distance Σ_j d(i, j)·p_j of answering class i, for every image."""
    return probs.to(dist.dtype) @ dist.T


def crm_rank(probs: torch.Tensor, dist: torch.Tensor, k: int) -> torch.Tensor:
    """(N, min(k, classes)) positions ordered by CRM risk, least first (ties: lower position)."""
    risk = crm_risk(probs, dist)
    order = torch.argsort(risk, dim=1, stable=True)
    return order[:, : min(k, risk.shape[1])]


@dataclass(frozen=True)
class HierarchicalMetrics:
    mistake_severity: float  # mean d(ŷ, y) over the misclassified images
    ahd: dict[int, float]  # k (capped at the number of classes) -> AHD@k
    hp: float
    hr: float
    hf: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "mistake_severity": self.mistake_severity,
            "ahd": {f"@{k}": v for k, v in self.ahd.items()},
            "hierarchical_precision": self.hp,
            "hierarchical_recall": self.hr,
            "hierarchical_f1": self.hf,
            "distance": DISTANCE_RULE,
        }


def ahd_ks(classes: int) -> list[int]:
    """The k of AHD@k for `classes` classes: 1, 5, 20, capped at the number of classes."""
    return list(dict.fromkeys(min(k, classes) for k in AHD_KS))


def hierarchical_metrics(
    ranked: torch.Tensor, labels: torch.Tensor, tree: Tree, class_ids: Sequence[str]
) -> HierarchicalMetrics:
    """All the metrics above from rankings (N, w) of positions, best first (k also capped at w)."""
    dist = lca_distances(tree, class_ids)
    preds = ranked[:, 0] if labels.numel() else labels
    ks = list(dict.fromkeys(min(k, ranked.shape[1]) for k in ahd_ks(len(class_ids))))
    hp, hr, hf = hierarchical_prf(preds, labels, tree, class_ids)
    return HierarchicalMetrics(
        mistake_severity=mistake_severity(preds, labels, dist),
        ahd={k: average_hierarchical_distance(ranked, labels, dist, k) for k in ks},
        hp=hp,
        hr=hr,
        hf=hf,
    )
