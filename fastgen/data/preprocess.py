"""Bring decoded images to the model's format: ``[N, C, R, R]`` float32 in [-1, 1]."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fastgen.errors import FastgenError
from fastgen.memory import check_fits

FITS = ("resize", "pad", "resize_pad")
# Images converted per step: bounds the float temporaries when a 60 000-image array is prepared.
_CHUNK = 4096
# Enlarging an image more than this many times (its longer side) makes a blurred training image: say so.
_UPSCALE_WARNING = 2
_FLOAT_BYTES = 4
# ITU-R 601 luma, the weights Pillow's "L" conversion uses, so grey from RGB matches other tools.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def prepare_images(arrays: Sequence[np.ndarray], resolution: int, channels: int, fit: str) -> torch.Tensor:
    """Convert NHWC arrays (uint8, or float in [0, 1]; 1 or 3 channels; sizes may differ between arrays)
    into one ``[N, channels, resolution, resolution]`` float32 tensor in [-1, 1].

    ``fit``: ``resize`` scales each image to resolution × resolution (aspect ratio not kept); ``pad`` centres
    it on a black square without scaling (it must not be larger than the resolution); ``resize_pad`` scales
    the longer side to the resolution, keeping the aspect ratio, and pads the shorter one with black.
    """
    count = sum(len(array) for array in arrays)
    check_fits(_FLOAT_BYTES * count * channels * resolution**2, torch.device("cpu"),
               f"{count} training images at {resolution}×{resolution}", "use a smaller [model] resolution or fewer images")
    prepared = torch.empty(count, channels, resolution, resolution)
    filled = 0
    upscaled = [array for array in arrays if fit != "pad" and max(array.shape[1:3]) * _UPSCALE_WARNING < resolution]
    if upscaled:  # once per dataset, not once per image
        smallest = min(upscaled, key=lambda array: max(array.shape[1:3]))
        warnings.warn(f"{sum(map(len, upscaled))} of {count} images are more than {_UPSCALE_WARNING}× smaller than the "
                      f"model resolution {resolution} (smallest {smallest.shape[1]}×{smallest.shape[2]}) and are upscaled "
                      "(blurry); use larger images or a smaller [model] resolution", stacklevel=3)  # fmt: skip
    for array in arrays:
        for start in range(0, len(array), _CHUNK):
            batch = _to_unit_float(array[start : start + _CHUNK])
            batch = _convert_channels(_fit(batch, resolution, fit), channels)
            prepared[filled : filled + len(batch)] = batch
            filled += len(batch)
    # Bilinear filtering can overshoot [0, 1] by a rounding error; the [-1, 1] contract is exact.
    return prepared.mul_(2).sub_(1).clamp_(-1, 1)


def _to_unit_float(pixels: np.ndarray) -> torch.Tensor:
    """NHWC uint8 or float [0, 1] → NCHW float32 in [0, 1] (``astype`` copies, so read-only input is fine)."""
    values = pixels.astype(np.float32)
    if pixels.dtype == np.uint8:
        values /= 255
    return torch.from_numpy(values).permute(0, 3, 1, 2)


def _fit(batch: torch.Tensor, resolution: int, fit: str) -> torch.Tensor:
    height, width = batch.shape[-2:]
    if fit == "resize":
        size = (resolution, resolution)
    elif fit == "resize_pad":
        scale = resolution / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
    else:
        if height > resolution or width > resolution:
            raise FastgenError(
                f"an image is {height}×{width} pixels, larger than resolution {resolution}, so fit='pad' "
                "cannot apply; use fit='resize' or fit='resize_pad'"
            )
        size = (height, width)
    if size != (height, width):
        # antialias makes downscaling average over the footprint instead of aliasing.
        batch = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
    return _pad_to_square(batch, resolution)


def _pad_to_square(batch: torch.Tensor, resolution: int) -> torch.Tensor:
    height, width = batch.shape[-2:]
    if (height, width) == (resolution, resolution):
        return batch
    top, left = (resolution - height) // 2, (resolution - width) // 2
    return F.pad(batch, (left, resolution - width - left, top, resolution - height - top), value=0.0)


def _convert_channels(batch: torch.Tensor, channels: int) -> torch.Tensor:
    if batch.shape[1] == channels:
        return batch
    if channels == 3:
        return batch.expand(-1, 3, -1, -1)
    return (batch * _LUMA).sum(dim=1, keepdim=True)
