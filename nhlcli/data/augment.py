"""Batch augmentation and normalisation on the training device (kornia).

Images arrive as uint8 batches; everything random happens here, on whole batches, on the GPU when
there is one: random resized crop (timm/torchvision parameters), horizontal flip and RandAugment
(Cubuk et al., as the paper's timm setup used), then ImageNet mean/std normalisation. The random
numbers come from torch's global generator, so saving and restoring torch's RNG state (CPU and
CUDA) reproduces the augmentation exactly.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """uint8 or [0, 1] float (N, 3, H, W) -> float32 normalised with the ImageNet statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std


class TrainAugment(nn.Module):
    """Random resized crop to `img_size`, horizontal flip, RandAugment(n, m), normalisation.

    `randaugment_n=0` turns RandAugment off. `min_crop_scale` is the smallest crop area fraction
    (0.08 is the ImageNet default; short runs on small data like larger values).
    """

    def __init__(
        self,
        img_size: int,
        randaugment_n: int = 2,
        randaugment_m: int = 9,
        min_crop_scale: float = 0.08,
        hflip: bool = True,
    ) -> None:
        super().__init__()
        import kornia.augmentation as K
        from kornia.augmentation.auto import RandAugment

        ops: list[nn.Module] = [
            K.RandomResizedCrop((img_size, img_size), scale=(min_crop_scale, 1.0))
        ]
        if hflip:
            ops.append(K.RandomHorizontalFlip())
        if randaugment_n > 0:
            ops.append(
                RandAugment(n=randaugment_n, m=randaugment_m, transformation_matrix_mode="skip")
            )
        self.ops = nn.Sequential(*ops)
        self.normalize = Normalize()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        x = self.ops(x).clamp_(0.0, 1.0)
        return self.normalize(x)
