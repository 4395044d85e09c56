"""Fused CUDA kernels for the reverse steps, compiled at run time with NVRTC (the .cu sources ship here).

* (a) :func:`udpm_posterior_step` — UDPM exact posterior over 2×2 blocks (udpm_posterior.cu)
* (b) :func:`udpm_matheron_step` — circulant-kernel UDPM posterior by Matheron's rule, cuFFT + one spectral kernel
* (c) :func:`blur_reverse_step` — blur diffusion reverse step, cuFFT + one spectral kernel (blur_step.cu)
* (d) :func:`ddpm_ancestral_step`, :func:`ddim_step` — elementwise (ddpm_step.cu)

Noise is drawn in-kernel by a counter-based Philox4x32-10 (:class:`PhiloxNoise`), mirrored on the CPU by
:mod:`fastgen.kernels.philox`. The references in :mod:`fastgen.diffusion` are the CPU path and the oracle.
Importing this package needs neither a GPU nor cuda-python; launching a kernel needs both.
"""

from fastgen.kernels.loader import HEADERS, KERNEL_DIR, SOURCES, compile_source
from fastgen.kernels.ops import (
    AffineStepConstants,
    Noise,
    PhiloxNoise,
    UDPMPosteriorConstants,
    ancestral_constants,
    blur_reverse_step,
    ddim_constants,
    ddim_step,
    ddpm_ancestral_step,
    udpm_matheron_step,
    udpm_posterior_constants,
    udpm_posterior_step,
)

__all__ = [
    "HEADERS",
    "KERNEL_DIR",
    "SOURCES",
    "AffineStepConstants",
    "Noise",
    "PhiloxNoise",
    "UDPMPosteriorConstants",
    "ancestral_constants",
    "blur_reverse_step",
    "compile_source",
    "ddim_constants",
    "ddim_step",
    "ddpm_ancestral_step",
    "udpm_matheron_step",
    "udpm_posterior_constants",
    "udpm_posterior_step",
]
