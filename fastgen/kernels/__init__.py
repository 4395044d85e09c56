"""Fused CUDA kernels for the reverse steps, compiled at run time with NVRTC (the .cu sources ship here).

Each is one step op of the sampling program (export/PROGRAM.md), with that op's constants:

* (a) :func:`udpm_posterior_step` — UDPM exact posterior over 2×2 blocks (udpm_posterior.cu)
* (b) :func:`udpm_matheron_step` — circulant-kernel UDPM posterior by Matheron's rule, cuFFT + one spectral kernel
* (c) :func:`blur_step` — blur diffusion reverse step, cuFFT + one spectral kernel (blur_step.cu)
* (d) :func:`affine_step` — DDPM ancestral / DDIM steps, elementwise (ddpm_step.cu)

Noise is drawn in-kernel by a counter-based Philox4x32-10 (:class:`PhiloxNoise`), mirrored on the CPU by
:mod:`fastgen.kernels.philox`. The references in :mod:`fastgen.diffusion` are the CPU path and the oracle.
Importing this package needs neither a GPU nor cuda-python; launching a kernel needs both.
"""

from fastgen.kernels.loader import HEADERS, KERNEL_DIR, SOURCES, compile_source
from fastgen.kernels.ops import (
    Noise,
    PhiloxNoise,
    affine_step,
    blur_step,
    matheron_spectra,
    udpm_matheron_step,
    udpm_posterior_step,
)

__all__ = [
    "HEADERS",
    "KERNEL_DIR",
    "SOURCES",
    "Noise",
    "PhiloxNoise",
    "affine_step",
    "blur_step",
    "compile_source",
    "matheron_spectra",
    "udpm_matheron_step",
    "udpm_posterior_step",
]
