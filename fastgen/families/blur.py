"""Blur diffusion: DDPM-style noise per frequency of a Fourier/DCT basis, with blur growing over the steps.

The network sees pixels and predicts the white pixel-space ε; every step of the sampler is one forward
transform of [x, ε̂, z], a per-frequency combination and one inverse transform (``fastgen.diffusion.blur``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fastgen.diffusion import blur
from fastgen.families.base import ModelConfig, Sites, check_keys
from fastgen.families.ddpm import DenoiserFamily
from fastgen.families.denoising import DenoisingObjective, device_copies

DIFFUSION_KEYS = {"num_steps", "beta_schedule", "blur_schedule", "blur_sigma", "final_blur_power", "basis"}


class BlurFamily(DenoiserFamily):
    name = "blur"

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

    def sample(self, sites: Sites, batch_size: int, *, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", progress: bool = False, **options: Any) -> Tensor:
        """The full reverse chain over all T steps (no options)."""
        self.check_sampler_options(options)
        return blur.sample(self.schedule.to(device), sites["denoiser"], batch_size, self.image.channels,
                           generator=generator, progress=progress)  # fmt: skip

    def process_constants(self) -> dict[str, Any]:
        schedule = self.schedule
        return {
            "num_steps": schedule.num_steps,
            "basis": schedule.basis,
            "betas": schedule.betas.double().tolist(),
            "blur_powers": schedule.blur_powers.double().tolist(),
            "eigenvalues": schedule.eigenvalues.double().tolist(),
        }
