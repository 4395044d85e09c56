"""Named network configs: the papers' architectures and tiny ones for tests and smoke runs.

UDPM paper nets are EDM's SongUNet with NCSN++ settings as the official UDPM code builds them: the net is
built for the level-1 input size (image/2) and run unchanged at every level's input size, so attention sits
at fixed pyramid depths (udpm.md Tables 3-5; ANCHORS.md for measured FLOPs).
"""

from __future__ import annotations

from collections.abc import Callable

from fastgen.errors import FastgenError
from fastgen.nets.config import NetConfig
from fastgen.nets.discriminator import DiscriminatorConfig
from fastgen.nets.levels import Layout, LevelNetworksConfig
from fastgen.nets.unet import UNetConfig


def udpm_paper_64(layout: Layout = "per_level", dropout: float = 0.1) -> LevelNetworksConfig:
    """UDPM on 64×64 AFHQv2/FFHQ (Table 4): NCSN++, 128 ch, ×(1,2,2,2), attention 16/8/4, 4 blocks, γ=2; 65.41M per net.

    Dropout is 0.1 for AFHQv2 and 0 for FFHQ (Table 3).
    """
    unet = UNetConfig.ncsnpp(
        in_channels=3, out_channels=3, upscale=2, resolution=32, base_channels=128, channel_mults=(1, 2, 2, 2),
        attention_resolutions=(16, 8, 4), blocks_per_resolution=4, dropout=dropout,
    )  # fmt: skip
    return LevelNetworksConfig(unet=unet, levels=3, layout=layout)


def udpm_paper_cifar10(layout: Layout = "per_level") -> LevelNetworksConfig:
    """UDPM on class-conditional 32×32 CIFAR-10 (Table 4): ×(2,2,2), attention 8/4 (EDM drops the listed 2); 57.73M.

    The net is built for 16×16 (level-1 input), whose three-depth pyramid 16/8/4 has no 2.
    """
    unet = UNetConfig.ncsnpp(
        in_channels=3, out_channels=3, upscale=2, resolution=16, base_channels=128, channel_mults=(2, 2, 2),
        attention_resolutions=(8, 4), blocks_per_resolution=4, dropout=0.1, label_dim=10,
    )  # fmt: skip
    return LevelNetworksConfig(unet=unet, levels=3, layout=layout)


def ddpm_step_64() -> UNetConfig:
    """The "DDPM step" of ANCHORS.md: the same NCSN++ net built for and run at 64×64 with 3 output channels.

    Built for 64, the pyramid is 64/32/16/8, so of attention 16/8/4 EDM keeps 16 and 8 (85.05 GFLOPs).
    """
    return udpm_paper_64().unet.replace(resolution=64, attention_resolutions=(16, 8), upscale=1)


def udpm_paper_discriminator_64(dropout: float = 0.4) -> DiscriminatorConfig:
    """UDPM's 64×64 discriminator (Table 5): 192,384,512,512,512,512; dropout 0.4 AFHQv2, 0.3 FFHQ."""
    return DiscriminatorConfig(channels=(192, 384, 512, 512, 512, 512), dropout=dropout, levels=3)


def udpm_paper_discriminator_cifar10() -> DiscriminatorConfig:
    """UDPM's CIFAR-10 discriminator (Table 5): 192,384,512,512,512, dropout 0.4."""
    return DiscriminatorConfig(channels=(192, 384, 512, 512, 512), dropout=0.4, levels=3)


def tiny_unet(**fields: object) -> UNetConfig:
    """A ~50k-parameter NCSN++ UNet (8 ch, 2 depths, attention at the bottom) for tests and smoke runs."""
    return UNetConfig.ncsnpp(
        **{"base_channels": 8, "channel_mults": (1, 2), "blocks_per_resolution": 1, "resolution": 8,
           "attention_resolutions": (4,), "dropout": 0.0, **fields}
    )  # fmt: skip


def tiny_udpm(layout: Layout = "shared", **unet_fields: object) -> LevelNetworksConfig:
    """Three tiny UDPM levels (γ=2) for tests and smoke runs."""
    return LevelNetworksConfig(unet=tiny_unet(upscale=2, **unet_fields), levels=3, layout=layout)


def tiny_discriminator(**fields: object) -> DiscriminatorConfig:
    """A few-thousand-parameter discriminator (widths 8, 16; inputs ≥ 2×2)."""
    return DiscriminatorConfig(**{"stem_channels": 8, "channels": (8, 16), "embedding_channels": 8, **fields})


PRESETS: dict[str, Callable[[], NetConfig]] = {
    "udpm_paper_64": udpm_paper_64,
    "udpm_paper_cifar10": udpm_paper_cifar10,
    "ddpm_step_64": ddpm_step_64,
    "udpm_paper_discriminator_64": udpm_paper_discriminator_64,
    "udpm_paper_discriminator_cifar10": udpm_paper_discriminator_cifar10,
    "tiny_unet": tiny_unet,
    "tiny_udpm": tiny_udpm,
    "tiny_discriminator": tiny_discriminator,
}


def preset(name: str) -> NetConfig:
    """The named preset's config with its defaults."""
    if not isinstance(name, str) or name not in PRESETS:
        raise FastgenError(f"unknown network preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]()
