"""Model-range image tensors to and from pixels on disk: uint8 conversion, PNG grids, reading image files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastgen.data.sources import decode_image, image_files_under
from fastgen.errors import FastgenError
from fastgen.outputs import PNG, write_file


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] (C = 1 or 3, any device/dtype) → uint8 ``[N, H, W, C]``; values are clamped."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise FastgenError(
            f"expected images of shape [N, C, H, W] with N >= 1 and C = 1 or 3, got {list(images.shape)}"
        )
    # A diverged sampler yields NaN; it should still give a viewable (black) image rather than garbage.
    pixels = torch.nan_to_num(images.detach().float().cpu(), nan=-1.0).clamp(-1, 1)
    pixels = ((pixels + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def save_image_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int = 8, padding: int = 2) -> Path:
    """Save ``[N, C, H, W]`` images in [-1, 1] as one PNG grid with ``nrow`` images per row, atomically.

    The grid has ``min(nrow, N)`` columns and ``ceil(N / columns)`` rows, with ``padding`` black pixels
    between and around the images: width = columns·(W + padding) + padding, likewise for the height.
    Grey images give a greyscale PNG. Missing parent folders are created; :func:`fastgen.outputs.check_output`'s
    rules apply. Returns the path written.
    """
    if not isinstance(nrow, int) or nrow < 1 or not isinstance(padding, int) or padding < 0:
        raise FastgenError(f"save_image_grid needs nrow >= 1 and padding >= 0, got nrow={nrow!r}, padding={padding!r}")
    pixels = images_to_uint8(images)
    count, height, width, channels = pixels.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.uint8)
    for index, image in enumerate(pixels):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    picture = Image.fromarray(grid[..., 0] if channels == 1 else grid)

    return write_file(path, PNG, lambda staging: picture.save(staging, format="PNG"))


def read_image_files(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[torch.Tensor]]:
    """PNG/JPEG files, and every one under a folder (sorted), as ``[C, H, W]`` float32 in [-1, 1] with their paths.

    C is 1 for grey files and 3 otherwise; sizes may differ. A missing or undecodable file is an error that names it.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(image_files_under(item))
        elif item.is_file():
            files.append(item)
        else:
            raise FastgenError(f"input {item} does not exist")
    if not files:
        raise FastgenError("no input images given")
    images = []
    for file in files:
        try:
            pixels = decode_image(file)[0]
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise FastgenError(f"cannot read {file} as an image ({error}); give PNG or JPEG files") from None
        unit = pixels / 255 if pixels.dtype == np.uint8 else pixels  # 16-bit grey decodes to float in [0, 1]
        images.append(torch.tensor(unit, dtype=torch.float32).permute(2, 0, 1) * 2 - 1)
    return files, images
