"""Networks: map (x, noise_labels [B], class_labels) → output and know nothing of diffusion.

``build_network(config_dict)`` rebuilds any of them from the JSON a checkpoint stores (``net.config.to_dict()``).
"""

from fastgen.nets.config import NetConfig
from fastgen.nets.discriminator import Discriminator, DiscriminatorConfig
from fastgen.nets.flops import count_flops, count_ops, flops_per_image, level_flops_per_image
from fastgen.nets.levels import LevelNetwork, LevelNetworks, LevelNetworksConfig
from fastgen.nets.presets import (
    PRESETS,
    ddpm_step_64,
    preset,
    tiny_discriminator,
    tiny_udpm,
    tiny_unet,
    udpm_paper_64,
    udpm_paper_cifar10,
    udpm_paper_discriminator_64,
    udpm_paper_discriminator_cifar10,
)
from fastgen.nets.registry import build_network, config_from_dict
from fastgen.nets.unet import UNet, UNetConfig

__all__ = [
    "PRESETS",
    "Discriminator",
    "DiscriminatorConfig",
    "LevelNetwork",
    "LevelNetworks",
    "LevelNetworksConfig",
    "NetConfig",
    "UNet",
    "UNetConfig",
    "build_network",
    "config_from_dict",
    "count_flops",
    "count_ops",
    "ddpm_step_64",
    "flops_per_image",
    "level_flops_per_image",
    "preset",
    "tiny_discriminator",
    "tiny_udpm",
    "tiny_unet",
    "udpm_paper_64",
    "udpm_paper_cifar10",
    "udpm_paper_discriminator_64",
    "udpm_paper_discriminator_cifar10",
]
