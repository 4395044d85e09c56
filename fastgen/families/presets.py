"""Named network sizes a recipe picks with ``[model.network] preset = …``, fitted to a family's image size.

A preset fixes the architecture; the family fills in what its process dictates (channels, the ×γ head,
coordinate channels) and the recipe may override any ``UNetConfig`` field. Attention is kept at the same
pyramid *depths* when a preset is rebuilt for another resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from fastgen.errors import FastgenError
from fastgen.nets import UNetConfig, ddpm_step_64, tiny_unet, udpm_paper_64


def small_unet() -> UNetConfig:
    """~6M-parameter DDPM++ UNet for 32×32 data: minutes of GPU training give recognisable samples."""
    return UNetConfig.ddpmpp(base_channels=64, channel_mults=(1, 2, 2), blocks_per_resolution=2, resolution=32,
                             attention_resolutions=(16,), dropout=0.1)  # fmt: skip


UNET_PRESETS: dict[str, Callable[[], UNetConfig]] = {
    "tiny": tiny_unet,
    "small": small_unet,
    # The paper's 64×64 networks: UDPM's level net (built for the level-1 input) and the same NCSN++ as a
    # 64×64 denoiser (ANCHORS.md's "DDPM step").
    "paper": lambda: udpm_paper_64().unet,
    "paper_denoiser": ddpm_step_64,
}


def network_table(model: Mapping[str, Any], key: str = "network") -> dict[str, Any]:
    """A copy of the recipe's ``[model] <key>`` table (empty when absent); anything but a table is an error."""
    table = model.get(key, {})
    if not isinstance(table, Mapping):
        raise FastgenError(f"recipe [model] {key} must be a table, e.g. {key} = {{ preset = \"tiny\" }}, got {table!r}")
    return dict(table)


def unet_preset(name: str, resolution: int, overrides: Mapping[str, Any] | None = None, **family_fields: Any) -> UNetConfig:
    """Preset ``name`` rebuilt for nominal input ``resolution``, then the family's fields, then the recipe's overrides."""
    if not isinstance(name, str) or name not in UNET_PRESETS:
        raise FastgenError(f"unknown network preset {name!r}; choose one of {', '.join(UNET_PRESETS)}")
    base = UNET_PRESETS[name]()
    attention_depths = [int(math.log2(base.resolution // res)) for res in base.attention_resolutions]
    attention = tuple(resolution >> depth for depth in attention_depths if resolution >> depth >= 1)
    # Deep presets need the resolution to halve cleanly through their pyramid; shallower nets for tiny inputs.
    depths = base.depths
    while depths > 1 and resolution % 2 ** (depths - 1):
        depths -= 1
    fields = {
        "resolution": resolution,
        "attention_resolutions": tuple(res for res in attention if res in [resolution >> d for d in range(depths)]),
        "channel_mults": base.channel_mults[:depths],
        **family_fields,
        **dict(overrides or {}),
    }
    return base.replace(**fields)
