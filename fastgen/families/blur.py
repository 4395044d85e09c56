"""Blur diffusion: DDPM-style noise per frequency of a Fourier/DCT basis, with blur growing over the steps.

The network sees pixels and predicts the white pixel-space ε; every step of the sampler is one forward
transform of [x, ε̂, z], a per-frequency combination and one inverse transform (``fastgen.diffusion.blur``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fastgen.diffusion import blur
from fastgen.families.base import ModelConfig, check_keys
from fastgen.families.ddpm import DenoiserFamily
from fastgen.families.denoising import DenoisingObjective, device_copies
from fastgen.sampling.program import BlurSteps, DenoiseChain, Noise, Program, SpectralFilter

DIFFUSION_KEYS = {"num_steps", "beta_schedule", "blur_schedule", "blur_sigma", "final_blur_power", "basis"}


class BlurFamily(DenoiserFamily):
    name = "blur"
    samplers: ClassVar[dict[str, dict[str, Any]]] = {"chain": {}}

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        check_keys("[diffusion]", config.diffusion, DIFFUSION_KEYS)
        self.schedule = blur.make_blur_schedule(self.image.resolution, self.image.resolution, **config.diffusion)
        self.num_steps = self.schedule.num_steps

    def objective(self, networks: dict[str, nn.Module], loss: Mapping[str, Any]) -> DenoisingObjective:
        check_keys("[loss]", loss, set())
        schedule = self.schedule
        schedule_on = device_copies(schedule)

        def corrupt(x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
            return blur.q_sample(schedule_on(x0.device), x0, t, noise)

        def target(x0: Tensor, noise: Tensor) -> Tensor:
            return noise

        return DenoisingObjective(networks["model"], schedule.num_steps, corrupt, target, self.checkpoint_config(loss))

    def program(self, **options: Any) -> Program:
        """The full reverse chain over all T steps (no options), from the prior q(x_{T−1} | x0 = 0)."""
        self.check_sampler_options(options)
        resolution = self.image.resolution
        schedule = blur.make_blur_schedule(resolution, resolution, **self.config.diffusion, dtype=torch.float64)
        factors = blur.factors_of(schedule)
        # The chain runs t = T−1 … 0: its step arrays are the schedule's, reversed.
        steps = BlurSteps(basis=schedule.basis, log_eigenvalues=factors.log_eigenvalues,
                          **{name: getattr(factors, name).flip(0) for name in
                             ("log_alpha", "power", "log_alpha_cumprod", "power_cumsum")})  # fmt: skip
        timesteps = torch.arange(schedule.num_steps - 1, -1, -1, dtype=torch.float64)
        prior = SpectralFilter(schedule.basis, schedule.one_minus_alphas_cumprod[-1].sqrt())
        chain = DenoiseChain(site="denoiser", x="x", out="x", timesteps=timesteps, noise=timesteps > 0, step=steps)
        shape = (self.image.channels, resolution, resolution)
        return Program({"x": shape}, (Noise(out="x", scale=1.0, filter=prior), chain), "x")

    def process_constants(self) -> dict[str, Any]:
        schedule = self.schedule
        return {
            "num_steps": schedule.num_steps,
            "basis": schedule.basis,
            "betas": schedule.betas.double().tolist(),
            "blur_powers": schedule.blur_powers.double().tolist(),
            "eigenvalues": schedule.eigenvalues.double().tolist(),
        }
