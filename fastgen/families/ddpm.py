"""DDPM / DDIM: one timestep-conditioned denoiser at the image size, T ancestral or N DDIM steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fastgen.diffusion import ddpm
from fastgen.errors import FastgenError
from fastgen.families.base import CallSite, Family, ImageSpec, ModelConfig, check_keys
from fastgen.families.denoising import DenoisingObjective, denoiser_site, device_copies
from fastgen.families.presets import network_table, unet_preset
from fastgen.nets.config import NetConfig
from fastgen.sampling.program import AffineSteps, DenoiseChain, Noise, Program

SAMPLERS = ("ancestral", "ddim")
DDIM_OPTIONS = ("steps", "eta")  # only the DDIM sampler has them: given to another, they would be ignored
SCHEDULE_KEYS = {"schedule", "num_steps", "prediction_type"}
SAMPLER_DEFAULTS: dict[str, Any] = {"sampler": "ancestral", "steps": ddpm.DDIM_STEPS, "eta": ddpm.DDIM_ETA, "clip_x0": False}


def schedule_from(diffusion: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> ddpm.DiffusionSchedule:
    """The DDPM schedule of a ``[diffusion]`` table: ``schedule`` (linear|cosine), ``num_steps``, ``prediction_type``."""
    return ddpm.DiffusionSchedule.build(
        diffusion.get("schedule", "linear"),
        diffusion.get("num_steps", 1000),
        prediction_type=diffusion.get("prediction_type", "eps"),
        dtype=dtype,
    )


def affine_chain(site: str, buffer: str, schedule: ddpm.DiffusionSchedule, timesteps: list[int], *, eta: float | None,
                 clip_x0: bool) -> DenoiseChain:  # fmt: skip
    """The reverse chain over ``timesteps`` (descending; the last step lands on the clean image) of the float64
    ``schedule``: ancestral steps for ``eta`` None, else DDIM(η) steps. Noise is drawn where the reference
    samplers draw it: every step but the last, DDIM only for η > 0."""
    pairs = list(zip(timesteps, [*timesteps[1:], -1]))
    if eta is None:
        constants = [ddpm.ancestral_constants(schedule, t, clip_x0) for t, _ in pairs]
    else:
        constants = [ddpm.ddim_constants(schedule, t, t_prev, eta, clip_x0) for t, t_prev in pairs]
    arrays = {name: torch.tensor([getattr(c, name) for c in constants], dtype=torch.float64) for name in "abpqrs"}
    noisy = [(eta is None or eta > 0) and t_prev >= 0 for _, t_prev in pairs]
    return DenoiseChain(site=site, x=buffer, out=buffer, timesteps=torch.tensor(timesteps, dtype=torch.float64),
                        noise=torch.tensor(noisy), step=AffineSteps(**arrays, clip=clip_x0))  # fmt: skip


def denoiser_network(image: ImageSpec, model: Mapping[str, Any], extra_in_channels: int = 0) -> NetConfig:
    """The ``[model.network]`` UNet of a timestep-conditioned family: image channels in and out."""
    check_keys("[model]", model, {"network"})
    network = network_table(model)
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
    # One DDIM step (the cost of a step, UDPM's yardstick) and the full ancestral chain.
    samplers: ClassVar[dict[str, dict[str, Any]]] = {
        "1-step": {"sampler": "ddim", "steps": 1},
        "ancestral": {"sampler": "ancestral"},
    }

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

    def program(self, **options: Any) -> Program:
        """``sampler='ancestral'`` (all T steps, the default) or ``'ddim'`` with ``steps`` (default 50) and ``eta``."""
        self.check_sampler_options(options)
        settings = {**SAMPLER_DEFAULTS, **options}
        if settings["sampler"] not in SAMPLERS:
            raise FastgenError(f"unknown DDPM sampler {settings['sampler']!r}; choose one of {', '.join(SAMPLERS)}")
        stray = [name for name in DDIM_OPTIONS if name in options and settings["sampler"] != "ddim"]
        if stray:
            raise FastgenError(f"{' and '.join(stray)} only apply to the DDIM sampler, and this is {settings['sampler']!r}; "
                               "add --sampler ddim (sampler='ddim')")  # fmt: skip
        schedule = schedule_from(self.config.diffusion, torch.float64)
        last = schedule.num_steps - 1
        if settings["sampler"] == "ancestral":
            timesteps, eta = list(range(last, -1, -1)), None
        else:
            timesteps, eta = ddpm.ddim_timesteps(settings["steps"], last), settings["eta"]
        shape = (self.image.channels, self.image.resolution, self.image.resolution)
        chain = affine_chain("denoiser", "x", schedule, timesteps, eta=eta, clip_x0=settings["clip_x0"])
        return Program({"x": shape}, (Noise(out="x", scale=1.0, filter=None), chain), "x")

    def process_constants(self) -> dict[str, Any]:
        return {
            "num_steps": self.schedule.num_steps,
            "prediction_type": self.schedule.prediction_type,
            "betas": self.schedule.betas.double().tolist(),
        }
