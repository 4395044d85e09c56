"""The fused reverse steps: torch tensors in, one kernel launch (plus cuFFT transforms where the math is spectral).

Each function is the fused form of one step op of the sampling program (export/PROGRAM.md) and takes that op's
constants, computed in float64 by :mod:`fastgen.diffusion`, whose torch steps stay the CPU path and the oracle;
the per-element math lives in the ``.cu`` sources.

Noise, for every step: a white-noise tensor (the same noise the reference takes, read by the kernel),
:class:`PhiloxNoise` (drawn in-kernel; :mod:`fastgen.kernels.philox` reproduces it on the CPU), or ``None``
(no noise term: the posterior mean).

Tensors must be CUDA tensors; (a) and (d) read and write float32, float16 or bfloat16 directly, (b) and (c)
transform in float32 and return the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fastgen.diffusion import blur
from fastgen.diffusion.ddpm import AffineStepConstants
from fastgen.diffusion.udpm import BlockPosteriorConstants, MatheronConstants
from fastgen.errors import FastgenError
from fastgen.kernels import loader
from fastgen.kernels.philox import check_seed_offset

# fg_noise_mode in common.cuh
_NOISE_NONE, _NOISE_PHILOX, _NOISE_TENSOR = 0, 1, 2
_SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class PhiloxNoise:
    """Draw a step's noise in-kernel from Philox4x32-10: ``(seed, offset)`` fixes it exactly.

    Give every launch a fresh ``offset`` (e.g. the step count): one (seed, offset) is one noise field.
    """

    seed: int
    offset: int = 0

    def __post_init__(self) -> None:
        check_seed_offset(self.seed, self.offset)


Noise = Tensor | PhiloxNoise | None


# ------------------------------------------------------------------------------------------ launch helpers


def _cuda_input(x: object, name: str, dtypes: tuple[torch.dtype, ...], alignment: int = 1) -> Tensor:
    """A contiguous CUDA tensor whose data pointer is aligned to ``alignment`` elements (copied if not)."""
    if not isinstance(x, Tensor) or x.dtype not in dtypes:
        found = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise FastgenError(f"{name} must be a tensor of {', '.join(map(str, dtypes))}, got {found}")
    if not x.is_cuda:
        raise FastgenError(f"{name} is on {x.device}; fastgen's fused kernels need CUDA tensors")
    x = x.contiguous()
    # A view into the middle of a storage can break the kernels' vector loads; a copy is aligned.
    return x if x.data_ptr() % (alignment * x.element_size()) == 0 else x.clone()


def _check_shape(x: Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape) != shape:
        raise FastgenError(f"{name} has shape {tuple(x.shape)}, expected {shape}")


def _noise_args(noise: Noise, like: Tensor, alignment: int) -> tuple[int, int, np.uint64, np.uint64, Tensor | None]:
    """(mode, pointer, seed, offset, tensor kept alive until the launch) for an elementwise noise argument."""
    if noise is None:
        return _NOISE_NONE, 0, np.uint64(0), np.uint64(0), None
    if isinstance(noise, PhiloxNoise):
        return _NOISE_PHILOX, 0, np.uint64(noise.seed), np.uint64(noise.offset), None
    if isinstance(noise, Tensor):
        _check_shape(noise, tuple(like.shape), "noise")
        tensor = _cuda_input(noise.to(device=like.device, dtype=like.dtype), "noise", (like.dtype,), alignment)
        return _NOISE_TENSOR, tensor.data_ptr(), np.uint64(0), np.uint64(0), tensor
    raise FastgenError(f"noise must be a tensor, PhiloxNoise or None, got {type(noise).__name__}")


def _spectral_noise_args(noise: object, given: type, expected: str) -> tuple[int, np.uint64, np.uint64]:
    """(mode, seed, offset) for the spectral kernels, whose given noise travels inside the transform."""
    if noise is None:
        return _NOISE_NONE, np.uint64(0), np.uint64(0)
    if isinstance(noise, PhiloxNoise):
        return _NOISE_PHILOX, np.uint64(noise.seed), np.uint64(noise.offset)
    if isinstance(noise, given):
        return _NOISE_TENSOR, np.uint64(0), np.uint64(0)
    raise FastgenError(f"noise must be {expected}, PhiloxNoise or None, got {type(noise).__name__}")


# ------------------------------------------------------------------------------------------------- (a) UDPM


def udpm_posterior_step(constants: BlockPosteriorConstants, x_l: Tensor, x_hat: Tensor, noise: Noise) -> Tensor:
    """The ``udpm_posterior`` op (:meth:`UDPM.posterior_constants`) for γ = 2: one thread per 2×2 block.

    A noise tensor has x_hat's shape; PhiloxNoise uses :func:`philox.block_noise`'s layout.
    """
    if tuple(constants.taps.shape) != (2, 2):
        raise FastgenError(f"the fused UDPM posterior handles γ = 2 only, got {tuple(constants.taps.shape)} taps")
    x_l = _cuda_input(x_l, "x_l", tuple(_SUFFIX))
    x_hat = _cuda_input(x_hat, "x_hat", (x_l.dtype,), alignment=2)
    if x_l.dim() != 4:
        raise FastgenError(f"x_l must be [B, C, h, w], got shape {tuple(x_l.shape)}")
    batch, channels, height, width = x_l.shape
    _check_shape(x_hat, (batch, channels, 2 * height, 2 * width), "x_hat")
    # Level 1 has no noise term at all: skip drawing it.
    if constants.ke == 0 and constants.kep == 0:
        noise = None
    mode, noise_ptr, seed, offset, _keep = _noise_args(noise, x_hat, alignment=2)
    out = torch.empty_like(x_hat)
    blocks = x_l.numel()
    loader.launch(
        "udpm_posterior.cu",
        f"fastgen_udpm_posterior_{_SUFFIX[x_l.dtype]}",
        blocks,
        (
            x_l.data_ptr(), x_hat.data_ptr(), noise_ptr, out.data_ptr(), np.uint64(blocks), np.uint32(width),
            *(np.float32(w) for w in constants.taps.reshape(-1).tolist()),
            np.float32(constants.kx), np.float32(constants.kp), np.float32(constants.ky),
            np.float32(constants.ke), np.float32(constants.kep), np.int32(mode), seed, offset,
        ),
        x_l.device,
    )  # fmt: skip
    return out


# -------------------------------------------------------------------------------------- (b) UDPM circulant


def matheron_spectra(constants: MatheronConstants, device: torch.device) -> tuple[Tensor, Tensor]:
    """ŵ and ĉ_{l-1} cut to the rfft2 half spectrum, as the kernel reads them (complex64, float32 on ``device``)."""
    columns = constants.transfer.shape[-1] // 2 + 1
    transfer = constants.transfer[:, :columns].to(device=device, dtype=torch.complex64).contiguous()
    return transfer, constants.prior_cov[:, :columns].to(device=device, dtype=torch.float32).contiguous()


def udpm_matheron_step(
    constants: MatheronConstants,
    spectra: tuple[Tensor, Tensor],
    x_l: Tensor,
    x_hat: Tensor,
    noise: PhiloxNoise | tuple[Tensor, Tensor] | None,
) -> Tensor:
    """The ``udpm_matheron`` op (:meth:`CirculantUDPM.matheron_constants`) for γ = 2: rfft2 of the inputs, one
    spectral kernel, irfft2. ``spectra``: :func:`matheron_spectra` of the constants (made once, on the device).

    ``noise``: (prior_noise at x_hat's shape, obs_noise at x_l's shape) as the reference takes them, or
    PhiloxNoise (e drawn on the high-res grid, e' on the low-res grid, see udpm_matheron.cu), or None.
    """
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    x_l = _cuda_input(x_l, "x_l", dtypes)
    x_hat = _cuda_input(x_hat, "x_hat", (x_l.dtype,))
    if x_l.dim() != 4:
        raise FastgenError(f"x_l must be [B, C, h, w], got shape {tuple(x_l.shape)}")
    batch, channels, height, width = x_l.shape
    _check_shape(x_hat, (batch, channels, 2 * height, 2 * width), "x_hat")
    if not bool(constants.prior_cov.any()):
        # C_{l-1} = 0 (level 1): the prior sample is x̂ and every correction is 0, so the posterior is x̂ exactly.
        return x_hat.clone()
    mode, seed, offset = _spectral_noise_args(noise, tuple, "(prior_noise, obs_noise)")
    high, low = [x_hat.float()], [x_l.float()]
    if mode == _NOISE_TENSOR:
        if len(noise) != 2 or not all(isinstance(n, Tensor) for n in noise):
            raise FastgenError("noise must be the pair of tensors (prior_noise, obs_noise)")
        prior_noise, obs_noise = noise
        _check_shape(prior_noise, tuple(x_hat.shape), "prior_noise")
        _check_shape(obs_noise, tuple(x_l.shape), "obs_noise")
        high.append(prior_noise.to(device=x_hat.device, dtype=torch.float32))
        low.append(obs_noise.to(device=x_l.device, dtype=torch.float32))
    # One batched transform per grid; torch.fft is cuFFT on CUDA tensors.
    high_spectra = torch.fft.rfft2(torch.stack(high), norm="ortho").contiguous()
    low_spectra = torch.fft.rfft2(torch.stack(low), norm="ortho").contiguous()
    transfer, prior_cov = spectra
    out = torch.empty_like(high_spectra[0])
    images = batch * channels
    loader.launch(
        "udpm_matheron.cu",
        "fastgen_udpm_matheron",
        images * height * (width // 2 + 1),
        (
            high_spectra.data_ptr(), low_spectra.data_ptr(), transfer.data_ptr(), prior_cov.data_ptr(),
            out.data_ptr(), np.uint64(images), np.uint32(height), np.uint32(width),
            np.float32(constants.alpha), np.float32(constants.sigma), np.float32(constants.prior_scale),
            np.int32(mode), seed, offset,
        ),
        x_hat.device,
    )  # fmt: skip
    return torch.fft.irfft2(out, s=(2 * height, 2 * width), norm="ortho").to(x_hat.dtype)


# ---------------------------------------------------------------------------------------------- (c) blur


def blur_step(coefficients: Tensor, basis: str, x: Tensor, eps_hat: Tensor, noise: Noise) -> Tensor:
    """One blur reverse step (:func:`blur.combine_step`): one transform of [x, ε̂ (, z)], one kernel, one inverse.

    ``coefficients``: (c_x, c_eps, c_z) of the step as a float32 device tensor [3, rows, columns] of the stored
    spectrum. PhiloxNoise draws z̄ in the spectral domain (Hermitian-symmetric for the Fourier basis), which saves
    transforming a noise image; :func:`philox.hermitian_noise_spectrum` / ``dct_noise_spectrum`` reproduce it.
    """
    blur.check_basis(basis)
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    x = _cuda_input(x, "x", dtypes)
    eps_hat = _cuda_input(eps_hat, "eps_hat", (x.dtype,))
    if x.dim() != 4:
        raise FastgenError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    size = tuple(x.shape[-2:])
    _check_shape(eps_hat, tuple(x.shape), "eps_hat")
    rows, columns = blur.spectrum_shape(basis, *size)
    _check_shape(coefficients, (3, rows, columns), "coefficients")
    mode, seed, offset = _spectral_noise_args(noise, Tensor, "a tensor")
    images = [x.float(), eps_hat.float()]
    if mode == _NOISE_TENSOR:
        _check_shape(noise, tuple(x.shape), "noise")
        images.append(noise.to(device=x.device, dtype=torch.float32))
    spectra = blur.to_spectrum(torch.stack(images), basis).contiguous()
    coefficients = _cuda_input(coefficients, "coefficients", (torch.float32,))
    out = torch.empty_like(spectra[0])
    planes = x.shape[0] * x.shape[1]
    loader.launch(
        "blur_step.cu",
        f"fastgen_blur_step_{basis}",
        out.numel(),
        (
            spectra.data_ptr(), coefficients.data_ptr(), out.data_ptr(), np.uint64(planes),
            np.uint32(size[0]), np.uint32(size[1]), np.int32(mode), seed, offset,
        ),
        x.device,
    )  # fmt: skip
    return blur.from_spectrum(out, basis, size).to(x.dtype)


# ------------------------------------------------------------------------------------------- (d) DDPM/DDIM


def affine_step(constants: AffineStepConstants, x_t: Tensor, model_out: Tensor, noise: Noise) -> Tensor:
    """One step of an affine chain (:func:`ddpm.ancestral_constants`, :func:`ddpm.ddim_constants`), elementwise."""
    x_t = _cuda_input(x_t, "x_t", tuple(_SUFFIX), alignment=4)
    model_out = _cuda_input(model_out, "model_out", (x_t.dtype,), alignment=4)
    _check_shape(model_out, tuple(x_t.shape), "model_out")
    mode, noise_ptr, seed, offset, _keep = _noise_args(None if constants.s == 0 else noise, x_t, alignment=4)
    out = torch.empty_like(x_t)
    count = x_t.numel()
    loader.launch(
        "ddpm_step.cu",
        f"fastgen_ddpm_step_{_SUFFIX[x_t.dtype]}",
        (count + 3) // 4,
        (
            x_t.data_ptr(), model_out.data_ptr(), noise_ptr, out.data_ptr(), np.uint64(count),
            np.float32(constants.a), np.float32(constants.b), np.int32(constants.clip),
            np.float32(constants.p), np.float32(constants.q), np.float32(constants.r), np.float32(constants.s),
            np.int32(mode), seed, offset,
        ),
        x_t.device,
    )  # fmt: skip
    return out
