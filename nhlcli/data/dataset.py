"""Decoding image files with Pillow into uint8 tensors of one size, skipping unreadable files.

Two geometric modes:

* ``eval``: resize the shorter side to ``img_size / crop_fraction`` and take the centre
  ``img_size`` square (the usual ImageNet evaluation crop);
* ``train``: a cheap deterministic resize (shorter side to ``load_size``, centre square), so that
  batches have one shape; the random crops, flips and RandAugment are applied to whole batches on
  the training device afterwards (`nhlcli.data.augment`).

Decoding uses JPEG draft mode (the decoder scales by 1/2, 1/4 or 1/8 on the fly) when the target is
much smaller than the file, converts every image to RGB (about 1 % of Imagenette is grayscale), and
returns uint8 CHW tensors (four times less to move between processes than float). A file Pillow
cannot read is reported with the batch and counted; see `ImageFileDataset.__getitem__`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

EVAL_CROP_FRACTION = 0.875  # 224 of 256, the usual ImageNet evaluation crop
TRAIN_LOAD_FACTOR = 1.15  # train images are stored slightly larger than the crop they feed
MAX_SUBSTITUTES = 16  # train mode: readable neighbours tried in place of an unreadable file

# What Pillow raises for files it cannot decode (truncated, not an image, bomb-sized).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def train_load_size(img_size: int) -> int:
    return math.ceil(img_size * TRAIN_LOAD_FACTOR)


def eval_resize_size(img_size: int) -> int:
    return math.ceil(img_size / EVAL_CROP_FRACTION)


def decode_square(path: str, shorter: int, crop: int) -> torch.Tensor:
    """RGB uint8 tensor (3, crop, crop): shorter side resized to `shorter`, centre crop."""
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (shorter, shorter))  # lets libjpeg scale down while decoding
        rgb = img.convert("RGB")
    w, h = rgb.size
    scale = shorter / min(w, h)
    nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
    if (nw, nh) != (w, h):
        rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    rgb = rgb.crop((left, top, left + crop, top + crop))
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class Decoded:
    image: torch.Tensor  # uint8 (3, S, S)
    label: int
    bad_path: str | None  # set when the file could not be decoded
    substituted: bool = False  # train mode: `image` is another sample standing in for bad_path


class ImageFileDataset(Dataset):
    """(path, label) samples decoded to uint8 squares; see the module docstring for the modes."""

    def __init__(self, samples: Sequence[tuple[str, int]], img_size: int, mode: str) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', not {mode!r}")
        self.samples = list(samples)
        self.img_size = img_size
        self.mode = mode
        if mode == "train":
            self.shorter = self.out_size = train_load_size(img_size)
        else:
            self.shorter, self.out_size = eval_resize_size(img_size), img_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Decoded:
        """The decoded sample; an unreadable file is reported in `bad_path`.

        In eval mode the item is blank and the collation drops it. In train mode the next readable
        sample takes its place, so every batch keeps its size (all DDP ranks take the same number of
        steps); the unreadable file is still reported, so the epoch summary counts it.
        """
        path, label = self.samples[index]
        try:
            return Decoded(decode_square(path, self.shorter, self.out_size), label, None)
        except DECODE_ERRORS:
            pass
        if self.mode == "train":
            for step in range(1, min(len(self.samples), MAX_SUBSTITUTES + 1)):
                alt_path, alt_label = self.samples[(index + step) % len(self.samples)]
                try:
                    image = decode_square(alt_path, self.shorter, self.out_size)
                except DECODE_ERRORS:
                    continue
                return Decoded(image, alt_label, path, substituted=True)
        blank = torch.zeros(3, self.out_size, self.out_size, dtype=torch.uint8)
        return Decoded(blank, label, path)


@dataclass
class Batch:
    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    bad_paths: list[str]  # files of this batch that were skipped

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.bad_paths)


def collate_decoded(items: Sequence[Decoded]) -> Batch:
    """Stack the decodable images; unreadable ones are dropped and listed."""
    good = [it for it in items if it.bad_path is None or it.substituted]
    bad = [it.bad_path for it in items if it.bad_path is not None]
    if good:
        images = torch.stack([it.image for it in good])
    else:
        size = items[0].image.shape[-1] if items else 0
        images = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    labels = torch.tensor([it.label for it in good], dtype=torch.int64)
    return Batch(images, labels, bad)
