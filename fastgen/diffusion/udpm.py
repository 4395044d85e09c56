"""UDPM — Upsampling Diffusion Probabilistic Models (Abu-Hussein & Giryes), with the exact posterior.

Forward process: ``x_l = α_l H x_{l-1} + σ_l e`` where ``H`` blurs with a kernel ``w`` and subsamples with
stride γ, so every level shrinks the image by γ per axis. Two processes implement it:

* :class:`UDPM` — kernels satisfying the paper's Lemma 1 (support ≤ γ per axis, ‖w‖₂ = 1, e.g. the 2×2 box
  with taps 0.5). ``H`` is a stride-γ convolution, ``H Hᵀ = I`` and ``P = HᵀH`` is an orthogonal projection,
  so the posterior is the closed form of DESIGN.md ("UDPM posterior, exact"): one pass over γ×γ blocks.
* :class:`CirculantUDPM` — any circulant (periodic-boundary) kernel, e.g. a wide Gaussian. Every covariance
  stays diagonal in the DFT of its grid (DESIGN.md "General kernels, by FFT").

Where the paper is wrong (DESIGN.md is binding): eq. 9 has typos — the marginal is
``q(x_l|x0) = N(ᾱ_l H^l x0, σ̃_l² I)`` with ``σ̃_l² = ᾱ_l² Σ_{k≤l} σ_k²/ᾱ_k²``; eq. 21 diagonalises HᵀH with a DFT,
but HᵀH is not shift invariant; the official code's scalar Σ is exact only on range(Hᵀ).

Level-1 limit: ``σ̃_0 = 0`` (``x_0`` is the data), so ``B = 1/σ̃_0² = ∞`` and the posterior collapses onto
``x_0 = x̂``. The formulas below are DESIGN's multiplied through by ``σ̃²_{l-1} σ_l²``, which keeps them finite:
at level 1 the gain and both variances are exactly 0 and the step returns ``x̂`` bit for bit. Consequently
the level-1 noise ``e_1`` has no effect on a sample.

Latents: a sample is a deterministic function of :class:`UDPMLatents` (``x_L`` and per level one white noise map,
two for a circulant kernel's Matheron step), which is what makes interpolation, perturbation and swapping (paper
Sec. 4, App. C) possible.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgen.errors import FastgenError

__all__ = [
    "CirculantUDPM",
    "Predictor",
    "Sampled",
    "UDPM",
    "UDPMLatents",
    "UDPMProcess",
    "UDPMSchedule",
    "box_kernel",
    "check_latents",
    "concat_latents",
    "draw_latents",
    "gaussian_kernel",
    "interpolation_grid",
    "level_predictors",
    "perturb_noise",
    "sample",
    "swap_noise",
]

Predictor = Callable[[Tensor], Tensor]

# ‖w‖₂ = 1 is checked in float64; kernels normalised in float32 are off by ~1e-7.
_NORM_TOLERANCE = 1e-6


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_level(level: object, levels: int, *, allow_zero: bool = False) -> int:
    lowest = 0 if allow_zero else 1
    if not _is_int(level) or not lowest <= level <= levels:
        raise FastgenError(f"UDPM level must be an integer in [{lowest}, {levels}], got {level!r}")
    return level


def _check_image(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise FastgenError(f"{name} must be a floating-point [B, C, H, W] tensor, got {shape}")
    return x


def _check_shape(x: Tensor, expected: Sequence[int], name: str, why: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise FastgenError(f"{name} has shape {tuple(x.shape)}, expected {tuple(expected)} ({why})")


# ---------------------------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class UDPMSchedule:
    """L levels with per-level signal scale α_l ∈ (0, 1] and noise σ_l > 0; γ is the per-level stride.

    Defaults are the paper's: L = 3, α = (0.5, 0.2, 1e-3), σ = (0.1, 0.2, 0.3), γ = 2.
    """

    levels: int = 3
    alphas: tuple[float, ...] = (0.5, 0.2, 1e-3)
    sigmas: tuple[float, ...] = (0.1, 0.2, 0.3)
    gamma: int = 2

    def __post_init__(self) -> None:
        if not _is_int(self.levels) or self.levels < 1:
            raise FastgenError(f"UDPM schedule levels must be a positive integer, got {self.levels!r}")
        if not _is_int(self.gamma) or self.gamma < 2:
            raise FastgenError(f"UDPM schedule gamma (the stride) must be an integer >= 2, got {self.gamma!r}")
        for name in ("alphas", "sigmas"):
            try:
                values = tuple(float(v) for v in getattr(self, name))
            except (TypeError, ValueError) as error:
                raise FastgenError(f"UDPM schedule {name} must be a sequence of numbers: {error}") from None
            if len(values) != self.levels:
                raise FastgenError(
                    f"UDPM schedule has {len(values)} {name} for {self.levels} levels; give one per level"
                )
            object.__setattr__(self, name, values)
        if not all(0 < a <= 1 for a in self.alphas):
            raise FastgenError(f"UDPM schedule alphas must lie in (0, 1], got {self.alphas}")
        if not all(0 < s < math.inf for s in self.sigmas):
            raise FastgenError(f"UDPM schedule sigmas must be positive and finite, got {self.sigmas}")

    def alpha_bar(self, level: int) -> float:
        """ᾱ_l = Π_{k≤l} α_k (ᾱ_0 = 1)."""
        return math.prod(self.alphas[: _check_level(level, self.levels, allow_zero=True)])

    def sigma_tilde(self, level: int) -> float:
        """σ̃_l, the marginal noise std of a Lemma-1 kernel (σ̃_0 = 0).

        Computed by the recursion σ̃_l² = α_l² σ̃_{l-1}² + σ_l², which equals DESIGN's ᾱ_l² Σ σ_k²/ᾱ_k²
        without dividing by ᾱ_k (1e-4 at the paper's level 3).
        """
        variance = 0.0
        for alpha, sigma in zip(self.alphas[: _check_level(level, self.levels, allow_zero=True)], self.sigmas):
            variance = alpha**2 * variance + sigma**2
        return math.sqrt(variance)

    def check_image_size(self, height: int, width: int) -> None:
        """Raise unless a data image of this size survives L subsamplings by γ."""
        factor = self.gamma**self.levels
        if height % factor or width % factor:
            raise FastgenError(
                f"image resolution {height}x{width} is not divisible by γ^L = {factor} "
                f"(γ={self.gamma}, L={self.levels})"
            )


# ----------------------------------------------------------------------------------------------- kernels


def box_kernel(gamma: int = 2) -> Tensor:
    """γ×γ box with unit L2 norm (every tap 1/γ): the paper's kernel, H = γ·avg_pool. Satisfies Lemma 1."""
    if not _is_int(gamma) or gamma < 2:
        raise FastgenError(f"box kernel size gamma must be an integer >= 2, got {gamma!r}")
    return torch.full((gamma, gamma), 1.0 / gamma, dtype=torch.float64)


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> Tensor:
    """size×size sampled Gaussian with unit L2 norm (so H keeps white noise at unit variance per pixel)."""
    if not _is_int(size) or size < 1:
        raise FastgenError(f"gaussian kernel size must be a positive integer, got {size!r}")
    if not 0 < sigma < math.inf:
        raise FastgenError(f"gaussian kernel sigma must be positive and finite, got {sigma!r}")
    taps = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = torch.outer(profile, profile)
    return kernel / kernel.norm()


def _kernel_2d(kernel: Tensor | Sequence, gamma: int) -> Tensor:
    """float64 2-D copy of ``kernel`` (1-D means separable: w ⊗ w), zero-padded to at least γ×γ.

    Padding goes bottom/right so a kernel smaller than the stride stays anchored at the block's corner.
    """
    try:
        weights = torch.as_tensor(kernel, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as error:
        raise FastgenError(f"UDPM kernel must be a 1-D or 2-D array of numbers: {error}") from None
    if weights.dim() == 1:
        weights = torch.outer(weights, weights)
    if weights.dim() != 2 or weights.numel() == 0:
        raise FastgenError(f"UDPM kernel must be a non-empty 1-D or 2-D array, got shape {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or not weights.abs().sum() > 0:
        raise FastgenError("UDPM kernel must be finite and not all zero")
    pad_rows, pad_cols = (max(gamma - size, 0) for size in weights.shape)
    return F.pad(weights, (0, pad_cols, 0, pad_rows))


# ----------------------------------------------------------------------------------------------- latents


@dataclass(frozen=True)
class UDPMLatents:
    """Everything random in one UDPM sample.

    ``x_top`` is the white noise that makes x_L (:meth:`UDPMProcess.prior_sample`), shape [B, C, H/γ^L, W/γ^L];
    keeping it white lets interpolation, perturbation and swaps act on unit-variance maps. ``noises[l-1]`` is e_l, the white noise of the step
    x_l → x_{l-1}, at the resolution of x_{l-1} (so ``noises[0]`` is full resolution; it has no effect under
    the exact posterior, see the module docstring). ``obs_noises[l-1]`` is e'_l, the observation noise of that step
    at the resolution of x_l, for a process whose step is Matheron's rule (:attr:`UDPMProcess.observation_noise`),
    else None.
    """

    x_top: Tensor
    noises: tuple[Tensor, ...]
    obs_noises: tuple[Tensor, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "noises", tuple(self.noises))
        if self.obs_noises is not None:
            object.__setattr__(self, "obs_noises", tuple(self.obs_noises))

    def maps(self) -> tuple[Tensor, ...]:
        """Every map: x_top, e_1 … e_L, then e'_1 … e'_L when present (the order :meth:`from_maps` reads)."""
        return (self.x_top, *self.noises, *(self.obs_noises or ()))

    @classmethod
    def from_maps(cls, maps: Sequence[Tensor], levels: int) -> UDPMLatents:
        """The latents of :meth:`maps` for ``levels`` levels (1 + L maps, or 1 + 2L with observation noise)."""
        x_top, *rest = maps
        return cls(x_top, tuple(rest[:levels]), tuple(rest[levels:]) if len(rest) > levels else None)

    @property
    def levels(self) -> int:
        return len(self.noises)

    @property
    def batch_size(self) -> int:
        return self.x_top.shape[0]

    def to(self, device: torch.device | str) -> UDPMLatents:
        return _map_latents(lambda latent_map: latent_map.to(device), self)

    def select(self, index: int | slice | Tensor) -> UDPMLatents:
        """The latents of the images ``index`` picks out of the batch (an int keeps its batch axis)."""
        index = slice(index, index + 1) if _is_int(index) else index
        return _map_latents(lambda latent_map: latent_map[index], self)

    def latent_maps(self, level: int) -> tuple[Tensor, ...]:
        """The noise of the step x_l → x_{l-1} for l = 1 … L — (e_l,), or (e_l, e'_l) with observation noise — and
        (``x_top``,), the white noise that makes x_L, for l = L + 1: the noise of a step "L + 1".

        Editing level l changes x_{l-1} … x_0 and nothing above: x_L … x_l, hence levels L … l's network inputs, are
        made before it is used (and under the exact posterior level 1's noise changes nothing at all).
        """
        _check_level(level, self.levels + 1)
        if level == self.levels + 1:
            return (self.x_top,)
        return (self.noises[level - 1],) if self.obs_noises is None else (self.noises[level - 1], self.obs_noises[level - 1])


class Sampled(NamedTuple):
    """A batch of samples and the latents that produced them."""

    image: Tensor
    latents: UDPMLatents


@dataclass(frozen=True)
class BlockPosteriorConstants:
    """The exact posterior step of a Lemma-1 kernel per γ×γ block (v = the block of x̂, y = x_l there, e = noise):
    x_{l-1} = kx·v + taps·(kp·d + ky·y) + ke·e + taps·(kep·de), d = Σ taps·v, de = Σ taps·e
    (udpm_posterior.cu)."""

    taps: Tensor  # [γ, γ] float64
    kx: float
    kp: float
    ky: float
    ke: float
    kep: float


@dataclass(frozen=True)
class MatheronConstants:
    """Matheron's-rule step of a circulant kernel (:func:`kalman_update`) on x_{l-1}'s grid."""

    alpha: float
    sigma: float
    prior_scale: float  # ᾱ_{l-1}
    transfer: Tensor  # ŵ, complex128 [H, W]
    prior_cov: Tensor  # ĉ_{l-1}, float64 [H, W]


def draw_latents(
    schedule: UDPMSchedule, shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float32,
    *, observation_noise: bool = False,
) -> UDPMLatents:
    """White-noise latents for a batch of images of ``shape`` [B, C, H, W], on the generator's device, with the
    observation-noise maps when ``observation_noise``.

    Drawn in sampling order (x_L, then e_L … e_1, each e_l followed by its e'_l), so one seed always gives the same
    latents, and a program's draws in order are their prefix.
    """
    if len(shape) != 4 or not all(_is_int(n) and n > 0 for n in shape):
        raise FastgenError(f"latents shape must be [B, C, H, W] positive integers, got {tuple(shape)}")
    batch, channels, height, width = shape
    schedule.check_image_size(height, width)
    gamma = schedule.gamma

    def white(level: int) -> Tensor:
        size = (batch, channels, height // gamma**level, width // gamma**level)
        return torch.randn(size, generator=generator, dtype=dtype, device=generator.device)

    x_top = white(schedule.levels)
    steps_top_down = [(white(level - 1), white(level) if observation_noise else None) for level in range(schedule.levels, 0, -1)]
    noises, obs_noises = zip(*reversed(steps_top_down))
    return UDPMLatents(x_top, noises, obs_noises if observation_noise else None)


def check_latents(process: UDPMProcess, latents: object) -> UDPMLatents:
    """``latents`` fit ``process``: one map per level (two with its observation noise), shapes following x_top's."""
    schedule = process.schedule
    if not isinstance(latents, UDPMLatents):
        raise FastgenError(f"latents must be UDPMLatents, got {type(latents).__name__}")
    if latents.levels != schedule.levels:
        raise FastgenError(f"latents hold {latents.levels} noise maps but the schedule has {schedule.levels} levels")
    if process.observation_noise and latents.obs_noises is None:
        raise FastgenError("these latents hold no observation-noise maps, which this UDPM's circulant-kernel (Matheron) step "
                           "draws: they were saved by an older fastgen or for a box-kernel model; save them again "
                           "with --save-latents")  # fmt: skip
    if not process.observation_noise and latents.obs_noises is not None:
        raise FastgenError("these latents hold observation-noise maps (a circulant-kernel UDPM's), which this "
                           "box-kernel UDPM does not draw; use latents saved for this model")  # fmt: skip
    batch, channels, height, width = _check_image(latents.x_top, "latents x_top").shape
    maps = [(f"e_{level}", noise, level - 1) for level, noise in enumerate(latents.noises, start=1)]
    if latents.obs_noises is not None:
        if len(latents.obs_noises) != schedule.levels:
            raise FastgenError(f"latents hold {len(latents.obs_noises)} observation-noise maps for {schedule.levels} levels")
        maps += [(f"e'_{level}", noise, level) for level, noise in enumerate(latents.obs_noises, start=1)]
    for name, noise, resolution_level in maps:
        scale = schedule.gamma ** (schedule.levels - resolution_level)
        expected = (batch, channels, height * scale, width * scale)
        why = f"the resolution of x_{resolution_level} for x_top of shape {tuple(latents.x_top.shape)}"
        _check_shape(_check_image(noise, f"latents noise {name}"), expected, f"latents noise {name}", why)
    return latents


def _map_latents(combine: Callable[..., Tensor], *latents: UDPMLatents) -> UDPMLatents:
    """Apply ``combine`` map-wise (x_top with x_top, e_l with e_l, e'_l with e'_l) across several latents."""
    if len({(item.levels, item.obs_noises is None) for item in latents}) > 1:
        raise FastgenError("latents with different levels or observation-noise maps do not combine (use one model's latents)")
    combined = [combine(*maps) for maps in zip(*(item.maps() for item in latents), strict=True)]
    return UDPMLatents.from_maps(combined, latents[0].levels)


def concat_latents(latents: Sequence[UDPMLatents]) -> UDPMLatents:
    """One batch from several latents of equal map shapes (batch axes concatenated in order)."""
    if not latents:
        raise FastgenError("concat_latents needs at least one UDPMLatents")
    return _map_latents(lambda *maps: torch.cat(maps), *latents)


def _with_noise(latents: UDPMLatents, level: int, maps: tuple[Tensor, ...]) -> UDPMLatents:
    """``latents`` with level ``level``'s maps (see :meth:`UDPMLatents.latent_maps`; L + 1 is x_top) replaced by ``maps``."""
    if level == latents.levels + 1:
        return replace(latents, x_top=maps[0])
    replaced = {name: (*getattr(latents, name)[: level - 1], new, *getattr(latents, name)[level:])
                for name, new in zip(("noises", "obs_noises"), maps)}  # fmt: skip
    return replace(latents, **replaced)


def interpolation_grid(
    corners: Sequence[UDPMLatents], etas: Sequence[float] | Tensor, deltas: Sequence[float] | Tensor
) -> UDPMLatents:
    """Latents of the paper's 4-corner interpolation grid (Sec. 4, Fig. 5), applied to every map incl. x_L.

    ``e(i, j) = η_i (δ_j e1 + √(1-δ_j²) e2) + √(1-η_i²) (δ_j e3 + √(1-δ_j²) e4)``: unit variance for every
    (η, δ) ∈ [0,1]², and (1,1), (1,0), (0,1), (0,0) give corners 1, 2, 3, 4 exactly. The result has batch
    ``len(etas) · len(deltas) · B`` ordered (i, j, b) row-major.
    """
    if len(corners) != 4:
        raise FastgenError(f"interpolation needs exactly 4 corner latents, got {len(corners)}")
    shapes = {tuple(tuple(m.shape) for m in c.maps()) for c in corners}
    if len(shapes) != 1:
        raise FastgenError("interpolation corner latents must all have the same shapes")
    eta = torch.as_tensor(etas, dtype=torch.float64).reshape(-1)
    delta = torch.as_tensor(deltas, dtype=torch.float64).reshape(-1)
    for name, values in (("etas", eta), ("deltas", delta)):
        if values.numel() == 0 or not ((values >= 0) & (values <= 1)).all():
            raise FastgenError(
                f"interpolation {name} must be a non-empty list of values in [0, 1], got {values.tolist()}"
            )
    eta_weights = torch.stack([eta, (1 - eta**2).sqrt()], dim=-1)  # [I, 2]: corners (1,2) vs (3,4)
    delta_weights = torch.stack([delta, (1 - delta**2).sqrt()], dim=-1)  # [J, 2]: corners (1,3) vs (2,4)
    weights = torch.einsum("ip,jq->ijpq", eta_weights, delta_weights).reshape(len(eta), len(delta), 4)

    def mix(*maps: Tensor) -> Tensor:
        stacked = torch.stack(maps)  # [4, B, C, H, W]
        grid = torch.einsum("ijk,k...->ij...", weights.to(stacked), stacked)
        return grid.reshape(-1, *stacked.shape[2:])

    return _map_latents(mix, *corners)


def perturb_noise(latents: UDPMLatents, level: int, strength: float, generator: torch.Generator) -> UDPMLatents:
    """Replace e_l (and e'_l) by √(1-s²)·e_l + s·z with fresh white z (paper Fig. 6): still N(0, I); s=0 keeps it,
    s=1 redraws.

    ``level`` L + 1 perturbs x_top, the noise of x_L (:meth:`UDPMLatents.latent_maps`)."""
    if not 0 <= strength <= 1:
        raise FastgenError(f"perturbation strength must lie in [0, 1], got {strength!r}")
    perturbed = []
    for noise in latents.latent_maps(level):
        fresh = torch.randn(noise.shape, generator=generator, dtype=noise.dtype, device=noise.device)
        perturbed.append(math.sqrt(1 - strength**2) * noise + strength * fresh)
    return _with_noise(latents, level, tuple(perturbed))


def swap_noise(first: UDPMLatents, second: UDPMLatents, level: int) -> tuple[UDPMLatents, UDPMLatents]:
    """Exchange e_l (and e'_l) between two latents (paper Fig. 10); returns (first with second's, second with first's).

    ``level`` L + 1 exchanges x_top, the noise of x_L (:meth:`UDPMLatents.latent_maps`)."""
    if first.levels != second.levels or (first.obs_noises is None) != (second.obs_noises is None):
        raise FastgenError("swap_noise needs latents of one model (equal levels, both with or without observation noise)")
    ours, theirs = first.latent_maps(level), second.latent_maps(level)
    if [m.shape for m in ours] != [m.shape for m in theirs]:
        name = "x_top" if level == first.levels + 1 else f"e_{level}"
        raise FastgenError(f"swap_noise needs equal {name} shapes, got {tuple(ours[0].shape)} and {tuple(theirs[0].shape)}")
    return _with_noise(first, level, theirs), _with_noise(second, level, ours)


# --------------------------------------------------------------------------------------------- processes


class UDPMProcess(ABC):
    """Shared part of the UDPM processes: forward marginal, training target, validation."""

    observation_noise: ClassVar[bool] = False
    """Whether :func:`sample`'s step also takes e'_l, white noise at x_l's resolution (Matheron's rule)."""

    def __init__(self, schedule: UDPMSchedule) -> None:
        if not isinstance(schedule, UDPMSchedule):
            raise FastgenError(f"schedule must be a UDPMSchedule, got {type(schedule).__name__}")
        self.schedule = schedule

    @abstractmethod
    def down(self, x: Tensor) -> Tensor:
        """H: blur and subsample by γ, [B, C, H, W] → [B, C, H/γ, W/γ]."""

    @abstractmethod
    def up(self, y: Tensor) -> Tensor:
        """Hᵀ, the adjoint of :meth:`down`, [B, C, h, w] → [B, C, γh, γw]."""

    @abstractmethod
    def posterior_step(self, x_l: Tensor, x_hat: Tensor, level: int, noise: Tensor) -> Tensor:
        """One exact reverse step: a sample of q(x_{l-1} | x_l, H^{l-1}x0 = x_hat) driven by white ``noise``."""

    @abstractmethod
    def _marginal_noise(self, noise: Tensor, level: int) -> Tensor:
        """The noise term of q(x_l | x0), made from white ``noise`` at the resolution of x_l."""

    def prior_sample(self, white: Tensor) -> Tensor:
        """x_L, the start of sampling, from white ``white`` at its resolution: q(x_L | x0)'s noise term.

        The level-L network is trained on x_L ~ q(x_L | x0) = ᾱ_L H^L x0 + N(0, C_L), whose mean is negligible
        (ᾱ_L = 1e-4 by default), so sampling starts from N(0, C_L) (σ̃_L² I for Lemma-1 kernels), as the official
        code does. The paper's Alg. 2 draws N(0, I): 1/σ̃_L ≈ 3.3× the scale the network ever saw (DESIGN.md).
        """
        return self._marginal_noise(_check_image(white, "x_L noise"), self.schedule.levels)

    def target(self, x0: Tensor, level: int) -> Tensor:
        """H^{l-1} x0: what the level-l predictor learns to output."""
        _check_level(level, self.schedule.levels)
        return self._down_times(self._check_data(x0), level - 1)

    def q_sample(self, x0: Tensor, level: int, noise: Tensor) -> Tensor:
        """x_l ~ q(x_l | x0) = ᾱ_l H^l x0 + (marginal noise), ``noise`` white at the resolution of x_l."""
        _check_level(level, self.schedule.levels)
        mean = self.schedule.alpha_bar(level) * self._down_times(self._check_data(x0), level)
        _check_shape(_check_image(noise, "noise"), mean.shape, "noise", f"the shape of x_{level}")
        return mean + self._marginal_noise(noise, level)

    def _down_times(self, x: Tensor, times: int) -> Tensor:
        for _ in range(times):
            x = self.down(x)
        return x

    def _check_data(self, x0: Tensor) -> Tensor:
        self.schedule.check_image_size(*_check_image(x0, "x0").shape[-2:])
        return x0

    def _check_divisible(self, x: Tensor, name: str) -> Tensor:
        gamma = self.schedule.gamma
        if x.shape[-2] % gamma or x.shape[-1] % gamma:
            raise FastgenError(f"{name} resolution {x.shape[-2]}x{x.shape[-1]} is not divisible by γ = {gamma}")
        return x

    def _check_step(self, x_l: Tensor, x_hat: Tensor, level: int, noises: dict[str, Tensor]) -> None:
        """Validate one reverse step: x_hat is x_l's batch and channels at γ× its resolution, noises like x_hat."""
        _check_level(level, self.schedule.levels)
        batch, channels, height, width = _check_image(x_l, "x_l").shape
        _check_image(x_hat, "x_hat")
        if x_hat.shape[1] != channels:
            raise FastgenError(f"x_hat has {x_hat.shape[1]} channels but x_l has {channels}")
        gamma = self.schedule.gamma
        expected = (batch, channels, height * gamma, width * gamma)
        why = f"x_l's batch and channels at γ={gamma} times its resolution"
        _check_shape(x_hat, expected, "x_hat (the predictor output)", why)
        for name, noise in noises.items():
            _check_shape(_check_image(noise, name), x_hat.shape, name, "the shape of x_hat")


class UDPM(UDPMProcess):
    """UDPM with a Lemma-1 kernel (default: 2×2 box, taps 0.5) and the closed-form exact posterior.

    With A = α_l²/σ_l², B = 1/σ̃²_{l-1}, P = HᵀH (DESIGN.md):
    Σ = (I−P)/B + P/(A+B),  Σ^½ = (I−P)/√B + P/√(A+B),  μ = Σ(α_l/σ_l² Hᵀx_l + ᾱ_{l-1}/σ̃²_{l-1} x̂).
    """

    def __init__(self, schedule: UDPMSchedule | None = None, kernel: Tensor | Sequence | None = None) -> None:
        super().__init__(UDPMSchedule() if schedule is None else schedule)
        gamma = self.schedule.gamma
        weights = _kernel_2d(box_kernel(gamma) if kernel is None else kernel, gamma)
        if max(weights.shape) > gamma:
            raise FastgenError(
                f"kernel of size {weights.shape[0]}x{weights.shape[1]} exceeds the stride γ={gamma}: the closed-form "
                "UDPM posterior needs support <= γ (Lemma 1); use CirculantUDPM, the general FFT path"
            )
        norm = weights.norm().item()
        if abs(norm - 1) > _NORM_TOLERANCE:
            raise FastgenError(
                f"kernel L2 norm is {norm:.6g} but Lemma 1 needs 1 (so that H Hᵀ = I); normalise it "
                "(kernel / kernel.norm()) or use CirculantUDPM, the general FFT path"
            )
        self.kernel = weights
        # Per (device, dtype) copies made once, so that steps captured in a CUDA graph copy nothing.
        self._weights: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def _weight(self, x: Tensor) -> Tensor:
        key = (x.device, x.dtype)
        if key not in self._weights:
            self._weights[key] = self.kernel.to(device=x.device, dtype=x.dtype)[None, None]
        return self._weights[key]

    def down(self, x: Tensor) -> Tensor:
        batch, channels, height, width = self._check_divisible(_check_image(x, "x"), "x").shape
        gamma = self.schedule.gamma
        blocks = F.conv2d(x.reshape(batch * channels, 1, height, width), self._weight(x), stride=gamma)
        return blocks.reshape(batch, channels, height // gamma, width // gamma)

    def up(self, y: Tensor) -> Tensor:
        batch, channels, height, width = _check_image(y, "y").shape
        gamma = self.schedule.gamma
        pixels = F.conv_transpose2d(y.reshape(batch * channels, 1, height, width), self._weight(y), stride=gamma)
        return pixels.reshape(batch, channels, height * gamma, width * gamma)

    def _posterior_coefficients(self, level: int) -> tuple[float, float, float, float]:
        """(α_l, gain, variance on null(H), variance on range(Hᵀ)), finite at σ̃_{l-1} = 0.

        gain = (α_l/σ_l²)/(A+B) = α_l σ̃²/(α_l² σ̃² + σ_l²), 1/B = σ̃², 1/(A+B) = σ̃² σ_l²/(α_l² σ̃² + σ_l²).
        """
        _check_level(level, self.schedule.levels)
        alpha, sigma = self.schedule.alphas[level - 1], self.schedule.sigmas[level - 1]
        prior_variance = self.schedule.sigma_tilde(level - 1) ** 2
        evidence_variance = alpha**2 * prior_variance + sigma**2
        gain = alpha * prior_variance / evidence_variance
        return alpha, gain, prior_variance, prior_variance * sigma**2 / evidence_variance

    def posterior_constants(self, level: int) -> BlockPosteriorConstants:
        """The posterior step per γ×γ block, finite at σ̃_{l-1} = 0 (level 1 gives (1, 0, 0, 0, 0): x̂ itself)."""
        alpha, gain, null_variance, range_variance = self._posterior_coefficients(level)
        prior_scale = self.schedule.alpha_bar(level - 1)
        null_std, range_std = math.sqrt(null_variance), math.sqrt(range_variance)
        return BlockPosteriorConstants(taps=self.kernel.double(), kx=prior_scale, kp=-gain * alpha * prior_scale,
                                       ky=gain, ke=null_std, kep=range_std - null_std)  # fmt: skip

    def _split_apply(self, v: Tensor, null_scale: float, range_scale: float) -> Tensor:
        """(I−P)·null_scale + P·range_scale applied to v, with P = HᵀH."""
        return null_scale * v + (range_scale - null_scale) * self.up(self.down(v))

    def posterior_cov(self, v: Tensor, level: int) -> Tensor:
        """Σ_l v (v at the resolution of x_{l-1})."""
        _, _, null_variance, range_variance = self._posterior_coefficients(level)
        return self._split_apply(v, null_variance, range_variance)

    def posterior_cov_sqrt(self, v: Tensor, level: int) -> Tensor:
        """Σ_l^½ v, the symmetric square root (v at the resolution of x_{l-1})."""
        _, _, null_variance, range_variance = self._posterior_coefficients(level)
        return self._split_apply(v, math.sqrt(null_variance), math.sqrt(range_variance))

    def posterior_mean(self, x_l: Tensor, x_hat: Tensor, level: int) -> Tensor:
        """μ_l = ᾱ_{l-1} x̂ + gain · Hᵀ(x_l − α_l ᾱ_{l-1} H x̂): DESIGN's μ with (I−P)Σ·B = I−P expanded."""
        self._check_step(x_l, x_hat, level, {})
        alpha, gain, _, _ = self._posterior_coefficients(level)
        prior_scale = self.schedule.alpha_bar(level - 1)
        return prior_scale * x_hat + gain * self.up(x_l - alpha * prior_scale * self.down(x_hat))

    def posterior_step(self, x_l: Tensor, x_hat: Tensor, level: int, noise: Tensor) -> Tensor:
        """x_{l-1} = μ_l + Σ_l^½ e; at level 1 exactly x_hat. The reference for the fused 2×2-block kernel."""
        self._check_step(x_l, x_hat, level, {"noise": noise})
        return self.posterior_mean(x_l, x_hat, level) + self.posterior_cov_sqrt(noise, level)

    def _marginal_noise(self, noise: Tensor, level: int) -> Tensor:
        return self.schedule.sigma_tilde(level) * noise


def _fold(spectrum: Tensor, gamma: int) -> Tensor:
    """Sum a high-res DFT over its γ² aliases onto the low-res grid: the DFT of subsampling, times γ²."""
    *lead, rows, cols = spectrum.shape
    return spectrum.reshape(*lead, gamma, rows // gamma, gamma, cols // gamma).sum(dim=(-4, -2))


def _tile(spectrum: Tensor, gamma: int) -> Tensor:
    """Repeat a low-res DFT γ×γ times: the DFT of zero-insertion upsampling."""
    return spectrum.repeat(*([1] * (spectrum.dim() - 2)), gamma, gamma)


def _filter(x: Tensor, spectrum: Tensor) -> Tensor:
    """Apply the circulant operator with DFT eigenvalues ``spectrum``."""
    return torch.fft.ifft2(spectrum * torch.fft.fft2(x)).real


class CirculantUDPM(UDPMProcess):
    """UDPM with any circulant blur kernel (default: 5×5 Gaussian, σ = 1), exact by the DFT.

    W is periodic correlation: (Wx)[p] = Σ_q w[q] x[p + q + o] with o = −⌊(k−γ)/2⌋ per axis for a k-tap kernel,
    which centres the kernel on the γ×γ block it summarises and equals :class:`UDPM`'s H for k = γ.
    With ŵ the DFT eigenvalues of W on the high-res grid (unnormalised DFTs, F = ``torch.fft.fft2``):
      H = F⁻¹ fold(ŵ · F x)/γ²,   Hᵀ = F⁻¹ conj(ŵ) · tile(F y),
    so H C Hᵀ has low-res eigenvalues fold(|ŵ|² ĉ)/γ² for circulant C, and C_l = α_l² H C_{l-1} Hᵀ + σ_l² I
    (C_0 = 0) has eigenvalues ĉ_l = α_l² fold(|ŵ|² ĉ_{l-1})/γ² + σ_l². Every inverse below is a division by ĉ.
    Computation is in float64 for float64 inputs and in float32 otherwise.
    """

    observation_noise = True

    def __init__(self, schedule: UDPMSchedule | None = None, kernel: Tensor | Sequence | None = None) -> None:
        super().__init__(UDPMSchedule() if schedule is None else schedule)
        gamma = self.schedule.gamma
        self.kernel = _kernel_2d(gaussian_kernel() if kernel is None else kernel, gamma)
        self._tap_offsets = tuple(-((taps - gamma) // 2) for taps in self.kernel.shape)
        self._noise_filters: dict[tuple, Tensor] = {}

    def transfer_function(
        self, size: Sequence[int], device: torch.device | None = None, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """ŵ: DFT eigenvalues of W on a ``size`` grid, complex [size]. Taps wrap around grids smaller than w."""
        factors = []
        for length, offset, taps in zip(size, self._tap_offsets, self.kernel.shape, strict=True):
            frequency = torch.arange(length, device=device)
            position = torch.arange(taps, device=device) + offset
            # Reduce k·q mod n in integers so large grids keep exact phases.
            phase = (2 * math.pi / length) * torch.remainder(frequency[:, None] * position[None, :], length).to(dtype)
            factors.append(torch.polar(torch.ones_like(phase), phase))
        weights = self.kernel.to(device=device, dtype=dtype).to(factors[0].dtype)
        return factors[0] @ weights @ factors[1].T

    def marginal_cov_spectrum(
        self, level: int, size: Sequence[int], device: torch.device | None = None, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """ĉ_l: eigenvalues of C_l = Cov(x_l | x0) on the level-l grid ``size`` (zeros at level 0)."""
        _check_level(level, self.schedule.levels, allow_zero=True)
        gamma = self.schedule.gamma
        spectrum = torch.zeros([n * gamma**level for n in size], device=device, dtype=dtype)
        for alpha, sigma in zip(self.schedule.alphas[:level], self.schedule.sigmas):
            gain = self.transfer_function(spectrum.shape, device, dtype).abs() ** 2
            spectrum = alpha**2 * _fold(gain * spectrum, gamma) / gamma**2 + sigma**2
        return spectrum

    def marginal_cov(self, v: Tensor, level: int) -> Tensor:
        """C_l v (v at the resolution of x_l)."""
        _check_level(level, self.schedule.levels)
        work = self._work(_check_image(v, "v"))
        return _filter(work, self.marginal_cov_spectrum(level, v.shape[-2:], v.device, work.dtype)).to(v.dtype)

    def _marginal_noise(self, noise: Tensor, level: int) -> Tensor:
        work = self._work(noise)
        key = (level, tuple(noise.shape[-2:]), noise.device, work.dtype)
        if key not in self._noise_filters:
            # Made once per grid: training calls this every step, and a captured sampler may not copy the kernel
            # to the device (its warm-up runs fill this before capture).
            self._noise_filters[key] = self.marginal_cov_spectrum(level, key[1], noise.device, work.dtype).sqrt()
        return _filter(work, self._noise_filters[key]).to(noise.dtype)

    def down(self, x: Tensor) -> Tensor:
        work = self._work(self._check_divisible(_check_image(x, "x"), "x"))
        gamma = self.schedule.gamma
        transfer = self.transfer_function(x.shape[-2:], x.device, work.dtype)
        low = _fold(transfer * torch.fft.fft2(work), gamma) / gamma**2
        return torch.fft.ifft2(low).real.to(x.dtype)

    def up(self, y: Tensor) -> Tensor:
        work = self._work(_check_image(y, "y"))
        gamma = self.schedule.gamma
        transfer = self.transfer_function([n * gamma for n in y.shape[-2:]], y.device, work.dtype)
        return torch.fft.ifft2(transfer.conj() * _tile(torch.fft.fft2(work), gamma)).real.to(y.dtype)

    def posterior_step(self, x_l: Tensor, x_hat: Tensor, level: int, noise: Tensor) -> Tensor:
        """Exact posterior sample from one white noise map at the resolution of x_{l-1}.

        Σ = C − K α H C is block diagonal in the DFT, one block D − v vᴴ per alias group (D = diag ĉ_{l-1}).
        S = D^½(I − κ g gᴴ) with g = D^-½ v and κ = √ĉ_l/(√ĉ_l + σ_l) satisfies S Sᴴ = Σ, so
        x_{l-1} = μ + S e. For a Lemma-1 kernel S is the symmetric Σ^½ and this equals :meth:`UDPM.posterior_step`.
        """
        self._check_step(x_l, x_hat, level, {"noise": noise})
        return self._kalman_update(x_l, x_hat, level, noise, obs_noise=None)

    def matheron_step(self, x_l: Tensor, x_hat: Tensor, level: int, prior_noise: Tensor, obs_noise: Tensor) -> Tensor:
        """Exact posterior sample by Matheron's rule (DESIGN.md), from two white noise maps.

        x_pr = ᾱ_{l-1} x̂ + C_{l-1}^½ e,  y = α_l H x_pr + σ_l e',  x_{l-1} = x_pr + α_l C_{l-1} Hᵀ C_l⁻¹ (x_l − y);
        ``prior_noise`` e at the resolution of x_{l-1}, ``obs_noise`` e' at that of x_l.
        """
        self._check_step(x_l, x_hat, level, {"prior_noise": prior_noise})
        _check_shape(_check_image(obs_noise, "obs_noise"), x_l.shape, "obs_noise", "the shape of x_l")
        return self._kalman_update(x_l, x_hat, level, prior_noise, obs_noise)

    def matheron_constants(self, level: int, size: Sequence[int]) -> MatheronConstants:
        """The constants of the step x_l → x_{l-1} with x_{l-1} on a ``size`` grid (float64)."""
        _check_level(level, self.schedule.levels)
        return MatheronConstants(
            alpha=self.schedule.alphas[level - 1],
            sigma=self.schedule.sigmas[level - 1],
            prior_scale=self.schedule.alpha_bar(level - 1),
            transfer=self.transfer_function(size),
            prior_cov=self.marginal_cov_spectrum(level - 1, size),
        )

    def _kalman_update(self, x_l: Tensor, x_hat: Tensor, level: int, noise: Tensor, obs_noise: Tensor | None) -> Tensor:
        real = self._work(x_hat).dtype
        constants = self.matheron_constants(level, x_hat.shape[-2:])
        transfer = constants.transfer.to(x_hat.device, torch.complex128 if real == torch.float64 else torch.complex64)
        prior_cov = constants.prior_cov.to(x_hat.device, real)
        return kalman_update(constants, transfer, prior_cov, x_l, x_hat, noise, obs_noise)

    @staticmethod
    def _work(x: Tensor) -> Tensor:
        # torch's FFTs have no half-precision path on most devices; float32 is plenty for the spectra.
        return x if x.dtype == torch.float64 else x.to(torch.float32)


def kalman_update(constants: MatheronConstants, transfer: Tensor, prior_cov: Tensor, x_l: Tensor, x_hat: Tensor,
                  noise: Tensor, obs_noise: Tensor | None) -> Tensor:  # fmt: skip
    """x_pr + α C_{l-1} Hᵀ C_l⁻¹ (x_l − α ᾱ H x̂ − predicted noise), all in the DFT (``transfer``, ``prior_cov``:
    the constants' spectra on x̂'s device, in its working precision).

    The predicted noise is Matheron's α H(x_pr noise) + σ e' when ``obs_noise`` is given, else the
    one-noise factor's κ α H(x_pr noise). Kept in the pixel domain, ᾱ x̂ passes through unrounded, so
    at level 1 (C_0 = 0, every correction exactly 0) the result is x̂ bit for bit.
    """
    gamma = x_hat.shape[-1] // x_l.shape[-1]
    alpha, sigma, prior_scale = constants.alpha, constants.sigma, constants.prior_scale
    work = CirculantUDPM._work(x_hat)
    evidence_cov = alpha**2 * _fold(transfer.abs() ** 2 * prior_cov, gamma) / gamma**2 + sigma**2
    prior_noise = prior_cov.sqrt() * torch.fft.fft2(CirculantUDPM._work(noise))
    predicted_noise = alpha * _fold(transfer * prior_noise, gamma) / gamma**2
    if obs_noise is None:
        predicted_noise = predicted_noise * evidence_cov.sqrt() / (evidence_cov.sqrt() + sigma)
    else:
        predicted_noise = predicted_noise + sigma * torch.fft.fft2(CirculantUDPM._work(obs_noise))
    predicted_mean = alpha * prior_scale * _fold(transfer * torch.fft.fft2(work), gamma) / gamma**2
    residual = torch.fft.fft2(CirculantUDPM._work(x_l)) - predicted_mean - predicted_noise
    correction = prior_noise + alpha * prior_cov * transfer.conj() * _tile(residual / evidence_cov, gamma)
    return prior_scale * x_hat + torch.fft.ifft2(correction).real.to(x_hat.dtype)


# ----------------------------------------------------------------------------------------------- sampler


def level_predictors(predictor: Callable[[Tensor, int], Tensor], levels: int) -> list[Predictor]:
    """Adapt one ``predictor(x_l, level)`` to the per-level list :func:`sample` takes."""
    if not _is_int(levels) or levels < 1:
        raise FastgenError(f"levels must be a positive integer, got {levels!r}")
    return [lambda x, level=level: predictor(x, level) for level in range(1, levels + 1)]


def sample(
    process: UDPMProcess,
    predictors: Sequence[Predictor],
    latents: UDPMLatents | torch.Generator,
    *,
    shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Sampled:
    """Paper Alg. 2 with the exact posterior and x_L from its prior: x_{l-1} = posterior_step(x_l, f_l(x_l), l, e_l)
    (``matheron_step(…, e_l, e'_l)`` for a process with observation noise), l = L … 1. The reference (oracle) of the
    UDPM sampling programs.

    ``predictors[l-1]`` maps x_l to an estimate of H^{l-1}x0 (γ× its resolution). ``latents`` are used as given,
    or drawn from a generator for images of ``shape`` [B, C, H, W]. Gradient mode is the caller's
    (wrap in ``torch.inference_mode()`` to sample).
    """
    schedule = process.schedule
    if isinstance(latents, torch.Generator):
        if shape is None:
            raise FastgenError("sampling from a generator needs the image shape [B, C, H, W]")
        latents = draw_latents(schedule, shape, latents, dtype, observation_noise=process.observation_noise)
    check_latents(process, latents)
    try:
        predictors = list(predictors)
    except TypeError:
        raise FastgenError(
            "predictors must be a sequence of per-level callables; wrap a single predictor(x_l, level) "
            "with level_predictors"
        ) from None
    if len(predictors) != schedule.levels:
        raise FastgenError(f"got {len(predictors)} predictors for {schedule.levels} levels; give one per level")
    step = process.matheron_step if process.observation_noise else process.posterior_step
    x = process.prior_sample(latents.x_top)
    for level in range(schedule.levels, 0, -1):
        x = step(x, predictors[level - 1](x), level, *latents.latent_maps(level))
    return Sampled(x, latents)
