"""What a trained model says about its classes, as plain arrays: the input of induced trees
(`induced_source.py`) and of the tree scores (`tree_scores.py`).

`ClassEvidence` holds, per class of the model (in its logit order): the mean features of the class's
images, the classifier weights (shared-head models), the confusion matrix, and every image's class
scores. Layer 3 fills it from a checkpoint and an image folder
(`nhlcli.evaluation.embeddings.collect_evidence`); this module only reads it (numpy, no torch), so
the tree builders take data, never a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nhlcli.errors import NhlError

EMBEDDINGS = ("features", "weights", "confusion")


@dataclass(frozen=True, eq=False)
class ClassEvidence:
    """Per-class arrays of one model (rows in `class_ids` order); absent parts are None."""

    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    features: np.ndarray | None = None  # (k, d) mean features of each class's images
    weights: np.ndarray | None = None  # (k, d) classifier weights (shared-head models)
    confusion: np.ndarray | None = None  # (k, k) counts: row = true class, column = predicted
    scores: np.ndarray | None = None  # (N, k) class scores (logits) of every image
    labels: np.ndarray | None = None  # (N,) true class index of every image
    counts: np.ndarray | None = None  # (k,) images of each class behind the features
    feature_kind: str | None = None  # "penultimate" (shared head) or "trunk" (last shared map)
    source: dict[str, Any] = field(default_factory=dict)  # model, weights_sha256, data, images

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def has_data(self) -> bool:
        """Built from images (features, confusion and scores are present)."""
        return self.features is not None and self.confusion is not None

    def missing(self, class_ids: Sequence[str]) -> list[str]:
        """The given classes that are not classes of the model."""
        known = set(self.class_ids)
        return [c for c in class_ids if c not in known]

    def require(self, class_ids: Sequence[str], names: Sequence[str] | None = None) -> None:
        """NhlError listing every class of `class_ids` the model does not know."""
        missing = self.missing(class_ids)
        if not missing:
            return
        label = dict(zip(class_ids, names, strict=True)) if names is not None else {}
        shown = ", ".join(f"{c} ({label[c]})" if c in label else c for c in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        model = self.source.get("model", "the model")
        raise NhlError(
            f"{len(missing)} class(es) are not classes of {model}: {shown}{more} "
            "(use --classes to pick classes the model knows)"
        )

    def restrict(self, class_ids: Sequence[str]) -> ClassEvidence:
        """The evidence of some classes, in the given order: rows and columns of those classes,
        and only the images whose true class is one of them (labels renumbered)."""
        self.require(class_ids)
        pos = {c: i for i, c in enumerate(self.class_ids)}
        idx = np.array([pos[c] for c in class_ids], dtype=np.int64)
        scores = labels = None
        if self.scores is not None and self.labels is not None:
            new_label = np.full(self.num_classes, -1, dtype=np.int64)
            new_label[idx] = np.arange(len(idx))
            keep = new_label[self.labels] >= 0
            scores = self.scores[keep][:, idx]
            labels = new_label[self.labels[keep]]
        return ClassEvidence(
            class_ids=tuple(class_ids),
            class_names=tuple(self.class_names[i] for i in idx),
            features=None if self.features is None else self.features[idx],
            weights=None if self.weights is None else self.weights[idx],
            confusion=None if self.confusion is None else self.confusion[np.ix_(idx, idx)],
            scores=scores,
            labels=labels,
            counts=None if self.counts is None else self.counts[idx],
            feature_kind=self.feature_kind,
            source=dict(self.source),
        )

    def embedding(self, kind: str) -> np.ndarray:
        """(k, d) float64 class vectors for clustering.

        features, weights: each row scaled to unit length (the direction of a class, not how
        strongly it fires); confusion: each row of the confusion matrix divided by its sum (where
        the class's images go).
        """
        if kind not in EMBEDDINGS:
            raise NhlError(f"unknown embedding '{kind}' (choose from {', '.join(EMBEDDINGS)})")
        if kind == "weights":
            if self.weights is None:
                raise NhlError(
                    "--embedding weights needs a model with one shared classifier (resnet50, "
                    "phl-1branch); this model has per-class heads: use --embedding features"
                )
            return unit_rows(self.weights)
        data = self.features if kind == "features" else self.confusion
        if data is None:
            raise NhlError(
                f"--embedding {kind} needs --data: give --data DIR, a folder of images of the "
                "classes"
            )
        if kind == "features":
            if self.counts is not None:
                self._require_images(self.counts)
            return unit_rows(data)
        rows = np.asarray(data, dtype=np.float64)
        sums = rows.sum(axis=1, keepdims=True)
        self._require_images(sums[:, 0])
        return rows / sums

    def _require_images(self, counts: np.ndarray) -> None:
        ids, names = self.class_ids, self.class_names
        empty = [f"{ids[i]} ({names[i]})" for i in np.flatnonzero(counts == 0)]
        if empty:
            raise NhlError(
                f"no images were read for {len(empty)} class(es): {', '.join(empty[:20])} "
                "(more --max-batches, or --classes without them)"
            )


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (zero rows stay zero), as float64."""
    rows = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
