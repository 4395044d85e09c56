"""PDDPM (Ryu & Ye, 2022): one diffusion network conditioned on pixel coordinates, sampled coarse-to-fine.

The network sees the noisy image with the sinusoidal encoding of its pixel coordinates appended as channels, so a
single model serves every resolution. Sampling (paper Alg. 1) runs a full reverse process at the coarsest
resolution, then per level upsamples ×2, re-noises to ``t ≈ Δt_s·T`` by q_sample (CCDF) and reverses from there.
Super-resolution (Alg. 2) starts from the upsampled measurement and adds a data-consistency gradient (eq. 10).

Predictor
---------
``predictor(x_with_coords, t) -> model_out`` where ``x_with_coords = cat([x, encoding], dim=1)`` is
``[B, C + 4L, H, W]``: the C image channels, then the 4L coordinate channels of :func:`coordinate_encoding`.
``t`` is a float32 tensor ``[B]`` holding the integer timestep, and ``model_out`` ``[B, C, H, W]`` is ε for the
default ``prediction_type='eps'`` of the schedule (x_0 for ``'x0'``), exactly as in :mod:`fastgen.diffusion.ddpm`.

Coordinates
-----------
``i`` (row) and ``j`` (column) are pixel centres ``(k + ½)/size`` in (0, 1). With that convention the 2×2 mean
(= bilinear ×½ resize) of the grid at 2H×2W *is* the grid at H×W, so coordinates built directly at a level are
exactly the full-resolution coordinates resized with the image (paper Fig. 2), and the sampler can build each
level's coordinates directly instead of interpolating them (bilinear ×2 *up*sampling clamps the border half-pixel
and would shift the edge coordinates away from what the network was trained on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgen.diffusion import ddpm
from fastgen.diffusion.ddpm import DiffusionSchedule, Predictor
from fastgen.errors import FastgenError
from fastgen.schema import finite_number

NUM_FREQUENCIES = 6
"""L of paper eq. 7: frequencies 2^k·π for k < L, so the encoding has 2·2·L channels."""

# Alg. 1's sampler defaults (the paper's T_s, Δt_s and ancestral η = 1): the family's options default to these.
FINE_STEPS, RENOISE_FRACTION, ETA = 100, 0.3, 1.0

DEFAULT_GUIDANCE = 1.0
"""λ of eq. 10 when none is given (see :func:`sample_super_resolution` for the scale at which it projects)."""

CoordinatePredictor = Callable[[Tensor, Tensor], Tensor]
"""``predictor(x_with_coords [B, C+4L, H, W], t float32 [B]) -> model_out [B, C, H, W]``."""


# ----------------------------------------------------------------------------------------------------------------
# coordinates


def coordinate_grid(
    batch: int, height: int, width: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``[B, 2, H, W]`` pixel-centre coordinates: channel 0 is i (row), channel 1 is j (column), both in (0, 1)."""
    for name, value in (("batch", batch), ("height", height), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise FastgenError(f"{name} must be a positive integer, got {value!r}")
    rows = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    cols = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
    return grid.expand(batch, 2, height, width)


def encode_coordinates(grid: Tensor, num_frequencies: int = NUM_FREQUENCIES) -> Tensor:
    """Sinusoidal encoding (paper eq. 7 with the π of DESIGN.md) of a ``[B, 2, H, W]`` coordinate grid.

    Returns ``[B, 4L, H, W]``: for i then j, the pairs ``sin(2^k π γ), cos(2^k π γ)`` for k = 0 … L-1.
    """
    if not isinstance(grid, Tensor) or grid.dim() != 4 or grid.shape[1] != 2 or not grid.is_floating_point():
        raise FastgenError(f"coordinate grid must be a floating-point tensor [B, 2, H, W], got {ddpm.describe(grid)}")
    if not isinstance(num_frequencies, int) or num_frequencies < 1:
        raise FastgenError(f"num_frequencies must be a positive integer, got {num_frequencies!r}")
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, device=grid.device, dtype=grid.dtype)
    angles = grid[:, :, None] * frequencies[:, None, None]  # [B, 2, L, H, W]
    encoding = torch.stack([angles.sin(), angles.cos()], dim=3)  # [B, 2, L, 2, H, W]
    return encoding.flatten(1, 3)


def coordinate_encoding(
    batch: int,
    height: int,
    width: int,
    *,
    num_frequencies: int = NUM_FREQUENCIES,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``[B, 4L, H, W]`` encoded coordinates of an H×W image (equal to the resized full-resolution ones)."""
    return encode_coordinates(coordinate_grid(batch, height, width, device=device, dtype=dtype), num_frequencies)


def with_coordinates(x: Tensor, encoding: Tensor | None = None, num_frequencies: int = NUM_FREQUENCIES) -> Tensor:
    """The predictor input: ``x`` followed by its coordinate ``encoding`` (built for x's size when not given)."""
    ddpm.check_image("x", x)
    batch, _, height, width = x.shape
    if encoding is None:
        encoding = coordinate_encoding(
            batch, height, width, num_frequencies=num_frequencies, device=x.device, dtype=x.dtype
        )
    if (
        not isinstance(encoding, Tensor)
        or encoding.dim() != 4
        or encoding.shape[0] != batch
        or encoding.shape[2:] != x.shape[2:]
    ):
        raise FastgenError(
            f"coordinate encoding must be [{batch}, 4L, {height}, {width}], got {ddpm.describe(encoding)}"
        )
    return torch.cat([x, encoding.to(x.dtype)], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# resizing and training batches


def downsample(x: Tensor, factor: int) -> Tensor:
    """The down-sampling operator D: the mean over ``factor``×``factor`` blocks.

    For factor 2 this is exactly the bilinear ×½ resize (align_corners=False), for 2^k its k-fold repetition,
    i.e. a proper anti-aliased box filter rather than bilinear's 2-of-every-4-pixels aliasing at factor 4.
    """
    ddpm.check_image("x", x)
    if not isinstance(factor, int) or factor < 1 or x.shape[-2] % factor or x.shape[-1] % factor:
        raise FastgenError(
            f"down-sampling factor must be a positive integer dividing {tuple(x.shape[-2:])}, got {factor!r}"
        )
    return F.avg_pool2d(x, factor) if factor > 1 else x


def upsample(x: Tensor) -> Tensor:
    """U^{×2} of the paper: bilinear ×2 resize (align_corners=False)."""
    ddpm.check_image("x", x)
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def multiscale_batch(
    x0: Tensor,
    resolutions: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    num_frequencies: int = NUM_FREQUENCIES,
) -> tuple[Tensor, Tensor]:
    """A training batch at one random resolution (paper Fig. 2): ``(image [B, C, r, r], encoding [B, 4L, r, r])``.

    ``x0`` is the full-resolution square batch; its coordinate grid is concatenated to it, the pair is resized
    together by :func:`downsample`, and the resized coordinates are encoded. ``generator`` picks the resolution.
    """
    check_resolutions(resolutions)
    ddpm.check_image("x0", x0)
    side = x0.shape[-1]
    if x0.shape[-2] != side or side % resolutions[-1]:
        raise FastgenError(
            f"x0 must be square with a side divisible by the largest resolution {resolutions[-1]}, "
            f"got {tuple(x0.shape[-2:])}"
        )
    source = generator.device if generator is not None else "cpu"
    size = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator, device=source))]
    grid = coordinate_grid(x0.shape[0], side, side, device=x0.device, dtype=x0.dtype)
    image, coordinates = downsample(torch.cat([x0, grid], dim=1), side // size).split([x0.shape[1], 2], dim=1)
    return image, encode_coordinates(coordinates, num_frequencies)


# ----------------------------------------------------------------------------------------------------------------
# samplers


@torch.no_grad()
def sample_pyramidal(
    predictor: CoordinatePredictor,
    schedule: DiffusionSchedule,
    resolutions: Sequence[int],
    batch_size: int | None = None,
    channels: int = 3,
    *,
    x_start: Tensor | None = None,
    coarse_steps: int | None = None,
    fine_steps: int = FINE_STEPS,
    renoise_fraction: float = RENOISE_FRACTION,
    eta: float = ETA,
    num_frequencies: int = NUM_FREQUENCIES,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    clip_x0: bool = False,
    progress: bool = False,
    return_levels: bool = False,
) -> Tensor | list[Tensor]:
    """Pyramidal generation (paper Alg. 1) over square ``resolutions`` (ascending, each twice the previous).

    * coarsest level: ``coarse_steps`` (T_f, default T) DDIM steps from pure noise — with η = 1 and T_f = T this
      is the full ancestral DDPM. Start from ``batch_size``×``channels`` noise or from an explicit ``x_start``
      (x_T at the coarsest resolution). The paper's N(0, σ_{T_f} I) initialisation is a typo for N(0, I).
    * every finer level: upsample ×2, re-noise by q_sample to t = round(Δt_s·(T-1)) (``renoise_fraction`` = Δt_s)
      and reverse in round(Δt_s·T_s) steps (``fine_steps`` = T_s, the respaced schedule of the paper).
    η = 1 (default) is the paper's ancestral sampling on a respaced schedule, η = 0 a deterministic DDIM.
    Returns the finest image, or with ``return_levels`` the list of images per resolution (coarsest first).
    """
    check_resolutions(resolutions)
    coarse_steps, restart = pyramid_steps(schedule, coarse_steps, fine_steps, renoise_fraction)
    coarse = resolutions[0]
    if (batch_size is None) == (x_start is None):
        raise FastgenError("give exactly one of batch_size (start from pure noise) or x_start (an explicit x_T)")
    if x_start is None:
        if not isinstance(batch_size, int) or batch_size < 1 or not isinstance(channels, int) or channels < 1:
            raise FastgenError(f"batch_size and channels must be positive integers, got {batch_size!r}, {channels!r}")
        x_start = ddpm.gaussian_noise(
            (batch_size, channels, coarse, coarse), generator=generator, device=device, dtype=dtype
        )
    else:
        ddpm.check_image("x_start", x_start)
        if x_start.shape[-2:] != (coarse, coarse):
            raise FastgenError(
                f"x_start must be at the coarsest resolution {coarse}x{coarse}, got {tuple(x_start.shape[-2:])}"
            )
    x = ddpm.sample_ddim(
        _at_level(predictor, x_start, num_frequencies),
        schedule,
        x_start=x_start,
        num_steps=coarse_steps,
        eta=eta,
        generator=generator,
        clip_x0=clip_x0,
        progress=progress,
    )
    fine = _refine(
        predictor,
        schedule,
        x,
        len(resolutions) - 1,
        restart=restart,
        eta=eta,
        num_frequencies=num_frequencies,
        generator=generator,
        clip_x0=clip_x0,
        guidance=None,
        progress=progress,
    )
    levels = [x, *fine]
    return levels if return_levels else levels[-1]


def consistency_loss(x0_hat: Tensor, measurement: Tensor) -> Tensor:
    """Per-sample ``‖ȳ − D x0_hat‖²`` ``[B]``, D the block mean from x0_hat's size down to the measurement's."""
    ddpm.check_image("measurement", measurement)
    ddpm.check_image("x0_hat", x0_hat)
    factor = x0_hat.shape[-1] // measurement.shape[-1]
    enlarged = (*measurement.shape[:2], *(n * factor for n in measurement.shape[-2:]))
    if x0_hat.shape != enlarged:
        raise FastgenError(
            f"x0_hat {tuple(x0_hat.shape)} must be the measurement {tuple(measurement.shape)} "
            "enlarged by an integer factor"
        )
    return (downsample(x0_hat, factor) - measurement).square().flatten(1).sum(dim=1)


@torch.no_grad()
def sample_super_resolution(
    predictor: CoordinatePredictor,
    schedule: DiffusionSchedule,
    measurement: Tensor,
    resolutions: Sequence[int],
    *,
    guidance_scale: float = DEFAULT_GUIDANCE,
    fine_steps: int = FINE_STEPS,
    renoise_fraction: float = RENOISE_FRACTION,
    eta: float = ETA,
    num_frequencies: int = NUM_FREQUENCIES,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
    progress: bool = False,
    return_levels: bool = False,
) -> Tensor | list[Tensor]:
    """Pyramidal super-resolution with gradient guidance (paper Alg. 2) of the LR ``measurement`` ȳ.

    ``resolutions`` starts at the measurement's size. No reverse process at the coarsest level: the measurement
    itself is upsampled, re-noised and reversed at each finer level as in :func:`sample_pyramidal`, and after
    every reverse step (eq. 10) ``x_{t-1} ← x_{t-1} − λ ∇_{x_t} ‖D x0_hat(x_t) − ȳ‖²`` with λ = ``guidance_scale``,
    the gradient taken through the predictor and D the block mean down to the measurement's size. As D averages
    f² pixels, Dᵀ spreads a residual with weight 1/f²: when ∂x0_hat/∂x_t ≈ k·I, λ = f²/(2k²) is a full
    projection onto D x0_hat = ȳ (k ≈ 1 near the end of the reverse process), so useful λ grow with the SR factor
    and λ well above that diverges. The predictor must be differentiable.
    Returns the finest image, or with ``return_levels`` the images per resolution (the measurement first).
    """
    check_resolutions(resolutions)
    ddpm.check_image("measurement", measurement)
    if len(resolutions) < 2:
        raise FastgenError("super-resolution needs at least two resolutions (the measurement's and a finer one)")
    if measurement.shape[-2:] != (resolutions[0], resolutions[0]):
        raise FastgenError(
            f"measurement must be {resolutions[0]}x{resolutions[0]} (the first resolution), "
            f"got {tuple(measurement.shape[-2:])}"
        )
    finite_number(guidance_scale, "guidance (λ)", low=0)
    restart = _ccdf_restart(schedule, fine_steps, renoise_fraction)

    def guidance(x0_hat: Tensor) -> Tensor:
        return guidance_scale * consistency_loss(x0_hat, measurement)

    fine = _refine(
        predictor,
        schedule,
        measurement,
        len(resolutions) - 1,
        restart=restart,
        eta=eta,
        num_frequencies=num_frequencies,
        generator=generator,
        clip_x0=clip_x0,
        guidance=guidance if guidance_scale > 0 else None,
        progress=progress,
    )
    levels = [measurement, *fine]
    return levels if return_levels else levels[-1]


# ----------------------------------------------------------------------------------------------------------------
# internals


def _refine(
    predictor: CoordinatePredictor,
    schedule: DiffusionSchedule,
    x: Tensor,
    num_levels: int,
    *,
    restart: tuple[int, int],
    eta: float,
    num_frequencies: int,
    generator: torch.Generator | None,
    clip_x0: bool,
    guidance: ddpm.Guidance | None,
    progress: bool,
) -> list[Tensor]:
    """The shared coarse-to-fine loop: per level upsample ×2, re-noise to ``t_start`` (CCDF), reverse to 0."""
    t_start, num_steps = restart
    levels = []
    for _ in range(num_levels):
        upsampled = upsample(x)
        noise = ddpm.gaussian_noise(upsampled.shape, generator=generator, device=x.device, dtype=x.dtype)
        t = torch.full((x.shape[0],), float(t_start), device=x.device)
        x = ddpm.sample_ddim(
            _at_level(predictor, upsampled, num_frequencies),
            schedule,
            x_start=ddpm.q_sample(schedule, upsampled, t, noise),
            t_start=t_start,
            num_steps=num_steps,
            eta=eta,
            generator=generator,
            clip_x0=clip_x0,
            guidance=guidance,
            progress=progress,
        )
        levels.append(x)
    return levels


def _at_level(predictor: CoordinatePredictor, like: Tensor, num_frequencies: int) -> Predictor:
    """A plain ``predictor(x, t)`` for images the size of ``like``: appends that level's coordinate encoding."""
    batch, _, height, width = like.shape
    encoding = coordinate_encoding(
        batch, height, width, num_frequencies=num_frequencies, device=like.device, dtype=like.dtype
    )
    return lambda x, t: predictor(with_coordinates(x, encoding), t)


def pyramid_steps(schedule: DiffusionSchedule, coarse_steps: int | None, fine_steps: int,
                  renoise_fraction: float) -> tuple[int, tuple[int, int]]:  # fmt: skip
    """Alg. 1's step counts, checked: (T_f, (CCDF restart timestep, reverse steps per finer level)).

    ``coarse_steps`` None means T. Shared by :func:`sample_pyramidal` and the family's sampling program.
    """
    restart = _ccdf_restart(schedule, fine_steps, renoise_fraction)
    coarse_steps = schedule.num_steps if coarse_steps is None else coarse_steps
    if not isinstance(coarse_steps, int) or not 1 <= coarse_steps <= schedule.num_steps:
        raise FastgenError(f"coarse_steps (T_f) must be an integer in [1, {schedule.num_steps}], got {coarse_steps!r}")
    if fine_steps > coarse_steps:
        raise FastgenError(f"fine_steps (T_s) = {fine_steps} must not exceed coarse_steps (T_f) = {coarse_steps}")
    return coarse_steps, restart


def _ccdf_restart(schedule: DiffusionSchedule, fine_steps: int, renoise_fraction: float) -> tuple[int, int]:
    """(t_start, number of reverse steps) of a CCDF restart: t = round(Δt_s·(T-1)) reached in round(Δt_s·T_s)."""
    if not isinstance(schedule, DiffusionSchedule):
        raise FastgenError(f"schedule must be a DiffusionSchedule, got {type(schedule).__name__}")
    total = schedule.num_steps
    if not isinstance(fine_steps, int) or not 1 <= fine_steps <= total:
        raise FastgenError(f"fine_steps (T_s) must be an integer in [1, {total}], got {fine_steps!r}")
    if not 0 < renoise_fraction <= 1:
        raise FastgenError(f"renoise_fraction (Δt_s) must lie in (0, 1], got {renoise_fraction}")
    num_steps = round(renoise_fraction * fine_steps)
    if num_steps < 1:
        raise FastgenError(
            f"renoise_fraction·fine_steps = {renoise_fraction}·{fine_steps} rounds to 0 reverse steps; raise either"
        )
    return round(renoise_fraction * (total - 1)), num_steps


def check_resolutions(resolutions: object) -> None:
    """Square sides, ascending, each exactly twice the previous."""
    if (
        not isinstance(resolutions, Sequence)
        or len(resolutions) == 0
        or not all(isinstance(r, int) and r > 0 for r in resolutions)
    ):
        raise FastgenError(f"resolutions must be a non-empty sequence of positive integers, got {resolutions!r}")
    for coarse, fine in pairwise(resolutions):
        if fine != 2 * coarse:
            raise FastgenError(
                f"resolutions must be successive ×2 (ascending), got {list(resolutions)}: {coarse} → {fine}"
            )
