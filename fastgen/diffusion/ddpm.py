"""DDPM / DDIM: the Gaussian diffusion of Ho et al. (2020) and the DDIM sampler of Song et al. (2021).

Pure torch math over batched images ``[B, C, H, W]``, any device and floating dtype; no network code.

Conventions
-----------
* Timesteps are 0-based indices ``t ∈ {0, …, T-1}``; index ``t`` is the papers' step ``t+1``. So
  ``x_t = √ᾱ_t·x_0 + √(1-ᾱ_t)·ε`` with ``ᾱ_t = Π_{s≤t}(1-β_s)``, and the reverse step taken at ``t = 0``
  returns the clean image.
* A *predictor* is ``predictor(x, t) -> model_out``: ``x`` is ``[B, C, H, W]``, ``t`` a float32 tensor ``[B]``
  holding the integer timestep index, ``model_out`` has the shape of ``x`` and is ε (``prediction_type='eps'``,
  the default) or x_0 (``'x0'``).
* The step functions (:func:`ancestral_step`, :func:`ddim_step`) are pure: no RNG, no loop, no host
  synchronisation and no data-dependent control flow, so a runtime can capture them in CUDA graphs and use
  them as the oracle for fused kernels. They therefore check shapes but not timestep *values*; the samplers
  own the loop, the timesteps and the noise, and validate everything up front.
* Precision: the per-sample coefficients stay in the schedule's dtype (float32 by default), so type promotion
  runs the arithmetic of float16/bfloat16 images in float32 and only the results are cast back. (In float16,
  ᾱ_0 = 0.9999 rounds to 1 and 1/√ᾱ_{T-1} times |x| > 3 overflows.)
* Reproducibility: all noise comes from :func:`gaussian_noise`, drawn in float32 on the generator's device
  (CPU by default) and then moved, so one seeded CPU generator gives the same images on every backend.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from fastgen.diffusion.schedules import make_betas
from fastgen.errors import FastgenError
from fastgen.progress import progress_bar

PREDICTION_TYPES = ("eps", "x0")
DDIM_STEPS, DDIM_ETA = 50, 0.0  # the DDIM sampler's defaults (the families' too)

Predictor = Callable[[Tensor, Tensor], Tensor]
"""``predictor(x [B,C,H,W], t float32 [B]) -> model_out [B,C,H,W]`` (ε or x_0, see the schedule)."""

Guidance = Callable[[Tensor], Tensor]
"""``guidance(x0_hat) -> loss`` (per sample or scalar); samplers subtract ``∇_{x_t} loss.sum()`` after each step."""


@dataclass(frozen=True, eq=False)
class DiffusionSchedule:
    """The precomputed per-timestep constants of a DDPM, each a 1-D tensor of length T.

    Build with :meth:`build` (or :meth:`from_betas`); move with :meth:`to`. Derived constants are computed in
    float64 and then stored in the requested dtype, so float32 tables are correctly rounded.
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    sqrt_recip_alphas_cumprod: Tensor  # 1/√ᾱ_t
    sqrt_recipm1_alphas_cumprod: Tensor  # √(1/ᾱ_t - 1)
    posterior_variance: Tensor  # β̃_t = β_t (1-ᾱ_{t-1})/(1-ᾱ_t); 0 at t = 0
    posterior_std: Tensor
    posterior_mean_coef_x0: Tensor  # μ̃_t = coef_x0·x_0 + coef_xt·x_t
    posterior_mean_coef_xt: Tensor
    prediction_type: str = "eps"

    @classmethod
    def build(
        cls,
        kind: str = "linear",
        num_steps: int = 1000,
        *,
        prediction_type: str = "eps",
        dtype: torch.dtype = torch.float32,
        **beta_kwargs: float,
    ) -> DiffusionSchedule:
        """Schedule from :func:`make_betas` (``'linear'`` 1e-4..0.02 or ``'cosine'``; extra kwargs go there)."""
        return cls.from_betas(make_betas(kind, num_steps, **beta_kwargs), prediction_type=prediction_type, dtype=dtype)

    @classmethod
    def from_betas(
        cls, betas: Tensor, *, prediction_type: str = "eps", dtype: torch.dtype = torch.float32
    ) -> DiffusionSchedule:
        """Schedule from explicit betas (1-D, each in (0, 1))."""
        if prediction_type not in PREDICTION_TYPES:
            raise FastgenError(
                f"unknown prediction_type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}"
            )
        if not dtype.is_floating_point:
            raise FastgenError(f"schedule dtype must be floating point, got {dtype}")
        if not isinstance(betas, Tensor) or betas.dim() != 1 or betas.numel() == 0:
            raise FastgenError(f"betas must be a non-empty 1-D tensor, got {describe(betas)}")
        betas = betas.detach().to(device="cpu", dtype=torch.float64)
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise FastgenError("every beta must lie in (0, 1)")
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        table = dict(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - alphas_cumprod).sqrt(),
            sqrt_recip_alphas_cumprod=alphas_cumprod.rsqrt(),
            sqrt_recipm1_alphas_cumprod=(1 / alphas_cumprod - 1).sqrt(),
            posterior_variance=posterior_variance,
            posterior_std=posterior_variance.sqrt(),
            posterior_mean_coef_x0=betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            posterior_mean_coef_xt=(1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        )
        return cls(**{name: value.to(dtype) for name, value in table.items()}, prediction_type=prediction_type)

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.numel()

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> DiffusionSchedule:
        """A copy with every table on ``device`` and/or in ``dtype`` (``None`` keeps the current one)."""
        if dtype is not None and not dtype.is_floating_point:
            raise FastgenError(f"schedule dtype must be floating point, got {dtype}")
        moved = {
            field.name: getattr(self, field.name).to(device=device, dtype=dtype)
            for field in dataclasses.fields(self)
            if isinstance(getattr(self, field.name), Tensor)
        }
        return dataclasses.replace(self, **moved)


# ----------------------------------------------------------------------------------------------------------------
# forward process and training objective


def q_sample(schedule: DiffusionSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Draw x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I) with the given standard-normal ``noise``."""
    check_image("x0", x0)
    _check_same_shape("noise", noise, x0, "x0")
    _check_timesteps("t", t, x0.shape[0], schedule.num_steps)
    x_t = _at(schedule.sqrt_alphas_cumprod, t, x0) * x0 + _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise
    return x_t.to(x0.dtype)


def training_target(schedule: DiffusionSchedule, x0: Tensor, noise: Tensor) -> Tensor:
    """What the network regresses: the noise for ``'eps'``, the clean image for ``'x0'``."""
    check_image("x0", x0)
    _check_same_shape("noise", noise, x0, "x0")
    return noise if schedule.prediction_type == "eps" else x0


def training_loss(schedule: DiffusionSchedule, model_out: Tensor, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """Per-sample mean squared error ``[B]`` of ``model_out`` against :func:`training_target` (Ho et al. L_simple).

    ``t`` (the timesteps ``x_t`` was drawn at) is checked against the batch so a mismatched batch fails loudly.
    """
    target = training_target(schedule, x0, noise)
    _check_same_shape("model_out", model_out, x0, "x0")
    _check_timesteps("t", t, x0.shape[0], schedule.num_steps)
    return (model_out - target).square().flatten(1).mean(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# pure step functions (the oracles for fused kernels)


def model_output_to_x0_eps(
    schedule: DiffusionSchedule, x_t: Tensor, t: Tensor, model_out: Tensor, clip_x0: bool = False
) -> tuple[Tensor, Tensor]:
    """Convert a model output at ``(x_t, t)`` to the pair ``(x0_hat, eps_hat)``.

    With ``clip_x0`` the image estimate is clamped to [-1, 1] and ε is recomputed from it, so the pair always
    satisfies ``x_t = √ᾱ_t·x0_hat + √(1-ᾱ_t)·eps_hat`` (the steps rely on that consistency).
    """
    x0_hat, eps_hat = _x0_eps(schedule, x_t, t, model_out, clip_x0)
    return x0_hat.to(x_t.dtype), eps_hat.to(x_t.dtype)


def ancestral_step(
    schedule: DiffusionSchedule,
    x_t: Tensor,
    t: Tensor,
    model_out: Tensor,
    noise: Tensor | None,
    clip_x0: bool = False,
) -> Tensor:
    """One DDPM reverse step x_t → x_{t-1} ~ N(μ̃_t(x_t, x0_hat), β̃_t I).

    The variance is the posterior β̃_t ("fixed small" of Ho et al.): exact when the data is one image, equal to
    DDIM with η = 1, and 0 at t = 0 so the last step returns the mean. ``noise=None`` returns the mean.
    """
    x0_hat, _ = _x0_eps(schedule, x_t, t, model_out, clip_x0)
    x_prev = _at(schedule.posterior_mean_coef_x0, t, x_t) * x0_hat + _at(schedule.posterior_mean_coef_xt, t, x_t) * x_t
    if noise is not None:
        _check_same_shape("noise", noise, x_t, "x_t")
        x_prev = x_prev + _at(schedule.posterior_std, t, x_t) * noise
    return x_prev.to(x_t.dtype)


def ddim_step(
    schedule: DiffusionSchedule,
    x_t: Tensor,
    t: Tensor,
    t_prev: Tensor,
    model_out: Tensor,
    eta: float,
    noise: Tensor | None,
    clip_x0: bool = False,
) -> Tensor:
    """One DDIM step x_t → x_{t_prev} (Song et al. eq. 12); ``t_prev = -1`` means the clean image (ᾱ = 1).

    σ = η·√((1-ᾱ_prev)/(1-ᾱ_t))·√(1-ᾱ_t/ᾱ_prev); η = 0 is deterministic, η = 1 with ``t_prev = t-1`` is the
    ancestral step. ``noise=None`` drops the σ·z term (what η = 0 needs anyway).
    """
    if not 0.0 <= eta <= 1.0:
        raise FastgenError(f"eta must lie in [0, 1], got {eta}")
    x0_hat, eps_hat = _x0_eps(schedule, x_t, t, model_out, clip_x0)
    _check_timestep_shape("t_prev", t_prev, x_t.shape[0])
    alpha_bar = _at(schedule.alphas_cumprod, t, x_t)
    # Clamping keeps the gather in range for t_prev = -1; torch.where then substitutes ᾱ = 1 without a branch.
    alpha_bar_prev = torch.where(
        _as_column(t_prev, x_t) >= 0, _at(schedule.alphas_cumprod, t_prev.clamp(min=0), x_t), 1.0
    )
    variance = eta**2 * (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)
    # Rounding can push 1 - ᾱ_prev - σ² a hair below zero at η = 1.
    direction = (1 - alpha_bar_prev - variance).clamp(min=0).sqrt()
    x_prev = alpha_bar_prev.sqrt() * x0_hat + direction * eps_hat
    if noise is not None:
        _check_same_shape("noise", noise, x_t, "x_t")
        x_prev = x_prev + variance.sqrt() * noise
    return x_prev.to(x_t.dtype)


def guidance_gradient(
    predictor: Predictor, schedule: DiffusionSchedule, x_t: Tensor, t: Tensor, guidance: Guidance
) -> tuple[Tensor, Tensor]:
    """Predictor output at ``x_t`` and ``∇_{x_t} guidance(x0_hat(x_t)).sum()``, differentiating through the predictor.

    One predictor call serves both the reverse step and the gradient (PDDPM eq. 10 takes it w.r.t. x_t).
    """
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        model_out = predictor(x_in, t)
        _check_same_shape("predictor output", model_out, x_t, "its input")
        x0_hat, _ = model_output_to_x0_eps(schedule, x_in, t, model_out)
        loss = guidance(x0_hat).sum()
        # An x0-predictor that ignores its input gives a loss with no path to x_t: the gradient is zero.
        if not loss.requires_grad:
            return model_out.detach(), torch.zeros_like(x_t)
        (gradient,) = torch.autograd.grad(loss, x_in, allow_unused=True)
    return model_out.detach(), torch.zeros_like(x_t) if gradient is None else gradient


# ----------------------------------------------------------------------------------------------------------------
# per-step constants (the sampling program's affine steps and the fused kernel ddpm_step.cu)


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


def _check_step_index(schedule: DiffusionSchedule, name: str, t: object, lowest: int = 0) -> int:
    if isinstance(t, bool) or not isinstance(t, int) or not lowest <= t < schedule.num_steps:
        raise FastgenError(f"{name} must be an integer in [{lowest}, {schedule.num_steps}), got {t!r}")
    return t


def ancestral_constants(schedule: DiffusionSchedule, t: int, clip_x0: bool = False) -> AffineStepConstants:
    """Constants of ddpm.ancestral_step at integer step ``t``: out = μ̃_t(x0_hat, x_t) + β̃_t^½ z."""
    _check_step_index(schedule, "t", t)
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
    _check_step_index(schedule, "t", t)
    _check_step_index(schedule, "t_prev", t_prev, lowest=-1)
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


# ----------------------------------------------------------------------------------------------------------------
# samplers


def gaussian_noise(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard-normal noise drawn in float32 on the generator's device (CPU without one), then moved/cast.

    Drawing always in the same place and precision is what makes a seed reproduce across devices and backends;
    pass a CUDA generator instead when speed matters more than that.
    """
    source = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(tuple(shape), generator=generator, device=source, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def ddim_timesteps(num_steps: int, t_start: int) -> list[int]:
    """``num_steps`` descending timesteps, evenly spaced and rounded, from ``t_start`` down to 0."""
    if not isinstance(num_steps, int) or not 1 <= num_steps <= t_start + 1:
        raise FastgenError(
            f"num_steps must be an integer in [1, {t_start + 1}] when starting at t={t_start}, got {num_steps!r}"
        )
    # Spacing ≥ 1 before rounding keeps the rounded timesteps distinct.
    return torch.linspace(t_start, 0, num_steps, dtype=torch.float64).round().long().tolist()


@torch.no_grad()
def sample_ancestral(
    predictor: Predictor,
    schedule: DiffusionSchedule,
    shape: Sequence[int] | None = None,
    *,
    x_start: Tensor | None = None,
    t_start: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    clip_x0: bool = False,
    guidance: Guidance | None = None,
    progress: bool = False,
) -> Tensor:
    """DDPM ancestral sampling through every timestep from ``t_start`` (default T-1) to the clean image.

    Start from pure noise of ``shape`` (drawn with ``generator`` on ``device`` in ``dtype``) or from an explicit
    state ``x_start`` at ``t_start`` — the latter gives explicit x_T and CCDF-style restarts.
    ``clip_x0`` clamps x0_hat to [-1, 1] at every step (off by default: data need not live in [-1, 1]).
    ``guidance`` adds a loss-gradient correction after every step (see :func:`guidance_gradient`).
    """
    x, start = _initial_state(schedule, shape, x_start, t_start, generator, device, dtype)

    def step(
        schedule: DiffusionSchedule, x: Tensor, t: Tensor, t_prev: Tensor, out: Tensor, noise: Tensor | None
    ) -> Tensor:
        return ancestral_step(schedule, x, t, out, noise, clip_x0)

    timesteps = list(range(start, -1, -1))
    return _reverse(predictor, schedule, x, timesteps, step, True, generator, guidance, progress, "DDPM")


@torch.no_grad()
def sample_ddim(
    predictor: Predictor,
    schedule: DiffusionSchedule,
    shape: Sequence[int] | None = None,
    *,
    num_steps: int = DDIM_STEPS,
    eta: float = DDIM_ETA,
    x_start: Tensor | None = None,
    t_start: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    clip_x0: bool = False,
    guidance: Guidance | None = None,
    progress: bool = False,
) -> Tensor:
    """DDIM sampling in ``num_steps`` steps over :func:`ddim_timesteps` from ``t_start`` (default T-1) to 0.

    ``eta`` ∈ [0, 1]: 0 is the deterministic DDIM, 1 the ancestral DDPM on the strided (respaced) schedule.
    The remaining arguments are as for :func:`sample_ancestral`.
    """
    if not 0.0 <= eta <= 1.0:
        raise FastgenError(f"eta must lie in [0, 1], got {eta}")
    x, start = _initial_state(schedule, shape, x_start, t_start, generator, device, dtype)
    timesteps = ddim_timesteps(num_steps, start)

    def step(
        schedule: DiffusionSchedule, x: Tensor, t: Tensor, t_prev: Tensor, out: Tensor, noise: Tensor | None
    ) -> Tensor:
        return ddim_step(schedule, x, t, t_prev, out, eta, noise, clip_x0)

    return _reverse(predictor, schedule, x, timesteps, step, eta > 0, generator, guidance, progress, "DDIM")


# ----------------------------------------------------------------------------------------------------------------
# internals

_Step = Callable[[DiffusionSchedule, Tensor, Tensor, Tensor, Tensor, "Tensor | None"], Tensor]


def _reverse(
    predictor: Predictor,
    schedule: DiffusionSchedule,
    x: Tensor,
    timesteps: list[int],
    step: _Step,
    noisy: bool,
    generator: torch.Generator | None,
    guidance: Guidance | None,
    progress: bool,
    desc: str,
) -> Tensor:
    """The one reverse loop: predictor call, optional guidance, noise draw, step — for every timestep."""
    schedule = schedule.to(device=x.device)  # once, so every per-step gather stays on the image's device
    batch = x.shape[0]
    # t_prev = -1 marks the final step, to the clean image.
    for t, t_prev in progress_bar(pairwise([*timesteps, -1]), total=len(timesteps), disable=not progress, desc=desc):
        t_now = torch.full((batch,), float(t), device=x.device)
        t_next = torch.full((batch,), float(t_prev), device=x.device)
        if guidance is None:
            model_out = predictor(x, t_now)
            _check_same_shape("predictor output", model_out, x, "its input")
            correction = None
        else:
            model_out, correction = guidance_gradient(predictor, schedule, x, t_now, guidance)
        # The last step (to the clean image) has zero variance, so no noise is drawn for it.
        noise = (
            gaussian_noise(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if noisy and t_prev >= 0
            else None
        )
        # A predictor under autocast may answer in another precision; the state keeps its own.
        x = step(schedule, x, t_now, t_next, model_out.to(x.dtype), noise)
        if correction is not None:
            x = x - correction
    return x


def _initial_state(
    schedule: DiffusionSchedule,
    shape: Sequence[int] | None,
    x_start: Tensor | None,
    t_start: int | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> tuple[Tensor, int]:
    """Validated starting state and timestep: pure noise at T-1, or ``x_start`` at ``t_start``."""
    if not isinstance(schedule, DiffusionSchedule):
        raise FastgenError(f"schedule must be a DiffusionSchedule, got {type(schedule).__name__}")
    last = schedule.num_steps - 1
    if (shape is None) == (x_start is None):
        raise FastgenError("give exactly one of shape (start from pure noise) or x_start (start from a given state)")
    if x_start is None:
        if t_start is not None and t_start != last:
            raise FastgenError(f"t_start={t_start} needs x_start: only x at t={last} is pure noise")
        shape = tuple(shape)
        if len(shape) != 4 or not all(isinstance(n, int) and n > 0 for n in shape):
            raise FastgenError(f"shape must be four positive integers [B, C, H, W], got {shape!r}")
        return gaussian_noise(shape, generator=generator, device=device, dtype=dtype), last
    check_image("x_start", x_start)
    start = last if t_start is None else t_start
    if not isinstance(start, int) or not 0 <= start <= last:
        raise FastgenError(f"t_start must be an integer in [0, {last}], got {t_start!r}")
    return x_start, start


def _as_column(values: Tensor, like: Tensor) -> Tensor:
    """``[B]`` → ``[B, 1, 1, 1]`` on ``like``'s device, to broadcast over an image batch."""
    return values.to(like.device).reshape(-1, *([1] * (like.dim() - 1)))


def _at(table: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """``table[t]`` per sample as a ``[B, 1, 1, 1]`` column on ``like``'s device, kept in the table's dtype."""
    return _as_column(table[t.to(table.device).long()], like)


def _x0_eps(
    schedule: DiffusionSchedule, x_t: Tensor, t: Tensor, model_out: Tensor, clip_x0: bool
) -> tuple[Tensor, Tensor]:
    """:func:`model_output_to_x0_eps` in the promoted (≥ schedule) precision, for the steps to continue in."""
    check_image("x_t", x_t)
    _check_same_shape("model_out", model_out, x_t, "x_t")
    _check_timestep_shape("t", t, x_t.shape[0])
    if schedule.prediction_type == "eps":
        x0_hat = (
            _at(schedule.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - _at(schedule.sqrt_recipm1_alphas_cumprod, t, x_t) * model_out
        )
        if not clip_x0:
            return x0_hat, model_out
    else:
        x0_hat = model_out
    if clip_x0:
        x0_hat = x0_hat.clamp(-1, 1)
    sqrt_alpha_bar, sqrt_one_minus = (
        _at(schedule.sqrt_alphas_cumprod, t, x_t),
        _at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t),
    )
    return x0_hat, (x_t - sqrt_alpha_bar * x0_hat) / sqrt_one_minus


def describe(value: object) -> str:
    """How an argument looks, for error messages: its shape if it is a tensor, else its type."""
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def check_image(name: str, x: object) -> None:
    """Raise FastgenError unless ``x`` is a floating-point ``[B, C, H, W]`` tensor (shared by the families)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise FastgenError(f"{name} must be a floating-point tensor [B, C, H, W], got {describe(x)}")


def _check_same_shape(name: str, value: object, reference: Tensor, reference_name: str) -> None:
    if not isinstance(value, Tensor) or value.shape != reference.shape:
        raise FastgenError(
            f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, got {describe(value)}"
        )


def _check_timestep_shape(name: str, t: object, batch: int) -> None:
    if not isinstance(t, Tensor) or t.shape != (batch,):
        raise FastgenError(f"{name} must be a tensor of shape [{batch}] (one timestep per sample), got {describe(t)}")


def _check_timesteps(name: str, t: Tensor, batch: int, num_steps: int) -> None:
    """Shape and values (integers in [0, T-1]); reads the values, so only for entry points, not the steps."""
    _check_timestep_shape(name, t, batch)
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise FastgenError(f"{name} must hold integer timesteps, got fractional values")
    if not bool(((t >= 0) & (t < num_steps)).all()):
        raise FastgenError(
            f"{name} out of range: timesteps must lie in [0, {num_steps - 1}], "
            f"got min {t.min().item()}, max {t.max().item()}"
        )
