"""DDGAN-style discriminator for UDPM's adversarial loss, conditioned on the UDPM level.

It scores an image at a level's output resolution, optionally together with that level's (upsampled)
network input, and returns one logit per sample.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.errors import FastgenError
from fastgen.nets.config import NetConfig
from fastgen.nets.layers import LabelEmbedding, UNetBlock, conv2d, linear, validate_resample_filter

_LEAK = 0.2


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig(NetConfig):
    """Hyper-parameters of a ``Discriminator`` (defaults: udpm.md Table 5, 64×64 datasets, 6 stages).

    ``channels`` are the stage widths; stage 0 keeps the resolution, each later stage halves it.
    ``cond_channels`` > 0 concatenates a conditioning image (the level's network input x_l, nearest-upsampled
    to the scored resolution). ``minibatch_std_group`` = 0 disables the minibatch-stddev feature.
    """

    kind: ClassVar[str] = "discriminator"

    in_channels: int = 3
    cond_channels: int = 0
    stem_channels: int = 96
    channels: tuple[int, ...] = (192, 384, 512, 512, 512, 512)
    embedding_channels: int = 96
    levels: int = 3
    label_dim: int = 0
    dropout: float = 0.0
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    minibatch_std_group: int = 4

    def validate(self) -> None:
        self.require_at_least(1, "in_channels", "stem_channels", "embedding_channels", "levels")
        self.require_at_least(0, "cond_channels", "label_dim", "minibatch_std_group")
        self.require_probability("dropout")
        self.require_positive_list("channels")
        validate_resample_filter(self.resample_filter, "DiscriminatorConfig.resample_filter")

    @property
    def min_resolution(self) -> int:
        """Smallest input size the stages can halve down to 1×1."""
        return 2 ** (len(self.channels) - 1)


class Discriminator(nn.Module):
    """Residual down blocks conditioned on a learned level embedding, minibatch stddev, conv, sum-pool, linear.

    forward(x [B, in, H, W], level (int in 1..levels, or [B] ints), cond [B, cond, h, w] | None,
    class_labels | None) → logits [B].
    """

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.level_embedding = nn.Embedding(c.levels, c.embedding_channels)
        self.label_embedding = LabelEmbedding(c.label_dim, c.embedding_channels) if c.label_dim else None
        self.stem = conv2d(c.in_channels + c.cond_channels, c.stem_channels, 1)
        # DDGAN/official-UDPM block settings: scale-and-shift conditioning, plain shortcut, no zero init.
        block = dict(emb_channels=c.embedding_channels, resample_filter=c.resample_filter, dropout=c.dropout,
                     eps=1e-5, adaptive_scale=True, project_skip=False, skip_scale=1.0, residual_init=1.0)  # fmt: skip
        widths = (c.stem_channels, *c.channels)
        self.stages = nn.ModuleList(
            UNetBlock(cin, cout, resample="down" if index else "none", **block)
            for index, (cin, cout) in enumerate(itertools.pairwise(widths))
        )
        std_channels = 1 if c.minibatch_std_group else 0
        self.final_conv = conv2d(c.channels[-1] + std_channels, c.channels[-1], 3)
        self.out = linear(c.channels[-1], 1)

    def forward(
        self,
        x: torch.Tensor,
        level: int | torch.Tensor,
        cond: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels or min(x.shape[-2:]) < c.min_resolution:
            raise FastgenError(
                f"Discriminator expects [B, {c.in_channels}, H, W] with H, W ≥ {c.min_resolution}, got {tuple(x.shape)}"
            )
        if (cond is None) != (c.cond_channels == 0):
            raise FastgenError(
                f"Discriminator built with cond_channels={c.cond_channels}: pass cond exactly when it is > 0"
            )
        if cond is not None:
            x = torch.cat([x, F.interpolate(cond, size=x.shape[-2:], mode="nearest")], dim=1)
        if class_labels is not None and self.label_embedding is None:
            raise FastgenError("class_labels given to an unconditional discriminator (label_dim=0)")

        emb = self.level_embedding(self._level_index(level, x))
        if self.label_embedding is not None:
            emb = emb + self.label_embedding(class_labels, x.shape[0])
        h = F.leaky_relu(self.stem(x), _LEAK)
        for stage in self.stages:
            h = F.leaky_relu(stage(h, emb), _LEAK)
        if c.minibatch_std_group:
            h = self._append_minibatch_std(h)
        h = F.leaky_relu(self.final_conv(h), _LEAK)
        return self.out(h.sum(dim=(2, 3))).squeeze(1)

    def _level_index(self, level: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """0-based embedding rows [B] from a 1-based level (an int, or one per sample)."""
        if isinstance(level, int):
            if not 1 <= level <= self.config.levels:
                raise FastgenError(f"level must be in 1..{self.config.levels}, got {level}")
            return torch.full((x.shape[0],), level - 1, dtype=torch.long, device=x.device)
        return level.to(device=x.device, dtype=torch.long).reshape(-1) - 1

    def _append_minibatch_std(self, h: torch.Tensor) -> torch.Tensor:
        """StyleGAN's minibatch stddev: one channel with the feature spread across a group of samples."""
        batch, channels, height, width = h.shape
        group = min(batch, self.config.minibatch_std_group)
        if batch % group:
            raise FastgenError(f"batch size {batch} is not divisible by the minibatch-stddev group {group}")
        spread = h.reshape(group, -1, channels, height, width).var(dim=0, unbiased=False).add(1e-8).sqrt()
        spread = spread.mean(dim=(1, 2, 3))[:, None, None, None].repeat(group, 1, height, width)
        return torch.cat([h, spread], dim=1)

    def example_inputs(self, resolution: int, batch_size: int = 1) -> tuple[torch.Tensor | int, ...]:
        """Zero inputs at ``resolution`` for level 1 (conditioning image at half the size, as a UDPM level feeds it)."""
        param = next(self.parameters())
        shape = (batch_size, self.config.in_channels, resolution, resolution)
        x = torch.zeros(shape, device=param.device, dtype=param.dtype)
        cond = torch.zeros(
            batch_size,
            self.config.cond_channels,
            resolution // 2,
            resolution // 2,
            device=param.device,
            dtype=param.dtype,
        )
        labels = torch.zeros(batch_size, self.config.label_dim, device=param.device, dtype=param.dtype)
        return x, 1, cond if self.config.cond_channels else None, labels if self.config.label_dim else None
