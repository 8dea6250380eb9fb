"""Decoding image files with Pillow into uint8 tensors of one size, skipping unreadable files.

Two geometric modes:

* ``eval``: resize the shorter side to ``img_size / crop_fraction`` and take the centre
  ``img_size`` square (the usual ImageNet evaluation crop);
* ``train``: a cheap deterministic resize (shorter side to ``load_size``, centre square), so that
  batches have one shape; the random crops, flips and RandAugment are applied to whole batches on
  the training device afterwards (`nhlcli.data.augment`).

Decoding (`open_image`, `decode_square`):

* only regular files are opened (a FIFO named `p.jpg` would block forever; a device never ends);
* the pixel count is checked from the header before anything is decoded: at most
  `DEFAULT_MAX_IMAGE_PIXELS` (40 megapixels), or `NHL_MAX_IMAGE_PIXELS` from the environment. A
  JPEG counts at the size draft mode decodes it to (the decoder scales by 1/2, 1/4 or 1/8 on the
  fly when the target is much smaller than the file), so large phone photos stay cheap. Pillow's
  warnings (its decompression-bomb warning, corrupt EXIF) are silenced in favour of this bound and
  the skip count; its hard limit (twice `PIL.Image.MAX_IMAGE_PIXELS`) still refuses larger files;
* the EXIF orientation is applied (a phone photo taken upright is decoded upright);
* everything becomes 8-bit RGB, high-bit-depth images scaled by their mode's range rather than
  clipped: 16-bit (`I;16*`, and `I` whose values fit 16 bits) by 65535, other `I` by the image's
  own maximum, float (`F`) from [0, 1] (values outside clipped, NaN as 0); grayscale, palette and
  CMYK files through Pillow's conversion (about 1 % of Imagenette is grayscale).

Images come back as uint8 CHW tensors (four times less to move between processes than float). A
file that cannot be decoded, or is refused, is reported with the batch and counted; see
`ImageFileDataset.__getitem__`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from nhlcli.errors import NhlError
from nhlcli.fileio import special_kind

EVAL_CROP_FRACTION = 0.875  # 224 of 256, the usual ImageNet evaluation crop
TRAIN_LOAD_FACTOR = 1.15  # train images are stored slightly larger than the crop they feed
MAX_SUBSTITUTES = 16  # train mode: readable neighbours tried in place of an unreadable file

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
MAX_PIXELS_ENV = "NHL_MAX_IMAGE_PIXELS"


class ImageRefused(ValueError):
    """A file nhl will not decode: not a regular file, or more pixels than the bound."""


# What decoding raises for files it cannot or will not decode (truncated, not an image, too big).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def max_image_pixels() -> int:
    """The pixel bound: NHL_MAX_IMAGE_PIXELS when set (a positive integer), else 40 megapixels."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise NhlError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, not {raw!r}")
    return value


def train_load_size(img_size: int) -> int:
    return math.ceil(img_size * TRAIN_LOAD_FACTOR)


def eval_resize_size(img_size: int) -> int:
    return math.ceil(img_size / EVAL_CROP_FRACTION)


@contextmanager
def open_image(path: str, max_pixels: int, shorter: int | None = None) -> Iterator[Image.Image]:
    """The image opened lazily (header read, nothing decoded); ImageRefused for a file that is
    not a regular file or has more than `max_pixels` pixels. `shorter`: JPEGs are set to draft
    mode for that size first, and counted at the size they will decode to."""
    kind = special_kind(path)
    if kind is not None:  # checked before opening: opening a FIFO blocks until a writer comes
        raise ImageRefused(f"{path} is {kind}, not an image file")
    with warnings.catch_warnings():  # also around the caller's decoding (this is a generator)
        # Pillow's warnings about a file (the decompression-bomb warning, corrupt EXIF, palette
        # transparency) are unformatted lines from every worker; nhl's bound and skip count speak
        warnings.simplefilter("ignore")
        try:
            img = Image.open(path)
        except Image.DecompressionBombError:
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            raise ImageRefused(f"{path} has more than {limit:,} pixels (Pillow's limit)") from None
        with img:
            w, h = img.size
            if shorter is not None and img.format == "JPEG":
                img.draft("RGB", (shorter, shorter))  # lets libjpeg scale down while decoding
            if img.size[0] * img.size[1] > max_pixels:
                raise ImageRefused(
                    f"{path} is {w}x{h} pixels, more than nhl decodes ({max_pixels:,}; "
                    f"set {MAX_PIXELS_ENV} to change it)"
                )
            yield img


def check_image_file(path: str, shorter: int | None = None) -> None:
    """NhlError for an image named directly that nhl refuses (not a regular file, too many pixels;
    `shorter` as for `open_image`); a file Pillow cannot read passes here and is skipped when
    decoded."""
    try:
        with open_image(path, max_image_pixels(), shorter):
            pass
    except ImageRefused as e:
        raise NhlError(str(e)) from None
    except DECODE_ERRORS:
        pass


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit, 32-bit and float images scaled by their range (see the module doc)."""
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0)
        img = Image.fromarray(np.rint(np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8))
    elif img.mode == "I" or img.mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode != "I" or arr.max(initial=0) <= 65535 else float(arr.max())
        img = Image.fromarray(np.rint(np.clip(arr, 0.0, top) * (255 / top)).astype(np.uint8))
    return img.convert("RGB")


def decode_square(
    path: str, shorter: int, crop: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> torch.Tensor:
    """RGB uint8 tensor (3, crop, crop): upright, shorter side resized to `shorter`, centre crop.

    ImageRefused for a special file or an image over `max_pixels` (also once resized: an image of
    extreme aspect ratio would grow past the bound)."""
    with open_image(path, max_pixels, shorter) as img:
        rgb = to_rgb(ImageOps.exif_transpose(img))
    w, h = rgb.size
    scale = shorter / min(w, h)
    nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
    if nw * nh > max_pixels:
        raise ImageRefused(f"{path}: {w}x{h} pixels would be resized to {nw}x{nh}, too many")
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
        self.max_pixels = max_image_pixels()
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
            image = decode_square(path, self.shorter, self.out_size, self.max_pixels)
            return Decoded(image, label, None)
        except DECODE_ERRORS:
            pass
        if self.mode == "train":
            for step in range(1, min(len(self.samples), MAX_SUBSTITUTES + 1)):
                alt_path, alt_label = self.samples[(index + step) % len(self.samples)]
                try:
                    image = decode_square(alt_path, self.shorter, self.out_size, self.max_pixels)
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
