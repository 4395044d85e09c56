"""Full-reference image fidelity: PSNR and SSIM per image, for images in the model range [-1, 1].

SSIM follows Wang et al. (2004): Gaussian window σ = 1.5, constants K1 = 0.01, K2 = 0.03 of the data range, local
statistics over the window's valid positions, the mean over positions and channels. The window is 7×7 (as
scikit-image's default size) rather than 11×11 so that it fits small images (16×16 digits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgen.errors import FastgenError

SSIM_WINDOW = 7
SSIM_SIGMA = 1.5
_DATA_RANGE = 2.0  # [-1, 1]


def _check_pair(x: Tensor, y: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor) or x.dim() != 4 or x.shape != y.shape:
        shapes = [tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__ for v in (x, y)]
        raise FastgenError(f"fidelity metrics compare two [N, C, H, W] batches of one shape, got {shapes[0]} and {shapes[1]}")


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image ``[N]`` (data range 2: images in [-1, 1]); inf where equal."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(_DATA_RANGE**2 / mse)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Structural similarity per image ``[N]`` (1 where equal); images at least 7×7."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise FastgenError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    x, y = x.double(), y.double()
    taps = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    taps = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    window = torch.outer(taps, taps) / taps.sum() ** 2
    channels = x.shape[1]
    window = window.expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).to(x.device)

    def local_mean(v: Tensor) -> Tensor:
        return F.conv2d(v, window, groups=channels)

    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mean_x**2
    var_y = local_mean(y * y) - mean_y**2
    cov = local_mean(x * y) - mean_x * mean_y
    c1, c2 = (0.01 * _DATA_RANGE) ** 2, (0.03 * _DATA_RANGE) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1)
