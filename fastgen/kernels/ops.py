"""The fused reverse steps: torch tensors in, one kernel launch (plus cuFFT transforms where the math is spectral).

Each function is the fused form of a reference step in :mod:`fastgen.diffusion` and takes the same process or
schedule object; the reference stays the CPU path and the oracle. Only the per-launch constants are computed
here, on the host, from the schedule (``*_constants``); the per-element math lives in the ``.cu`` sources.

Noise, for every step: a white-noise tensor (the same noise the reference takes, read by the kernel),
:class:`PhiloxNoise` (drawn in-kernel; :mod:`fastgen.kernels.philox` reproduces it on the CPU), or ``None``
(no noise term: the posterior mean).

Tensors must be CUDA tensors; (a) and (d) read and write float32, float16 or bfloat16 directly, (b) and (c)
transform in float32 and return the input dtype.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fastgen.diffusion import blur
from fastgen.diffusion.ddpm import DiffusionSchedule
from fastgen.diffusion.udpm import UDPM, CirculantUDPM
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


# --------------------------------------------------------------------------------------- host constants


@dataclass(frozen=True)
class UDPMPosteriorConstants:
    """The five scalars of udpm_posterior.cu: x_{l-1} = kx·v + taps·(kp·d + ky·y) + ke·e + taps·(kep·de)."""

    taps: tuple[float, float, float, float]  # the 2×2 kernel, row-major
    kx: float
    kp: float
    ky: float
    ke: float
    kep: float


def _check_udpm(process: object, kind: type, what: str, level: object) -> None:
    if not isinstance(process, kind):
        raise FastgenError(f"the {what} needs a {kind.__name__} process, got {type(process).__name__}")
    schedule = process.schedule
    if schedule.gamma != 2:
        raise FastgenError(f"the {what} handles γ = 2 only, got γ = {schedule.gamma}; use the reference")
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= schedule.levels:
        raise FastgenError(f"UDPM level must be an integer in [1, {schedule.levels}], got {level!r}")


def udpm_posterior_constants(process: UDPM, level: int) -> UDPMPosteriorConstants:
    """Host constants of the 2×2-block posterior kernel for ``level`` (γ = 2, any Lemma-1 2×2 kernel).

    Written finite at σ̃_{l-1} = 0 (DESIGN's formulas times σ̃²σ²), so level 1 gives (1, 0, 0, 0, 0).
    """
    _check_udpm(process, UDPM, "fused UDPM posterior", level)
    schedule = process.schedule
    alpha, sigma = schedule.alphas[level - 1], schedule.sigmas[level - 1]
    prior_scale = schedule.alpha_bar(level - 1)
    prior_variance = schedule.sigma_tilde(level - 1) ** 2  # 1/B
    evidence_variance = alpha**2 * prior_variance + sigma**2  # σ_l²·(1 + A/B)
    gain = alpha * prior_variance / evidence_variance  # (α/σ²)/(A+B)
    null_std = math.sqrt(prior_variance)  # √(1/B)
    range_std = math.sqrt(prior_variance * sigma**2 / evidence_variance)  # √(1/(A+B))
    taps = tuple(float(w) for w in process.kernel.reshape(-1))
    return UDPMPosteriorConstants(
        taps=taps, kx=prior_scale, kp=-gain * alpha * prior_scale, ky=gain, ke=null_std, kep=range_std - null_std
    )


@dataclass(frozen=True)
class AffineStepConstants:
    """The scalars of ddpm_step.cu: x0 = a·x + b·m (clamped to [-1, 1] if ``clip``), out = p·x0 + q·x + r·m + s·z."""

    a: float
    b: float
    clip: bool
    p: float
    q: float
    r: float
    s: float


def _x0_and_eps(schedule: DiffusionSchedule, t: int, clip_x0: bool) -> tuple[float, float, bool]:
    """(a, b, eps_is_model_out) of model_output_to_x0_eps at step t."""
    if schedule.prediction_type == "eps":
        a, b = float(schedule.sqrt_recip_alphas_cumprod[t]), -float(schedule.sqrt_recipm1_alphas_cumprod[t])
        return a, b, not clip_x0
    return 0.0, 1.0, False


def _check_t(schedule: DiffusionSchedule, name: str, t: object, lowest: int = 0) -> int:
    if isinstance(t, bool) or not isinstance(t, int) or not lowest <= t < schedule.num_steps:
        raise FastgenError(f"{name} must be an integer in [{lowest}, {schedule.num_steps}), got {t!r}")
    return t


def ancestral_constants(schedule: DiffusionSchedule, t: int, clip_x0: bool = False) -> AffineStepConstants:
    """Constants of ddpm.ancestral_step at integer step ``t``: out = μ̃_t(x0_hat, x_t) + β̃_t^½ z."""
    _check_t(schedule, "t", t)
    a, b, _ = _x0_and_eps(schedule, t, clip_x0)
    return AffineStepConstants(
        a=a,
        b=b,
        clip=clip_x0,
        p=float(schedule.posterior_mean_coef_x0[t]),
        q=float(schedule.posterior_mean_coef_xt[t]),
        r=0.0,
        s=float(schedule.posterior_std[t]),
    )


def ddim_constants(
    schedule: DiffusionSchedule, t: int, t_prev: int, eta: float, clip_x0: bool = False
) -> AffineStepConstants:
    """Constants of ddpm.ddim_step from ``t`` to ``t_prev`` (-1: the clean image)."""
    _check_t(schedule, "t", t)
    _check_t(schedule, "t_prev", t_prev, lowest=-1)
    if not 0.0 <= eta <= 1.0:
        raise FastgenError(f"eta must lie in [0, 1], got {eta}")
    a, b, eps_is_model_out = _x0_and_eps(schedule, t, clip_x0)
    alpha_bar = float(schedule.alphas_cumprod[t])
    alpha_bar_prev = float(schedule.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    variance = eta**2 * (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)
    direction = math.sqrt(max(1 - alpha_bar_prev - variance, 0.0))
    p = math.sqrt(alpha_bar_prev)
    if eps_is_model_out:
        return AffineStepConstants(a=a, b=b, clip=clip_x0, p=p, q=0.0, r=direction, s=math.sqrt(variance))
    # ε is recomputed from x0: (x − √ᾱ_t·x0)/√(1−ᾱ_t), folded into p and q.
    sqrt_alpha_bar = float(schedule.sqrt_alphas_cumprod[t])
    sqrt_one_minus = float(schedule.sqrt_one_minus_alphas_cumprod[t])
    return AffineStepConstants(
        a=a,
        b=b,
        clip=clip_x0,
        p=p - direction * sqrt_alpha_bar / sqrt_one_minus,
        q=direction / sqrt_one_minus,
        r=0.0,
        s=math.sqrt(variance),
    )


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


def udpm_posterior_step(process: UDPM, x_l: Tensor, x_hat: Tensor, level: int, noise: Noise) -> Tensor:
    """Fused :meth:`UDPM.posterior_step` (γ = 2): one thread per 2×2 block; at level 1 exactly ``x_hat``.

    A noise tensor has x_hat's shape (the latents' e_l); PhiloxNoise uses :func:`philox.block_noise`'s layout.
    """
    constants = udpm_posterior_constants(process, level)
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
            *(np.float32(w) for w in constants.taps),
            np.float32(constants.kx), np.float32(constants.kp), np.float32(constants.ky),
            np.float32(constants.ke), np.float32(constants.kep), np.int32(mode), seed, offset,
        ),
        x_l.device,
    )  # fmt: skip
    return out


# -------------------------------------------------------------------------------------- (b) UDPM circulant


@functools.lru_cache(maxsize=32)
def _matheron_spectra(
    process: CirculantUDPM, level: int, height: int, width: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """ŵ and ĉ_{l-1} on x_{l-1}'s grid, cut to the rfft2 half spectrum (they depend on the level and size only)."""
    columns = width // 2 + 1
    transfer = process.transfer_function((height, width), device, torch.float64)[:, :columns]
    prior_cov = process.marginal_cov_spectrum(level - 1, (height, width), device, torch.float64)[:, :columns]
    return transfer.to(torch.complex64).contiguous(), prior_cov.to(torch.float32).contiguous()


def udpm_matheron_step(
    process: CirculantUDPM,
    x_l: Tensor,
    x_hat: Tensor,
    level: int,
    noise: PhiloxNoise | tuple[Tensor, Tensor] | None,
) -> Tensor:
    """Fused :meth:`CirculantUDPM.matheron_step` (γ = 2): rfft2 of the inputs, one spectral kernel, irfft2.

    ``noise``: (prior_noise at x_hat's shape, obs_noise at x_l's shape) as the reference takes them, or
    PhiloxNoise (e drawn on the high-res grid, e' on the low-res grid, see udpm_matheron.cu), or None.
    """
    _check_udpm(process, CirculantUDPM, "fused Matheron step", level)
    schedule = process.schedule
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    x_l = _cuda_input(x_l, "x_l", dtypes)
    x_hat = _cuda_input(x_hat, "x_hat", (x_l.dtype,))
    if x_l.dim() != 4:
        raise FastgenError(f"x_l must be [B, C, h, w], got shape {tuple(x_l.shape)}")
    batch, channels, height, width = x_l.shape
    _check_shape(x_hat, (batch, channels, 2 * height, 2 * width), "x_hat")
    if level == 1:
        # C_0 = 0: the prior sample is x̂ and every correction is 0, so the posterior is x̂ exactly.
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
    transfer, prior_cov = _matheron_spectra(process, level, 2 * height, 2 * width, x_hat.device)
    out = torch.empty_like(high_spectra[0])
    images = batch * channels
    loader.launch(
        "udpm_matheron.cu",
        "fastgen_udpm_matheron",
        images * height * (width // 2 + 1),
        (
            high_spectra.data_ptr(), low_spectra.data_ptr(), transfer.data_ptr(), prior_cov.data_ptr(),
            out.data_ptr(), np.uint64(images), np.uint32(height), np.uint32(width),
            np.float32(schedule.alphas[level - 1]), np.float32(schedule.sigmas[level - 1]),
            np.float32(schedule.alpha_bar(level - 1)), np.int32(mode), seed, offset,
        ),
        x_hat.device,
    )  # fmt: skip
    return torch.fft.irfft2(out, s=(2 * height, 2 * width), norm="ortho").to(x_hat.dtype)


# ---------------------------------------------------------------------------------------------- (c) blur


def blur_reverse_step(schedule: blur.BlurSchedule, x: Tensor, t: int, eps_hat: Tensor, noise: Noise) -> Tensor:
    """Fused :func:`blur.reverse_step` at integer step ``t``: one transform of [x, ε̂ (, z)], one kernel, one inverse.

    PhiloxNoise draws z̄ in the spectral domain (Hermitian-symmetric for the Fourier basis), which saves
    transforming a noise image; :func:`philox.hermitian_noise_spectrum` / ``dct_noise_spectrum`` reproduce it.
    """
    if not isinstance(schedule, blur.BlurSchedule):
        raise FastgenError(f"schedule must be a BlurSchedule, got {type(schedule).__name__}")
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < schedule.num_steps:
        raise FastgenError(f"step index must be an integer in [0, {schedule.num_steps}), got {t!r}")
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    x = _cuda_input(x, "x", dtypes)
    eps_hat = _cuda_input(eps_hat, "eps_hat", (x.dtype,))
    size = (schedule.height, schedule.width)
    if x.dim() != 4 or tuple(x.shape[-2:]) != size:
        raise FastgenError(f"x has shape {tuple(x.shape)}; this blur schedule expects [B, C, {size[0]}, {size[1]}]")
    _check_shape(eps_hat, tuple(x.shape), "eps_hat")
    if schedule.alphas.device != x.device:
        raise FastgenError(
            f"x is on {x.device} but the blur schedule is on {schedule.alphas.device}; use schedule.to()"
        )
    mode, seed, offset = _spectral_noise_args(noise, Tensor, "a tensor")
    images = [x.float(), eps_hat.float()]
    if mode == _NOISE_TENSOR:
        _check_shape(noise, tuple(x.shape), "noise")
        images.append(noise.to(device=x.device, dtype=torch.float32))
    spectra = blur.to_spectrum(torch.stack(images), schedule.basis).contiguous()
    rows, columns = blur.spectrum_shape(schedule.basis, *size)
    coefficients = torch.stack(blur.reverse_step_coefficients(schedule, t)).reshape(3, rows, columns)
    coefficients = coefficients.to(torch.float32).contiguous()
    out = torch.empty_like(spectra[0])
    planes = x.shape[0] * x.shape[1]
    loader.launch(
        "blur_step.cu",
        f"fastgen_blur_step_{schedule.basis}",
        out.numel(),
        (
            spectra.data_ptr(), coefficients.data_ptr(), out.data_ptr(), np.uint64(planes),
            np.uint32(size[0]), np.uint32(size[1]), np.int32(mode), seed, offset,
        ),
        x.device,
    )  # fmt: skip
    return blur.from_spectrum(out, schedule.basis, size).to(x.dtype)


# ------------------------------------------------------------------------------------------- (d) DDPM/DDIM


def _affine_step(constants: AffineStepConstants, x_t: Tensor, model_out: Tensor, noise: Noise) -> Tensor:
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


def ddpm_ancestral_step(
    schedule: DiffusionSchedule, x_t: Tensor, t: int, model_out: Tensor, noise: Noise, clip_x0: bool = False
) -> Tensor:
    """Fused :func:`ddpm.ancestral_step` at integer step ``t`` (the same ``t`` for the whole batch)."""
    return _affine_step(ancestral_constants(schedule, t, clip_x0), x_t, model_out, noise)


def ddim_step(
    schedule: DiffusionSchedule,
    x_t: Tensor,
    t: int,
    t_prev: int,
    model_out: Tensor,
    eta: float,
    noise: Noise,
    clip_x0: bool = False,
) -> Tensor:
    """Fused :func:`ddpm.ddim_step` from integer ``t`` to ``t_prev`` (-1: the clean image)."""
    return _affine_step(ddim_constants(schedule, t, t_prev, eta, clip_x0), x_t, model_out, noise)
