"""Batch mixing for training: MixUp and CutMix from kornia, and the loss of mixed labels.

`BatchMixer` mixes a batch of (normalised) images with a random permutation of itself and returns
the two label sets and the partner's weight λ per image; `mixed_loss` is then
(1 - λ)·loss(logits, y) + λ·loss(logits, y_partner), with the criterion's label smoothing applied
to both terms. MixUp draws λ from U(0, mixup) (kornia's `RandomMixUpV2`); CutMix pastes a box whose
size comes from Beta(cutmix, cutmix), λ being the pasted area (kornia's `RandomCutMixV2`). With both
on, each batch uses one of the two, chosen with probability 1/2. The random numbers come from
torch's global generator, so a resumed run mixes exactly like an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchMixer(nn.Module):
    def __init__(self, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        super().__init__()
        from kornia.augmentation import RandomCutMixV2, RandomMixUpV2
        from kornia.constants import DataKey

        keys: list[str | int | DataKey] = ["input", "class"]
        self.ops = nn.ModuleList()
        if mixup > 0:
            self.ops.append(RandomMixUpV2(lambda_val=(0.0, mixup), data_keys=keys))
        if cutmix > 0:
            # the paper's λ (the original image's area share); partner weight = 1 - λ below
            self.ops.append(RandomCutMixV2(beta=cutmix, use_correct_lambda=True, data_keys=keys))

    @property
    def enabled(self) -> bool:
        return len(self.ops) > 0

    @torch.no_grad()
    def forward(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mixed images, labels, partner labels, partner weight λ per image)."""
        if not self.ops:
            return x, y, y, torch.zeros(y.shape[0], device=y.device)
        i = int(torch.randint(len(self.ops), ()).item()) if len(self.ops) > 1 else 0
        out, labels = self.ops[i](x, y)
        partner = labels[..., 2].to(x.dtype)
        if labels.ndim == 3:  # CutMix: (mixes, N, 3), one mix; λ is the original's share
            labels, partner = labels[0], 1 - partner[0]
        return out, labels[:, 0].long(), labels[:, 1].long(), partner


def mixed_loss(
    criterion: nn.Module,
    logits: torch.Tensor,
    y: torch.Tensor,
    y_partner: torch.Tensor,
    lam: torch.Tensor,
) -> torch.Tensor:
    """Mean of (1 - λ)·criterion(y) + λ·criterion(y_partner); `criterion` has reduction 'none'."""
    return ((1 - lam) * criterion(logits, y) + lam * criterion(logits, y_partner)).mean()
