"""PSNR and SSIM against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from fastgen.errors import FastgenError
from fastgen.metrics import psnr, ssim


def test_psnr_of_a_constant_offset_is_its_closed_form() -> None:
    x = torch.rand(3, 1, 8, 8) * 1.6 - 0.8
    offset = 0.1  # MSE = 0.01 on a data range of 2: 10·log10(4 / 0.01)
    torch.testing.assert_close(psnr(x, x + offset), torch.full((3,), 10 * math.log10(400), dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    """No variance, no covariance: SSIM = (2ab + C1) / (a² + b² + C1) with C1 = (0.01·2)²."""
    a, b = 0.3, -0.2
    c1 = 0.02**2
    x, y = torch.full((1, 3, 9, 9), a), torch.full((1, 3, 9, 9), b)
    torch.testing.assert_close(ssim(x, y).item(), (2 * a * b + c1) / (a * a + b * b + c1))


def test_ssim_is_one_for_equal_images_symmetric_and_falls_with_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1
    torch.testing.assert_close(ssim(x, x), torch.ones(4, dtype=torch.float64))
    noise = torch.randn(x.shape, generator=generator)
    slightly, badly = (x + 0.05 * noise).clamp(-1, 1), (x + 0.5 * noise).clamp(-1, 1)
    torch.testing.assert_close(ssim(x, badly), ssim(badly, x))
    assert (ssim(x, badly) < ssim(x, slightly)).all() and (ssim(x, slightly) < 1).all()


def test_mismatched_or_tiny_images_are_errors() -> None:
    with pytest.raises(FastgenError, match="one shape"):
        psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4))
    with pytest.raises(FastgenError, match="at least 7x7"):
        ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
