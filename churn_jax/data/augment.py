"""Numpy image augmentation of the paper's datasets (Bhojanapalli et al. 2021, App. A).

Random numbers are drawn first (`*_params`, vectorised from one numpy Generator) and
applied second, so a batch's augmentation is a pure function of the Generator's seed: the
caller seeds it from (run seed, step), which makes a resumed run see the same pixels, and
the result does not depend on how many threads apply it.

  CIFAR:    pad 4 pixels (zeros), random 32x32 crop, random horizontal flip.
  SVHN:     the same crop, no flip (digits are not mirror-symmetric).
  ImageNet: Inception-style random-resized crop to 224 + flip; eval: resize the shorter
            side to 256, center crop 224.
Images stay uint8 until `normalize`, which returns float32 (x / 255 - mean) / std.
"""

from typing import Sequence, Tuple

import numpy as np
from PIL import Image

# Inception-crop attempts before the central fallback (torchvision and TF use 10).
CROP_ATTEMPTS = 10


def crop_flip_params(rng: np.random.Generator, num: int, pad: int, flip: bool):
  """Crop offsets (num, 2) in [0, 2 * pad] and flip flags (num,) for `crop_from_padded`."""
  offsets = rng.integers(0, 2 * pad + 1, size=(num, 2))
  flips = rng.random(num) < 0.5
  return offsets, (flips if flip else np.zeros(num, bool))


def zero_pad(images: np.ndarray, pad: int) -> np.ndarray:
  """Zero-pads (N, H, W, C) images by `pad` pixels on every side."""
  return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def crop_from_padded(padded: np.ndarray, indices: np.ndarray, offsets: np.ndarray,
                     flips: np.ndarray, height: int, width: int) -> np.ndarray:
  """Crops (height, width) at `offsets` out of padded[indices], flipping where `flips`.

  Examples sharing an offset are cut with one slice (at most (2 pad + 1)^2 groups), which is
  ~8x faster than a per-pixel gather; the dataset is padded once, not every batch.
  """
  out = np.empty((len(indices), height, width) + padded.shape[3:], padded.dtype)
  keys = offsets[:, 0] * padded.shape[2] + offsets[:, 1]
  order = np.argsort(keys, kind="stable")
  for group in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
    if group.size:
      top, left = offsets[group[0]]
      out[group] = padded[indices[group], top:top + height, left:left + width]
  out[flips] = out[flips, :, ::-1]
  return out


def pad_crop_flip(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray,
                  pad: int) -> np.ndarray:
  """Zero-pads (N, H, W, C) images, crops (H, W) at `offsets`, flips where `flips`."""
  n, h, w = images.shape[:3]
  return crop_from_padded(zero_pad(images, pad), np.arange(n), offsets, flips, h, w)


def flip_left_right(images: np.ndarray) -> np.ndarray:
  """Mirrors (..., H, W, C) images horizontally."""
  return images[..., ::-1, :]


def resized_crop_params(rng: np.random.Generator, num: int):
  """Uniforms (num, CROP_ATTEMPTS, 4) for `resized_crop_box` and flip flags (num,).

  Drawn before the images are decoded: the box of an example depends only on its own
  uniforms and its image size.
  """
  return rng.random((num, CROP_ATTEMPTS, 4)), rng.random(num) < 0.5


def resized_crop_box(uniforms: np.ndarray, height: int, width: int,
                     scale: Tuple[float, float] = (0.08, 1.0),
                     ratio: Tuple[float, float] = (3 / 4, 4 / 3)) -> Tuple[int, int, int, int]:
  """(top, left, h, w) of an Inception crop: area fraction in `scale`, aspect in `ratio`.

  `uniforms` (attempts, 4) drive the attempts; after the last miss it falls back to the
  central crop clipped to `ratio`, as torchvision's RandomResizedCrop does.
  """
  area = height * width
  log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
  for us, ur, ut, ul in uniforms:
    aspect = np.exp(log_lo + ur * (log_hi - log_lo))
    target = area * (scale[0] + us * (scale[1] - scale[0]))
    w = int(round(np.sqrt(target * aspect)))
    h = int(round(np.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(ut * (height - h + 1)), int(ul * (width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < ratio[0]:
    h, w = min(height, int(round(width / ratio[0]))), width
  elif in_ratio > ratio[1]:
    h, w = height, min(width, int(round(height * ratio[1])))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of one (H, W, C) uint8 image with PIL (antialiased when shrinking)."""
  if image.shape[:2] == (height, width):
    return image
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out[..., None] if channels == 1 else out


def random_resized_crop(image: np.ndarray, uniforms: np.ndarray, flip: bool,
                        size: int) -> np.ndarray:
  """Train transform of one image: Inception crop, resize to size x size, maybe flip."""
  top, left, h, w = resized_crop_box(uniforms, *image.shape[:2])
  out = resize(image[top:top + h, left:left + w], size, size)
  return flip_left_right(out) if flip else out


def center_crop(image: np.ndarray, resize_to: int, size: int) -> np.ndarray:
  """Eval transform: shorter side resized to `resize_to`, then the central size x size."""
  h, w = image.shape[:2]
  scale = resize_to / min(h, w)
  nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
  image = resize(image, nh, nw)
  top, left = (nh - size) // 2, (nw - size) // 2
  return image[top:top + size, left:left + size]


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """uint8 [0, 255] (..., H, W, C) -> float32 (x / 255 - mean) / std, per channel."""
  channels = images.shape[-1]
  size = int(np.prod(images.shape[-3:]))
  std = np.asarray(std, np.float32)
  # Per-channel constants tiled over a whole example: numpy broadcasts a length-3 inner axis
  # ~4x slower than it streams one contiguous row.
  scale = np.tile(1 / (255 * std), size // channels)
  shift = np.tile(-np.asarray(mean, np.float32) / std, size // channels)
  out = images.reshape(-1, size).astype(np.float32)
  out *= scale
  out += shift
  return out.reshape(images.shape)
