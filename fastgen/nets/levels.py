"""UDPM's networks for levels 1..L: one UNet per level (the paper) or one shared UNet (the official code).

Either way the level index l goes in as the noise label, so a shared network knows which level it serves
(a per-level network just sees a constant). Level l reads x_l and predicts at γ× its resolution.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from torch import nn

from fastgen.errors import FastgenError
from fastgen.nets.config import NetConfig
from fastgen.nets.unet import UNet, UNetConfig

Layout = Literal["per_level", "shared"]


@dataclasses.dataclass(frozen=True)
class LevelNetworksConfig(NetConfig):
    """``levels`` UDPM levels served by ``unet``: ``per_level`` builds one copy per level, ``shared`` one in all."""

    kind: ClassVar[str] = "level_networks"

    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    levels: int = 3
    layout: Layout = "per_level"

    def validate(self) -> None:
        self.require_at_least(1, "levels")

    def input_resolutions(self, image_resolution: int) -> list[int]:
        """Input size of levels 1..L for ``image_resolution`` outputs: image / γ^l."""
        gamma = self.unet.upscale
        if image_resolution % gamma**self.levels:
            raise FastgenError(f"image resolution {image_resolution} is not divisible by γ^L = {gamma}^{self.levels}")
        return [image_resolution // gamma**level for level in range(1, self.levels + 1)]


def level_noise_labels(x: torch.Tensor, level: int) -> torch.Tensor:
    """The noise labels [B] that tell a network which level it serves: the level index itself."""
    # new_full follows x's (possibly symbolic) batch size, so an export keeps a dynamic batch.
    return x.new_full((x.shape[0],), float(level))


class LevelNetwork(nn.Module):
    """One level's network as a standalone module: forward(x_l, class_labels=None) (what gets exported per level)."""

    def __init__(self, net: UNet, level: int) -> None:
        super().__init__()
        self.net = net
        self.level = level

    def forward(self, x: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, level_noise_labels(x, self.level), class_labels)

    def example_inputs(self, resolution: int, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """The wrapped UNet's example inputs without the noise label this module supplies itself."""
        x, _, *labels = self.net.example_inputs(resolution, batch_size)
        return x, *labels


class LevelNetworks(nn.Module):
    """Container of UDPM level networks: forward(x_l, level, class_labels=None) with level in 1..L."""

    def __init__(self, config: LevelNetworksConfig) -> None:
        super().__init__()
        self.config = config
        copies = 1 if config.layout == "shared" else config.levels
        self.nets = nn.ModuleList(UNet(config.unet) for _ in range(copies))

    def net_for(self, level: int) -> UNet:
        """The UNet that serves ``level`` (1-based)."""
        if not 1 <= level <= self.config.levels:
            raise FastgenError(f"level must be in 1..{self.config.levels}, got {level}")
        return self.nets[0 if self.config.layout == "shared" else level - 1]

    def level_network(self, level: int) -> LevelNetwork:
        """``level``'s network with its noise label bound (shares parameters with this container)."""
        return LevelNetwork(self.net_for(level), level)

    def per_level(self) -> list[LevelNetwork]:
        """Callables for levels 1..L, in order."""
        return [self.level_network(level) for level in range(1, self.config.levels + 1)]

    def forward(self, x: torch.Tensor, level: int, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net_for(level)(x, level_noise_labels(x, level), class_labels)
