"""UDPM: L network calls at 1/γ^L … 1/γ of the image size, each followed by the exact posterior step.

Training (udpm.md Alg. 1): a random level per batch, x_l = ᾱ_l H^l x0 + σ̃_l e, the network predicts
H^{l-1} x0, and the loss mixes per level a fidelity term (L2 or L1), a perceptual term and a
non-saturating adversarial term against a level-conditioned discriminator with an R1 penalty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastgen.diffusion import udpm
from fastgen.errors import FastgenError
from fastgen.families.base import CallSite, Family, ImageSpec, ModelConfig, Sites, TensorSpec, check_keys
from fastgen.families.denoising import images_of
from fastgen.families.presets import network_table, unet_preset
from fastgen.nets import DiscriminatorConfig, LevelNetworksConfig, tiny_discriminator, udpm_paper_discriminator_64
from fastgen.nets.config import NetConfig
from fastgen.sampling.interpreter import Draws
from fastgen.sampling.noise import RowKeys, philox_source, seed_rows
from fastgen.sampling.program import Call, Noise, Program, SpectralFilter, UDPMMatheron, UDPMPosterior
from fastgen.training.distributed import Batch

KERNELS = ("box", "gaussian")
DIFFUSION_KEYS = {"levels", "alphas", "sigmas", "gamma", "kernel", "kernel_size", "kernel_sigma"}
# udpm.md Sec. 4 and Table 5 (64×64 datasets): per-level weights, level 1 first.
LOSS_DEFAULTS: dict[str, Any] = {
    "fidelity": "l2",
    "lambda_fid": [1.0, 1.0, 0.0],
    "lambda_per": [4.0, 4.0, 0.0],
    "lambda_adv": [0.2, 0.5, 1.0],
    "r1_gamma": [0.1, 0.4, 0.8],
    "perceptual_backbone": "efficientnet-lite0",
    "vgg_weights": "",
    # How often each level is the batch's level (relative weights, level 1 first); empty: uniformly (Alg. 1).
    "level_weights": [],
}
DISCRIMINATOR_PRESETS = ("tiny", "small", "paper")


class _LatentSlot(NamedTuple):
    """A latent map's place in a program: draw ``draw`` of op ``op``, at buffer ``buffer``'s shape; ``drawn``: whether
    the program makes that draw (the level-1 step is noiseless)."""

    op: int
    draw: int
    buffer: str
    drawn: bool


def process_from(diffusion: Mapping[str, Any]) -> udpm.UDPMProcess:
    """The UDPM process of a ``[diffusion]`` table: the closed form for ``box``, the FFT path for ``gaussian``."""
    check_keys("[diffusion]", diffusion, DIFFUSION_KEYS)
    # The paper's schedule is UDPMSchedule's defaults: only the keys the table sets override them.
    fields = ("levels", "alphas", "sigmas", "gamma")
    schedule = udpm.UDPMSchedule(**{key: diffusion[key] for key in fields if key in diffusion})
    kernel = diffusion.get("kernel", "box")
    if kernel == "box":
        return udpm.UDPM(schedule, udpm.box_kernel(schedule.gamma))
    if kernel == "gaussian":
        return udpm.CirculantUDPM(schedule, udpm.gaussian_kernel(diffusion.get("kernel_size", 5), diffusion.get("kernel_sigma", 1.0)))
    raise FastgenError(f"unknown UDPM kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


def loss_settings(loss: Mapping[str, Any], levels: int) -> dict[str, Any]:
    """``[loss]`` over the paper's defaults, with every per-level list checked to have one entry per level."""
    check_keys("[loss]", loss, set(LOSS_DEFAULTS))
    settings = {**LOSS_DEFAULTS, **loss}

    def per_level(key: str) -> list[float]:
        values = settings[key]
        if not isinstance(values, Sequence) or len(values) != levels or any(not isinstance(v, (int, float)) or v < 0 for v in values):
            raise FastgenError(f"[loss] {key} must list {levels} non-negative numbers (one per level, level 1 first), got {values!r}")
        return [float(v) for v in values]

    for key in ("lambda_fid", "lambda_per", "lambda_adv", "r1_gamma"):
        settings[key] = per_level(key)
    if settings["level_weights"] != []:
        settings["level_weights"] = per_level("level_weights")
        if not sum(settings["level_weights"]) > 0:
            raise FastgenError("[loss] level_weights must not all be 0: every batch trains one level")
    if settings["fidelity"] not in ("l1", "l2"):
        raise FastgenError(f"[loss] fidelity must be 'l1' or 'l2', got {settings['fidelity']!r}")
    return settings


def discriminator_config(preset: str, image: ImageSpec, levels: int, gamma: int, overrides: Mapping[str, Any]) -> DiscriminatorConfig:
    """A level-conditioned discriminator that fits the smallest scored image (level L's output, image/γ^(L-1))."""
    smallest = image.resolution // gamma ** (levels - 1)
    fields = {"in_channels": image.channels, "cond_channels": image.channels, "levels": levels}
    if preset == "tiny":
        config = tiny_discriminator(**fields)
    elif preset == "small":
        config = DiscriminatorConfig(stem_channels=32, channels=(64, 128, 256), embedding_channels=64, dropout=0.2, **fields)
    elif preset == "paper":
        config = udpm_paper_discriminator_64().replace(**fields)
    else:
        raise FastgenError(f"unknown discriminator preset {preset!r}; choose one of {', '.join(DISCRIMINATOR_PRESETS)}")
    config = config.replace(**overrides)
    # Fewer stages where the deepest would shrink level L's output below 1×1 (the official code does the same).
    stages = len(config.channels)
    while 2 ** (stages - 1) > smallest:
        stages -= 1
    return config.replace(channels=tuple(config.channels[:stages]))


class UDPMFamily(Family):
    name = "udpm"
    samplers: ClassVar[dict[str, dict[str, Any]]] = {"levels": {}}
    sampler_options = ("latents",)
    speed_baseline = ("ddpm", "1-step")  # udpm.md's claim: a whole sample costs less than one DDPM step

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.process = process_from(config.diffusion)
        self.schedule = self.process.schedule
        self.schedule.check_image_size(self.image.resolution, self.image.resolution)

    @classmethod
    def network_configs(cls, image: ImageSpec, diffusion: Mapping[str, Any], model: Mapping[str, Any],
                        loss: Mapping[str, Any]) -> dict[str, NetConfig]:  # fmt: skip
        """``[model]``: ``layout`` (per_level | shared), ``network`` (UNet preset + fields), ``discriminator``."""
        check_keys("[model]", model, {"network", "layout", "discriminator"})
        schedule = process_from(diffusion).schedule
        network = network_table(model)
        unet = unet_preset(network.pop("preset", "small"), image.resolution // schedule.gamma, network,
                           in_channels=image.channels, out_channels=image.channels, upscale=schedule.gamma)  # fmt: skip
        configs: dict[str, NetConfig] = {
            "model": LevelNetworksConfig(unet=unet, levels=schedule.levels, layout=model.get("layout", "per_level"))
        }
        if any(loss_settings(loss, schedule.levels)["lambda_adv"]):
            discriminator = network_table(model, "discriminator")
            preset = discriminator.pop("preset", "small")
            configs["discriminator"] = discriminator_config(preset, image, schedule.levels, schedule.gamma, discriminator)
        return configs

    def objective(self, networks: dict[str, nn.Module], loss: Mapping[str, Any]) -> UDPMObjective:
        return UDPMObjective(self, networks, loss_settings(loss, self.schedule.levels), self.checkpoint_config(loss))

    def input_resolution(self, level: int) -> int:
        return self.image.resolution // self.schedule.gamma**level

    def call_sites(self, networks: Mapping[str, nn.Module]) -> list[CallSite]:
        """``level_l`` for l = 1 … L: input ``x`` (x_l), output ``x_hat`` (the estimate of H^{l-1} x0)."""
        sites = []
        for level, module in enumerate(networks["model"].per_level(), start=1):
            size_in, size_out = self.input_resolution(level), self.input_resolution(level - 1)
            sites.append(CallSite(
                name=f"level_{level}",
                module=module,
                inputs=(TensorSpec("x", (self.image.channels, size_in, size_in)),),
                output=TensorSpec("x_hat", (self.image.channels, size_out, size_out)),
            ))  # fmt: skip
        return sites

    def draw_latents(self, batch_size: int, seed: int) -> udpm.UDPMLatents:
        """The latents the program draws with ``seed`` (the noise contract's, float32, on the CPU): their sample is the
        seed's images bit for bit. The level-1 maps, which the program never draws, are the contract's normals at
        their place too (white, so edits treat them like the others; they change no image)."""
        program = self.sampling_program()
        noise = philox_source(RowKeys.of(seed_rows(seed, batch_size)), torch.float32)
        maps = [noise(slot.op, slot.draw, (batch_size, *program.buffers[slot.buffer])) for slot in self._latent_slots(program)]
        return udpm.UDPMLatents.from_maps(maps, self.schedule.levels)

    def _latent_slots(self, program: Program) -> list[_LatentSlot]:
        """Where each map of :meth:`UDPMLatents.maps` is a draw of ``program``: x_top the prior's draw 0, e_l the
        level-l step's draw 0, e'_l its draw 1 (Matheron's observation noise)."""
        ops = list(enumerate(program.ops))
        steps = [(index, op) for index, op in ops if isinstance(op, UDPMPosterior | UDPMMatheron)][::-1]  # level 1 first
        return [
            *(_LatentSlot(index, 0, op.out, True) for index, op in ops if isinstance(op, Noise)),
            *(_LatentSlot(index, 0, op.out, op.noisy) for index, op in steps),
            *(_LatentSlot(index, 1, op.x, op.noisy) for index, op in steps if isinstance(op, UDPMMatheron)),
        ]

    def latent_draws(self, latents: udpm.UDPMLatents) -> Draws:
        """The draws of the sampling program that ``latents`` are (the level-1 maps are none: that step is noiseless)."""
        udpm.check_latents(self.process, latents)
        slots = self._latent_slots(self.sampling_program())
        return {(slot.op, slot.draw): latent_map for slot, latent_map in zip(slots, latents.maps(), strict=True) if slot.drawn}

    def sample(self, sites: Sites, batch_size: int, *, latents: udpm.UDPMLatents | None = None, **options: Any) -> Tensor:
        """The program's sample; ``latents`` (explicit ``UDPMLatents``, whose batch wins over ``batch_size``) are its
        draws (interpolation, swaps …)."""
        if latents is None:
            return super().sample(sites, batch_size, **options)
        return super().sample(sites, latents.batch_size, draws=self.latent_draws(latents), **options)

    def program(self, **options: Any) -> Program:
        """Alg. 2: x_L from its marginal prior, then per level L … 1 the level network and the exact posterior step
        (closed form per block for a Lemma-1 kernel, Matheron's rule for a circulant one). No options."""
        self.check_sampler_options(options)
        if options:
            raise FastgenError("explicit latents are the draws of one run (UDPMFamily.sample(latents=…)), not a program option")
        levels, channels = self.schedule.levels, self.image.channels
        sizes = {level: self.input_resolution(level) for level in range(levels + 1)}
        buffers = {f"x_{level}": (channels, size, size) for level, size in sizes.items()}
        buffers.update({f"x_hat_{level}": buffers[f"x_{level - 1}"] for level in range(1, levels + 1)})
        process = self.process
        if isinstance(process, udpm.CirculantUDPM):
            top = (sizes[levels], sizes[levels])
            spectrum = process.marginal_cov_spectrum(levels, top).sqrt()[:, : top[1] // 2 + 1]
            prior = Noise(out=f"x_{levels}", scale=1.0, filter=SpectralFilter("fourier", spectrum))
        else:
            prior = Noise(out=f"x_{levels}", scale=self.schedule.sigma_tilde(levels), filter=None)
        ops: list[Any] = [prior]
        for level in range(levels, 0, -1):
            names = {"x": f"x_{level}", "x_hat": f"x_hat_{level}", "out": f"x_{level - 1}", "noisy": level > 1}
            ops.append(Call(site=f"level_{level}", x=names["x"], out=names["x_hat"]))
            if isinstance(process, udpm.CirculantUDPM):
                constants = process.matheron_constants(level, (sizes[level - 1], sizes[level - 1]))
                ops.append(UDPMMatheron(**names, **vars(constants)))
            else:
                ops.append(UDPMPosterior(**names, **vars(process.posterior_constants(level))))
        return Program(buffers, tuple(ops), "x_0")

    def process_constants(self) -> dict[str, Any]:
        schedule = self.schedule
        levels = range(1, schedule.levels + 1)
        return {
            "levels": schedule.levels,
            "gamma": schedule.gamma,
            "alphas": list(schedule.alphas),
            "sigmas": list(schedule.sigmas),
            "kernel": self.config.diffusion.get("kernel", "box"),
            "alpha_bar": [schedule.alpha_bar(level) for level in levels],
            "sigma_tilde": [schedule.sigma_tilde(level) for level in levels],
        }


class UDPMObjective:
    """udpm.md Alg. 1: update ``model`` (fidelity + perceptual + adversarial), then ``discriminator`` (+ R1).

    The discriminator scores the prediction at level l's output size, conditioned on x_l and on l; the
    model step's prediction is reused (detached) by the discriminator step of the same batch.
    """

    def __init__(self, family: UDPMFamily, networks: dict[str, nn.Module], settings: dict[str, Any], config: dict[str, Any]) -> None:
        self.family = family
        self.process = family.process
        self.settings = settings
        self.networks = {name: networks[name] for name in ("model", "discriminator") if name in networks}
        self.perceptual = None
        if any(settings["lambda_per"]):
            from fastgen.metrics.perceptual import PerceptualLoss

            self.perceptual = PerceptualLoss(settings["perceptual_backbone"], settings["vgg_weights"] or None)
        self._config = config
        self._scored: tuple[Tensor, Tensor, Tensor, int] | None = None

    def config(self) -> dict[str, Any]:
        return self._config

    def loss(self, group: str, nets: Mapping[str, nn.Module], batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        return self._model_loss(nets, images_of(batch), generator) if group == "model" else self._discriminator_loss(nets)

    def _model_loss(self, nets: Mapping[str, nn.Module], x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        levels = self.process.schedule.levels
        weights = self.settings["level_weights"]
        if weights:
            level = 1 + int(torch.multinomial(torch.tensor(weights, device=generator.device), 1, generator=generator))
        else:
            level = int(torch.randint(1, levels + 1, (1,), generator=generator, device=generator.device))
        noise_shape = (x0.shape[0], x0.shape[1], *(s // self.process.schedule.gamma**level for s in x0.shape[-2:]))
        noise = torch.randn(noise_shape, generator=generator, device=generator.device).to(x0.device)
        x_l = self.process.q_sample(x0, level, noise)
        target = self.process.target(x0, level)
        prediction = nets["model"](x_l, level)
        i = level - 1
        error = (prediction.float() - target.float())
        fidelity = error.abs().mean() if self.settings["fidelity"] == "l1" else error.square().mean()
        loss = self.settings["lambda_fid"][i] * fidelity
        logs: dict[str, Any] = {f"fid_l{level}": fidelity.detach()}
        if self.perceptual is not None and self.settings["lambda_per"][i]:
            perceptual = self.perceptual.to(x0.device)(prediction.float(), target.float())
            loss = loss + self.settings["lambda_per"][i] * perceptual
            logs[f"per_l{level}"] = perceptual.detach()
        if "discriminator" in nets and self.settings["lambda_adv"][i]:
            adversarial = F.softplus(-nets["discriminator"](prediction, level, x_l)).mean()  # non-saturating
            loss = loss + self.settings["lambda_adv"][i] * adversarial
            logs[f"adv_l{level}"] = adversarial.detach()
        self._scored = (prediction.detach(), target.detach(), x_l.detach(), level)
        return loss, logs

    def _discriminator_loss(self, nets: Mapping[str, nn.Module]) -> tuple[Tensor, dict[str, Any]]:
        if self._scored is None:
            raise FastgenError("the discriminator update needs the model update of the same step first")
        fake, real, x_l, level = self._scored
        self._scored = None
        discriminator = nets["discriminator"]
        if not self.settings["lambda_adv"][level - 1]:
            # This level trains without an adversary: a zero loss that still touches D's weights (DDP needs that).
            return sum(p.sum() for p in discriminator.parameters()) * 0.0, {}
        real = real.requires_grad_(True)
        real_logits = discriminator(real, level, x_l)
        fake_logits = discriminator(fake, level, x_l)
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        r1_gamma = self.settings["r1_gamma"][level - 1]
        logs: dict[str, Any] = {f"d_l{level}": loss.detach()}
        if r1_gamma:
            (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            r1 = gradient.square().flatten(1).sum(1).mean()
            loss = loss + r1_gamma / 2 * r1
            logs[f"r1_l{level}"] = r1.detach()
        return loss, logs
