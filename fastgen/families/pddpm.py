"""PDDPM: one coordinate-conditioned denoiser for every resolution, sampled coarse-to-fine with CCDF restarts.

Training draws a random resolution per batch (image and coordinates resized together). Each resolution of
the pyramid is its own call site (``res_<R>``) whose coordinate channels are constants of the site, so an
exported graph takes only ``x`` and ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fastgen.diffusion import ddpm, pddpm
from fastgen.errors import FastgenError
from fastgen.families.base import CHANNEL_KINDS, CallSite, Family, ImageSpec, ModelConfig, Sites, check_keys
from fastgen.families.ddpm import SCHEDULE_KEYS, affine_chain, denoiser_network, schedule_from
from fastgen.families.denoising import DenoisingObjective, denoiser_site, device_copies
from fastgen.nets.config import NetConfig
from fastgen.sampling.program import Noise, Program, Renoise, Upsample

SAMPLER_DEFAULT_KEYS = {"t_f", "t_s", "dt_s"}
PYRAMID_KEYS = {"resolutions", *SAMPLER_DEFAULT_KEYS}
CODING_CHANNELS = 4 * pddpm.NUM_FREQUENCIES  # sin/cos × (i, j) × L


def pyramid_of(image: ImageSpec, diffusion: Mapping[str, Any]) -> list[int]:
    """The sampling pyramid (ascending ×2); it must end at the image resolution."""
    resolutions = list(diffusion.get("resolutions", [image.resolution // 2, image.resolution]))
    pddpm.check_resolutions(resolutions)
    if not resolutions or resolutions[-1] != image.resolution:
        raise FastgenError(f"[diffusion] resolutions must end at the image resolution {image.resolution}, got {resolutions}")
    return resolutions


class PDDPMFamily(Family):
    name = "pddpm"
    samplers: ClassVar[dict[str, dict[str, Any]]] = {"pyramid": {}}
    sampler_options = ("t_f", "t_s", "dt_s", "eta", "clip_x0")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        check_keys("[diffusion]", config.diffusion, SCHEDULE_KEYS | PYRAMID_KEYS)
        self.schedule = schedule_from({key: value for key, value in config.diffusion.items() if key in SCHEDULE_KEYS})
        self.resolutions = pyramid_of(self.image, config.diffusion)
        if SAMPLER_DEFAULT_KEYS & set(config.diffusion):  # a recipe's sampler defaults: checked now, not at the first sample
            settings = self.pyramid_settings({})
            pddpm.pyramid_steps(self.schedule, settings["coarse_steps"], settings["fine_steps"], settings["renoise_fraction"])

    @classmethod
    def network_configs(cls, image: ImageSpec, diffusion: Mapping[str, Any], model: Mapping[str, Any],
                        loss: Mapping[str, Any]) -> dict[str, NetConfig]:  # fmt: skip
        return {"model": denoiser_network(image, model, extra_in_channels=CODING_CHANNELS)}

    def objective(self, networks: dict[str, nn.Module], loss: Mapping[str, Any]) -> DenoisingObjective:
        check_keys("[loss]", loss, set())
        schedule, resolutions = self.schedule, self.resolutions

        schedule_on = device_copies(schedule)

        def corrupt(x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
            return ddpm.q_sample(schedule_on(x0.device), x0, t, noise)

        def target(x0: Tensor, noise: Tensor) -> Tensor:
            return ddpm.training_target(schedule, x0, noise)

        def training_view(x0: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
            return pddpm.multiscale_batch(x0, resolutions, generator=generator)

        return DenoisingObjective(networks["model"], schedule.num_steps, corrupt, target, self.checkpoint_config(loss), training_view)

    def call_sites(self, networks: Mapping[str, nn.Module]) -> list[CallSite]:
        sites = []
        for resolution in self.resolutions:
            coordinates = pddpm.coordinate_encoding(1, resolution, resolution)
            sites.append(denoiser_site(f"res_{resolution}", networks["model"], self.image.channels, resolution,
                                       self.schedule.num_steps, extra_inputs=coordinates))  # fmt: skip
        return sites

    def coordinate_predictor(self, sites: Sites) -> pddpm.CoordinatePredictor:
        """The sampler's ``predictor(cat([x, coords]), t)`` over per-resolution sites (which hold their coords)."""
        channels = self.image.channels

        def predictor(x_with_coords: Tensor, t: Tensor) -> Tensor:
            return sites[f"res_{x_with_coords.shape[-1]}"](x_with_coords[:, :channels], t)

        return predictor

    def program(self, **options: Any) -> Program:
        """Alg. 1: ``t_f`` steps at the coarsest size (default T), then per level a CCDF restart at
        ``dt_s``·T reversed in ``dt_s``·``t_s`` steps (defaults 100 and 0.3); ``eta`` 1 ancestral, 0 DDIM."""
        settings = self.pyramid_settings(options)
        schedule = schedule_from({key: value for key, value in self.config.diffusion.items() if key in SCHEDULE_KEYS},
                                 torch.float64)  # fmt: skip
        coarse_steps, (t_restart, fine_steps) = pddpm.pyramid_steps(
            schedule, settings["coarse_steps"], settings["fine_steps"], settings["renoise_fraction"])
        eta, clip_x0 = settings["eta"], settings["clip_x0"]
        coarse = self.resolutions[0]
        buffers = {f"x_{r}": (self.image.channels, r, r) for r in self.resolutions}
        timesteps = ddpm.ddim_timesteps(coarse_steps, schedule.num_steps - 1)
        ops: list[Any] = [Noise(out=f"x_{coarse}", scale=1.0, filter=None),
                          affine_chain(f"res_{coarse}", f"x_{coarse}", schedule, timesteps, eta=eta, clip_x0=clip_x0)]
        fine_timesteps = ddpm.ddim_timesteps(fine_steps, t_restart)
        for low, high in zip(self.resolutions, self.resolutions[1:]):
            buffer = f"x_{high}"
            ops += [
                Upsample(x=f"x_{low}", out=buffer),
                Renoise(x=buffer, out=buffer, signal=float(schedule.sqrt_alphas_cumprod[t_restart]),
                        noise_scale=float(schedule.sqrt_one_minus_alphas_cumprod[t_restart])),
                affine_chain(f"res_{high}", buffer, schedule, fine_timesteps, eta=eta, clip_x0=clip_x0),
            ]  # fmt: skip
        return Program(buffers, tuple(ops), f"x_{self.resolutions[-1]}")

    def pyramid_settings(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The sampler options (checked) with the recipe's [diffusion] defaults filled in, as
        :func:`~fastgen.diffusion.pddpm.sample_pyramidal` names them."""
        self.check_sampler_options(options)
        defaults = self.config.diffusion
        return {
            "coarse_steps": options.get("t_f", defaults.get("t_f")),
            "fine_steps": options.get("t_s", defaults.get("t_s", pddpm.FINE_STEPS)),
            "renoise_fraction": options.get("dt_s", defaults.get("dt_s", pddpm.RENOISE_FRACTION)),
            "eta": options.get("eta", pddpm.ETA),
            "clip_x0": options.get("clip_x0", False),
        }

    def super_resolve(self, sites: Sites, measurement: Tensor, *, guidance: float = pddpm.DEFAULT_GUIDANCE,
                      generator: torch.Generator | None = None, progress: bool = False,
                      **options: Any) -> Tensor:  # fmt: skip
        """Alg. 2: the low-resolution ``measurement`` [B, C, r, r] (r = resolution/2^k) up the pyramid to the image
        resolution, re-noised (CCDF) and reversed per level as in :meth:`sample` (``t_s``, ``dt_s``, ``eta``,
        ``clip_x0``; ``t_f`` has no role: there is no reverse at the measurement's size), with the data-consistency
        gradient of weight ``guidance`` (λ of eq. 10; 0 turns it off). Torch sites only: it differentiates them."""
        if "t_f" in options:
            raise FastgenError("super-resolution has no t_f: it starts from the measurement, not from noise")
        settings = self.pyramid_settings(options)
        del settings["coarse_steps"]
        levels = self.super_resolution_levels(measurement)
        return pddpm.sample_super_resolution(self.coordinate_predictor(sites), self.schedule, measurement, levels,
                                             guidance_scale=guidance, generator=generator, progress=progress,
                                             **settings)  # fmt: skip

    def super_resolution_levels(self, measurement: Tensor) -> list[int]:
        """The sizes from the measurement's up to the image resolution; every one above it must be a pyramid site."""
        ddpm.check_image("measurement", measurement)
        channels, height, width = measurement.shape[1:]
        if channels != self.image.channels:
            raise FastgenError(f"the model makes {CHANNEL_KINDS[self.image.channels]} images ({self.image.channels} "
                               f"channel(s)); the low-resolution input has {channels}")  # fmt: skip
        target = self.image.resolution
        if height != width or width >= target or target % width or (target // width) & (target // width - 1):
            raise FastgenError(f"the low-resolution input must be square, {target}/2^k for k ≥ 1 (the model makes "
                               f"{target}x{target}), got {height}x{width}")  # fmt: skip
        levels = [width]
        while levels[-1] < target:
            levels.append(2 * levels[-1])
        missing = [size for size in levels[1:] if size not in self.resolutions]
        if missing:
            raise FastgenError(f"×{target // width} super-resolution needs the sizes {levels[1:]} in the model's pyramid; "
                               f"it has {self.resolutions} (no {missing})")  # fmt: skip
        return levels

    def process_constants(self) -> dict[str, Any]:
        return {
            "num_steps": self.schedule.num_steps,
            "prediction_type": self.schedule.prediction_type,
            "betas": self.schedule.betas.double().tolist(),
            "resolutions": self.resolutions,
            "coordinate_frequencies": pddpm.NUM_FREQUENCIES,
        }
