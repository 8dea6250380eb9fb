"""Top-1, top-k and per-class accuracy from predicted and true class indices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ClassAccuracy:
    id: str
    name: str
    images: int
    correct: int

    @property
    def top1(self) -> float | None:
        return 100.0 * self.correct / self.images if self.images else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "images": self.images,
            "correct": self.correct,
            "top1": self.top1,
        }


def top1(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent (0 images: 0.0)."""
    if labels.numel() == 0:
        return 0.0
    return 100.0 * float((preds == labels).sum().item()) / labels.numel()


def topk_accuracy(ranked: torch.Tensor, labels: torch.Tensor) -> float:
    """% of images whose true class is among their ranked predictions (N, k) (0 images: 0.0)."""
    if labels.numel() == 0:
        return 0.0
    return 100.0 * float((ranked == labels[:, None]).any(1).sum().item()) / labels.numel()


def per_class_accuracy(
    preds: torch.Tensor,
    labels: torch.Tensor,
    class_index: list[int],
    ids: list[str],
    names: list[str],
) -> list[ClassAccuracy]:
    """Accuracy of each evaluated class (class_index[i] is class i's index in the model)."""
    out = []
    for idx, cid, name in zip(class_index, ids, names, strict=True):
        mask = labels == idx
        out.append(ClassAccuracy(cid, name, int(mask.sum()), int((preds[mask] == idx).sum())))
    return out
