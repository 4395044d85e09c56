"""DDPM / DDIM: one timestep-conditioned denoiser at the image size, T ancestral or N DDIM steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fastgen.diffusion import ddpm
from fastgen.errors import FastgenError
from fastgen.families.base import CallSite, Family, ImageSpec, ModelConfig, Sites, check_keys
from fastgen.families.denoising import DenoisingObjective, denoiser_site, device_copies
from fastgen.families.presets import unet_preset
from fastgen.nets.config import NetConfig

SAMPLERS = ("ancestral", "ddim")
SCHEDULE_KEYS = {"schedule", "num_steps", "prediction_type"}


def schedule_from(diffusion: Mapping[str, Any]) -> ddpm.DiffusionSchedule:
    """The DDPM schedule of a ``[diffusion]`` table: ``schedule`` (linear|cosine), ``num_steps``, ``prediction_type``."""
    return ddpm.DiffusionSchedule.build(
        diffusion.get("schedule", "linear"),
        diffusion.get("num_steps", 1000),
        prediction_type=diffusion.get("prediction_type", "eps"),
    )


def denoiser_network(image: ImageSpec, model: Mapping[str, Any], extra_in_channels: int = 0) -> NetConfig:
    """The ``[model.network]`` UNet of a timestep-conditioned family: image channels in and out."""
    check_keys("[model]", model, {"network"})
    network = dict(model.get("network", {}))
    preset = network.pop("preset", "small")
    return unet_preset(preset, image.resolution, network, in_channels=image.channels, out_channels=image.channels,
                       extra_in_channels=extra_in_channels, upscale=1)  # fmt: skip


class DenoiserFamily(Family):
    """A family whose sampler calls one timestep-conditioned denoiser at the image size (DDPM, blur)."""

    num_steps: int

    @classmethod
    def network_configs(cls, image: ImageSpec, diffusion: Mapping[str, Any], model: Mapping[str, Any],
                        loss: Mapping[str, Any]) -> dict[str, NetConfig]:  # fmt: skip
        return {"model": denoiser_network(image, model)}

    def call_sites(self, networks: Mapping[str, nn.Module]) -> list[CallSite]:
        return [denoiser_site("denoiser", networks["model"], self.image.channels, self.image.resolution, self.num_steps)]


class DDPMFamily(DenoiserFamily):
    name = "ddpm"
    sampler_options = ("sampler", "steps", "eta", "clip_x0")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        check_keys("[diffusion]", config.diffusion, SCHEDULE_KEYS)
        self.schedule = schedule_from(config.diffusion)
        self.num_steps = self.schedule.num_steps

    def objective(self, networks: dict[str, nn.Module], loss: Mapping[str, Any]) -> DenoisingObjective:
        check_keys("[loss]", loss, set())
        schedule = self.schedule

        schedule_on = device_copies(schedule)

        def corrupt(x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
            return ddpm.q_sample(schedule_on(x0.device), x0, t, noise)

        def target(x0: Tensor, noise: Tensor) -> Tensor:
            return ddpm.training_target(schedule, x0, noise)

        return DenoisingObjective(networks["model"], schedule.num_steps, corrupt, target, self.checkpoint_config(loss))

    def sample(self, sites: Sites, batch_size: int, *, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", progress: bool = False, **options: Any) -> Tensor:
        """``sampler='ancestral'`` (all T steps, the default) or ``'ddim'`` with ``steps`` (default 50) and ``eta``."""
        self.check_sampler_options(options)
        sampler = options.get("sampler", "ancestral")
        shape = (batch_size, self.image.channels, self.image.resolution, self.image.resolution)
        common = dict(generator=generator, device=device, clip_x0=options.get("clip_x0", False), progress=progress)
        if sampler == "ancestral":
            return ddpm.sample_ancestral(sites["denoiser"], self.schedule, shape, **common)
        if sampler == "ddim":
            return ddpm.sample_ddim(sites["denoiser"], self.schedule, shape, num_steps=options.get("steps", 50),
                                    eta=options.get("eta", 0.0), **common)  # fmt: skip
        raise FastgenError(f"unknown DDPM sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")

    def process_constants(self) -> dict[str, Any]:
        return {
            "num_steps": self.schedule.num_steps,
            "prediction_type": self.schedule.prediction_type,
            "betas": self.schedule.betas.double().tolist(),
        }
