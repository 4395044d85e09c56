"""Config dict → network: how checkpoints and recipes rebuild a network from its JSON config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from fastgen.errors import FastgenError
from fastgen.nets.config import NetConfig
from fastgen.nets.discriminator import Discriminator, DiscriminatorConfig
from fastgen.nets.levels import LevelNetworks, LevelNetworksConfig
from fastgen.nets.unet import UNet, UNetConfig

NETWORKS: dict[str, tuple[type[NetConfig], type[nn.Module]]] = {
    UNetConfig.kind: (UNetConfig, UNet),
    LevelNetworksConfig.kind: (LevelNetworksConfig, LevelNetworks),
    DiscriminatorConfig.kind: (DiscriminatorConfig, Discriminator),
}


def config_from_dict(data: Mapping[str, Any]) -> NetConfig:
    """Parse a ``to_dict()`` dict (its ``kind`` picks the config class) into a validated config."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise FastgenError(f"a network config must be a mapping with a 'kind' ({', '.join(NETWORKS)})")
    if not isinstance(data["kind"], str) or data["kind"] not in NETWORKS:
        raise FastgenError(f"unknown network kind {data['kind']!r}; known: {', '.join(NETWORKS)}")
    config_cls, _ = NETWORKS[data["kind"]]
    return config_cls.from_dict(data)


def build_network(config: Mapping[str, Any] | NetConfig) -> nn.Module:
    """Build the network a config (object or ``to_dict()`` dict) describes; the module keeps it as ``.config``."""
    if not isinstance(config, NetConfig):
        config = config_from_dict(config)
    _, network_cls = NETWORKS[config.kind]
    return network_cls(config)
