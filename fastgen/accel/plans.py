"""Capturable samplers: one sample of a family as a fixed sequence of network calls and reverse steps.

A plan is the family's sampler rewritten for a CUDA graph: shapes, timesteps and schedule constants are fixed when
the plan is built, every timestep input is a tensor made once, nothing reads a value back to the host, and all
randomness is drawn through ``noise``. Drawing the same noise in the same order as the family's own sampler,
a plan reproduces it: with the reference steps exactly, with the fused kernels to float32 rounding.

The steps are the fused kernels of :mod:`fastgen.kernels` where they can run (CUDA, cuda.core, the kernel's
constraints), else the torch references of :mod:`fastgen.diffusion`, which are capturable too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from fastgen.diffusion import blur, ddpm, pddpm, udpm
from fastgen.errors import FastgenError
from fastgen.families import Family, Sites
from fastgen.families.blur import BlurFamily
from fastgen.families.ddpm import SAMPLERS as DDPM_SAMPLERS
from fastgen.families.ddpm import DDPMFamily
from fastgen.families.pddpm import PDDPMFamily
from fastgen.families.udpm import UDPMFamily
from fastgen.kernels import loader, ops

NoiseSource = Callable[[tuple[int, ...]], Tensor]
"""``noise(shape)``: standard-normal float32 noise on the plan's device (inside a graph: torch's graph-safe Philox)."""

KERNEL_CHOICES = ("auto", "fused", "reference")


def use_fused(kernels: str, device: torch.device, unsupported: str | None = None) -> bool:
    """Whether a plan runs the fused kernels: ``auto`` where they can, ``fused`` or an error, ``reference`` never.

    ``unsupported`` is the family's own reason the kernels do not apply (None when they do).
    """
    if kernels not in KERNEL_CHOICES:
        raise FastgenError(f"unknown kernels choice {kernels!r}; choose one of {', '.join(KERNEL_CHOICES)}")
    if kernels == "reference":
        return False
    reason = unsupported or _kernels_unavailable(device)
    if reason is not None and kernels == "fused":
        raise FastgenError(f"fused kernels requested, but {reason}")
    return reason is None


def _kernels_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"they run on CUDA tensors and this sampler runs on {device}"
    try:
        loader.cuda_core()
    except FastgenError as error:
        return str(error)
    return None


class SamplePlan(ABC):
    """One sample of ``batch_size`` images: ``nfe`` network calls in all, of which ``run`` makes ``calls``.

    ``max_calls`` cuts the sample after that many network calls (and their steps): for timing chains too long
    to run in full, never for images. ``fused`` says which step implementation ``run`` uses.
    """

    family_class: ClassVar[type[Family]]
    capturable: bool = True
    """Whether ``run`` can be captured in a CUDA graph (every plan also runs eagerly)."""

    def __init__(self, family: Family, batch_size: int, device: torch.device, nfe: int, fused: bool,
                 max_calls: int | None) -> None:  # fmt: skip
        self.batch_size = batch_size
        self.device = device
        self.nfe = nfe
        self.fused = fused
        self.calls = nfe if max_calls is None else min(nfe, max_calls)
        image = family.image
        self.image_shape = (batch_size, image.channels, image.resolution, image.resolution)

    @abstractmethod
    def run(self, sites: Sites, noise: NoiseSource) -> Tensor:
        """The sample [B, C, H, W] (float32), its randomness drawn from ``noise`` in the family sampler's order."""


class UDPMPlan(SamplePlan):
    """UDPM (Alg. 2): x_L drawn from its marginal prior, then per level L … 1 the level network and the exact posterior step."""

    family_class = UDPMFamily

    def __init__(self, family: UDPMFamily, batch_size: int, device: torch.device, kernels: str,
                 max_calls: int | None) -> None:  # fmt: skip
        schedule = family.schedule
        unsupported = None if schedule.gamma == 2 else f"they handle γ = 2 only and this model has γ = {schedule.gamma}"
        super().__init__(family, batch_size, device, schedule.levels, use_fused(kernels, device, unsupported), max_calls)
        self.process = family.process
        top = family.input_resolution(schedule.levels)
        self.top_shape = (batch_size, family.image.channels, top, top)

    @property
    def capturable(self) -> bool:
        # The circulant reference step copies its kernel host → device on every call, which a capture forbids.
        return self.fused or not isinstance(self.process, udpm.CirculantUDPM)

    def run(self, sites: Sites, noise: NoiseSource) -> Tensor:
        x = self.process.prior_sample(noise(self.top_shape))
        for level in range(self.nfe, self.nfe - self.calls, -1):
            x = self._posterior(x, sites[f"level_{level}"](x), level, noise)
        return x

    def _posterior(self, x: Tensor, x_hat: Tensor, level: int, noise: NoiseSource) -> Tensor:
        # Level 1's posterior is x̂ itself (σ̃_0 = 0): its noise has no effect, so none is drawn for it.
        final = level == 1
        if not self.fused:
            return self.process.posterior_step(x, x_hat, level, torch.zeros_like(x_hat) if final else noise(x_hat.shape))
        if isinstance(self.process, udpm.CirculantUDPM):
            # Matheron's rule takes its own pair of white maps (prior at x̂'s size, observation at x's).
            pair = None if final else (noise(x_hat.shape), noise(x.shape))
            return ops.udpm_matheron_step(self.process, x, x_hat, level, pair)
        return ops.udpm_posterior_step(self.process, x, x_hat, level, None if final else noise(x_hat.shape))


def _timestep_rows(timesteps: list[int], batch_size: int, device: torch.device) -> Tensor:
    """Row i: step i's timestep for the whole batch (``timesteps`` ends with -1, the clean image); made once,
    a static input of the graph."""
    return torch.tensor(timesteps, dtype=torch.float32, device=device)[:, None].repeat(1, batch_size)


def _ddim_step(fused: bool, schedule: ddpm.DiffusionSchedule, x: Tensor, timesteps: list[int], rows: Tensor, i: int,
               model_out: Tensor, eta: float, noise: Tensor | None, clip_x0: bool) -> Tensor:  # fmt: skip
    """DDIM step i of a chain, from ``timesteps[i]`` to ``timesteps[i + 1]``: the fused kernel (host constants from
    the CPU ``schedule``) or the reference (``schedule`` and ``rows`` on the device)."""
    if fused:
        return ops.ddim_step(schedule, x, timesteps[i], timesteps[i + 1], model_out, eta, noise, clip_x0)
    return ddpm.ddim_step(schedule, x, rows[i], rows[i + 1], model_out, eta, noise, clip_x0)


class _ChainPlan(SamplePlan):
    """A reverse chain over fixed ``timesteps``: per step one ``denoiser`` call and one reverse step."""

    def __init__(self, family: Family, batch_size: int, device: torch.device, timesteps: list[int], fused: bool,
                 max_calls: int | None) -> None:  # fmt: skip
        super().__init__(family, batch_size, device, len(timesteps), fused, max_calls)
        self.timesteps = [*timesteps, -1]  # -1 marks the step to the clean image
        self._t = _timestep_rows(self.timesteps, batch_size, device)

    def run(self, sites: Sites, noise: NoiseSource) -> Tensor:
        denoiser = sites["denoiser"]
        x = self._initial(noise)
        for i in range(self.calls):
            x = self._step(x, i, denoiser(x, self._t[i]), noise)
        return x

    @abstractmethod
    def _initial(self, noise: NoiseSource) -> Tensor:
        """The chain's starting state."""

    @abstractmethod
    def _step(self, x: Tensor, i: int, model_out: Tensor, noise: NoiseSource) -> Tensor:
        """Step i: from ``timesteps[i]`` to ``timesteps[i + 1]``."""


class DDPMPlan(_ChainPlan):
    """DDPM ancestral (all T steps) or DDIM (``steps``, ``eta``), as :meth:`DDPMFamily.sample`."""

    family_class = DDPMFamily

    def __init__(self, family: DDPMFamily, batch_size: int, device: torch.device, kernels: str, max_calls: int | None,
                 *, sampler: str = "ancestral", steps: int = 50, eta: float = 0.0, clip_x0: bool = False) -> None:  # fmt: skip
        if sampler not in DDPM_SAMPLERS:
            raise FastgenError(f"unknown DDPM sampler {sampler!r}; choose one of {', '.join(DDPM_SAMPLERS)}")
        if not 0.0 <= eta <= 1.0:
            raise FastgenError(f"eta must lie in [0, 1], got {eta}")
        last = family.schedule.num_steps - 1
        timesteps = list(range(last, -1, -1)) if sampler == "ancestral" else ddpm.ddim_timesteps(steps, last)
        super().__init__(family, batch_size, device, timesteps, use_fused(kernels, device), max_calls)
        self.ancestral = sampler == "ancestral"
        self.noisy = self.ancestral or eta > 0
        self.eta = eta
        self.clip_x0 = clip_x0
        # The fused steps compute their constants on the host: they read the CPU tables (no device sync).
        self.schedule = family.schedule if self.fused else family.schedule.to(device)

    def _initial(self, noise: NoiseSource) -> Tensor:
        return noise(self.image_shape)

    def _step(self, x: Tensor, i: int, model_out: Tensor, noise: NoiseSource) -> Tensor:
        t, t_prev = self.timesteps[i], self.timesteps[i + 1]
        z = noise(x.shape) if self.noisy and t_prev >= 0 else None  # the last step has zero variance
        if not self.ancestral:
            return _ddim_step(self.fused, self.schedule, x, self.timesteps, self._t, i, model_out, self.eta, z, self.clip_x0)
        if self.fused:
            return ops.ddpm_ancestral_step(self.schedule, x, t, model_out, z, self.clip_x0)
        return ddpm.ancestral_step(self.schedule, x, self._t[i], model_out, z, self.clip_x0)


class BlurPlan(_ChainPlan):
    """Blur diffusion: the full reverse chain over all T steps, as :func:`fastgen.diffusion.blur.sample`."""

    family_class = BlurFamily

    def __init__(self, family: BlurFamily, batch_size: int, device: torch.device, kernels: str,
                 max_calls: int | None) -> None:  # fmt: skip
        last = family.schedule.num_steps - 1
        super().__init__(family, batch_size, device, list(range(last, -1, -1)), use_fused(kernels, device), max_calls)
        self.schedule = family.schedule.to(device)
        # Prior x_{T-1} = U √(1 − ā_{T-1}) Uᵀ ε (see blur.sample_steps): the filter is made once.
        self._prior_filter = self.schedule.one_minus_alphas_cumprod[-1:, None].sqrt()

    def _initial(self, noise: NoiseSource) -> Tensor:
        return blur.spectral_filter(noise(self.image_shape), self._prior_filter, self.schedule.basis)

    def _step(self, x: Tensor, i: int, model_out: Tensor, noise: NoiseSource) -> Tensor:
        t = self.timesteps[i]
        z = noise(x.shape) if t > 0 else None  # the last step adds no noise
        if self.fused:
            return ops.blur_reverse_step(self.schedule, x, t, model_out, z)
        return blur.reverse_step(self.schedule, x, t, model_out, torch.zeros_like(x) if z is None else z)


class PDDPMPlan(SamplePlan):
    """PDDPM (Alg. 1) as :meth:`PDDPMFamily.sample`: DDIM(η) over T_f steps at the coarsest size, then per finer
    size ×2 upsampling, a CCDF re-noise to the restart timestep and DDIM(η) down to the clean image."""

    family_class = PDDPMFamily

    def __init__(self, family: PDDPMFamily, batch_size: int, device: torch.device, kernels: str,
                 max_calls: int | None, **options: Any) -> None:  # fmt: skip
        settings = family.pyramid_settings(options)
        schedule = family.schedule
        coarse_steps, (t_restart, fine_steps) = pddpm.pyramid_steps(
            schedule, settings["coarse_steps"], settings["fine_steps"], settings["renoise_fraction"])
        last = schedule.num_steps - 1
        chains = [ddpm.ddim_timesteps(coarse_steps, last)] + [ddpm.ddim_timesteps(fine_steps, t_restart)] * (
            len(family.resolutions) - 1)
        super().__init__(family, batch_size, device, sum(map(len, chains)), use_fused(kernels, device), max_calls)
        self.eta, self.clip_x0 = settings["eta"], settings["clip_x0"]
        self.resolutions = family.resolutions
        self.chains = [[*timesteps, -1] for timesteps in chains]  # -1 marks the step to the clean image
        self._rows = [_timestep_rows(timesteps, batch_size, device) for timesteps in self.chains]
        on_device = schedule.to(device)
        self.schedule = schedule if self.fused else on_device
        # q(x_t | x_0) at the restart timestep, as 0-d device tensors: the same float32 products as ddpm.q_sample.
        self._restart = (on_device.sqrt_alphas_cumprod[t_restart], on_device.sqrt_one_minus_alphas_cumprod[t_restart])
        coarse = self.resolutions[0]
        self.coarse_shape = (batch_size, family.image.channels, coarse, coarse)

    def run(self, sites: Sites, noise: NoiseSource) -> Tensor:
        x = noise(self.coarse_shape)
        calls = 0
        for level, (resolution, timesteps, rows) in enumerate(zip(self.resolutions, self.chains, self._rows)):
            if level:
                upsampled = pddpm.upsample(x)
                x = self._restart[0] * upsampled + self._restart[1] * noise(upsampled.shape)
            site = sites[f"res_{resolution}"]
            for i in range(len(timesteps) - 1):
                if calls == self.calls:
                    return x
                model_out = site(x, rows[i])
                z = noise(x.shape) if self.eta > 0 and timesteps[i + 1] >= 0 else None
                x = _ddim_step(self.fused, self.schedule, x, timesteps, rows, i, model_out, self.eta, z, self.clip_x0)
                calls += 1
        return x


PLANS: dict[str, type[SamplePlan]] = {plan.family_class.name: plan for plan in (UDPMPlan, DDPMPlan, PDDPMPlan, BlurPlan)}


def plan_for(family: Family, batch_size: int, device: torch.device | str, *, kernels: str = "auto",
             max_calls: int | None = None, **options: Any) -> SamplePlan:  # fmt: skip
    """The capturable plan of ``family``'s sampler with its ``options`` (those of :meth:`Family.sample`)."""
    if family.name not in PLANS:
        raise FastgenError(
            f"no graph plan for the {family.name} family yet (graph plans: {', '.join(PLANS)}); "
            "sample it with the torch backend"
        )
    family.check_sampler_options(options)
    if "latents" in options:
        raise FastgenError("a graph sampler draws its latents in the graph; sample explicit latents with the family")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FastgenError(f"batch size must be a positive integer, got {batch_size!r}")
    if max_calls is not None and (isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1):
        raise FastgenError(f"max_calls must be a positive integer or None, got {max_calls!r}")
    return PLANS[family.name](family, batch_size, torch.device(device), kernels, max_calls, **options)
