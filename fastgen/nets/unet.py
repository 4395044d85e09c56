"""The UNet family: EDM's SongUNet layout with the DDPM++ and NCSN++ options, plus UDPM's upscaling head.

The network maps (x [B, C, H, W], noise_labels [B], class_labels) → output; it knows nothing of the
diffusion that calls it. ``noise_labels`` may be a noise level, a timestep or a UDPM level index.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.errors import FastgenError
from fastgen.nets.config import NetConfig
from fastgen.nets.layers import (
    ConvDown,
    FourierFeatures,
    LabelEmbedding,
    PositionalFeatures,
    UNetBlock,
    conv2d,
    group_count,
    linear,
    validate_resample_filter,
)

_SQRT_HALF = math.sqrt(0.5)


@dataclasses.dataclass(frozen=True)
class UNetConfig(NetConfig):
    """Hyper-parameters of a ``UNet``; ``UNetConfig.ncsnpp()`` / ``.ddpmpp()`` fill in the two papers' variants.

    ``resolution`` is the nominal input size that ``attention_resolutions`` refer to (EDM's img_resolution):
    attention sits at the pyramid depths where ``resolution >> depth`` is listed, fixed at construction. The
    network accepts any input size divisible by 2^(depths-1); called at another size than ``resolution`` it
    attends at the same depths, which is how the official UDPM code runs its 32-built net on 8, 16 and 32.
    """

    kind: ClassVar[str] = "unet"

    in_channels: int = 3  # image channels
    out_channels: int = 3  # image channels predicted (before the ×upscale² of the head)
    extra_in_channels: int = 0  # further input channels, e.g. PDDPM's coordinate encoding
    resolution: int = 32  # nominal input size the attention resolutions refer to
    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)  # width multiplier per pyramid depth
    blocks_per_resolution: int = 4
    attention_resolutions: tuple[int, ...] = (16,)
    attention_heads: int = 1
    dropout: float = 0.1
    noise_embedding: Literal["fourier", "positional"] = "positional"
    noise_channel_mult: int = 1  # noise features are base_channels × this wide
    embedding_channel_mult: int = 4  # conditioning vector is base_channels × this wide
    encoder: Literal["standard", "residual"] = "standard"
    resample_filter: tuple[int, ...] = (1, 1)  # separable FIR taps for the ×2 resampling
    label_dim: int = 0  # number of classes; 0 = unconditional
    label_dropout: float = 0.0  # classifier-free-guidance label dropout while training
    upscale: int = 1  # UDPM's γ: predict out_channels·γ² channels, then depth-to-space

    @classmethod
    def ncsnpp(cls, **fields: object) -> UNetConfig:
        """NCSN++ (EDM's ncsnpp preset): Fourier noise features ×2 wide, residual encoder, [1,3,3,1] filter."""
        return cls(
            **{
                "noise_embedding": "fourier",
                "noise_channel_mult": 2,
                "encoder": "residual",
                "resample_filter": (1, 3, 3, 1),
                **fields,
            }
        )

    @classmethod
    def ddpmpp(cls, **fields: object) -> UNetConfig:
        """DDPM++ (EDM's ddpmpp preset): positional noise features, standard encoder, [1,1] filter."""
        return cls(
            **{
                "noise_embedding": "positional",
                "noise_channel_mult": 1,
                "encoder": "standard",
                "resample_filter": (1, 1),
                **fields,
            }
        )

    @property
    def depths(self) -> int:
        """Number of resolutions in the feature pyramid."""
        return len(self.channel_mults)

    @property
    def input_channels(self) -> int:
        """Channels the network reads: image channels plus extra (e.g. PDDPM coordinate) channels."""
        return self.in_channels + self.extra_in_channels

    def feature_resolutions(self) -> list[int]:
        """Nominal feature-map size at each pyramid depth (the values ``attention_resolutions`` may take)."""
        return [self.resolution >> depth for depth in range(self.depths)]

    def validate(self) -> None:
        self.require_at_least(1, "in_channels", "out_channels", "resolution", "base_channels", "blocks_per_resolution")
        self.require_at_least(1, "attention_heads", "noise_channel_mult", "embedding_channel_mult", "upscale")
        self.require_at_least(0, "extra_in_channels", "label_dim")
        self.require_probability("dropout", "label_dropout")
        self.require_positive_list("channel_mults")
        stride = 2 ** (self.depths - 1)
        if self.resolution % stride:
            raise FastgenError(f"UNetConfig.resolution {self.resolution} is not divisible by 2^(depths-1) = {stride}")
        pyramid = self.feature_resolutions()
        for res in self.attention_resolutions:
            if res not in pyramid:
                raise FastgenError(
                    f"attention resolution {res} is not in the feature pyramid {pyramid} (resolution {self.resolution})"
                )
        for res, mult in zip(pyramid, self.channel_mults, strict=True):
            if res in self.attention_resolutions and (self.base_channels * mult) % self.attention_heads:
                raise FastgenError(
                    f"attention_heads {self.attention_heads} does not divide the {self.base_channels * mult} channels"
                )
        if (self.base_channels * self.noise_channel_mult) % 2:
            raise FastgenError("base_channels * noise_channel_mult must be even (sin/cos pairs)")
        if self.label_dropout and not self.label_dim:
            raise FastgenError("UNetConfig.label_dropout needs class labels (label_dim > 0)")
        validate_resample_filter(self.resample_filter, "UNetConfig.resample_filter")


class _EncoderDepth(nn.Module):
    """One encoder resolution: down block (none at depth 0), NCSN++ residual input branch, blocks."""

    def __init__(self, down: UNetBlock | None, residual_input: ConvDown | None, blocks: list[UNetBlock]) -> None:
        super().__init__()
        self.down = down
        self.residual_input = residual_input
        self.blocks = nn.ModuleList(blocks)


class _DecoderDepth(nn.Module):
    """One decoder resolution: entry blocks (middle pair at the bottom, up block otherwise) and skip-fed blocks."""

    def __init__(self, entry: list[UNetBlock], blocks: list[UNetBlock]) -> None:
        super().__init__()
        self.entry = nn.ModuleList(entry)
        self.blocks = nn.ModuleList(blocks)


class UNet(nn.Module):
    """SongUNet-style UNet (DDPM++ / NCSN++) with optional class labels, extra input channels and a ×γ head.

    forward(x [B, in+extra, H, W], noise_labels [B], class_labels [B] or [B, label_dim] | None)
    → [B, out, H·γ, W·γ] where γ = ``config.upscale`` (output channels ×γ² then depth-to-space).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        emb_channels = c.base_channels * c.embedding_channel_mult
        noise_channels = c.base_channels * c.noise_channel_mult
        block = dict(emb_channels=emb_channels, resample_filter=c.resample_filter, dropout=c.dropout)

        # Conditioning: noise-label features (+ class embedding) → 2-layer MLP.
        self.noise_features = (
            FourierFeatures(noise_channels) if c.noise_embedding == "fourier" else PositionalFeatures(noise_channels)
        )
        self.label_embedding = LabelEmbedding(c.label_dim, noise_channels, c.label_dropout) if c.label_dim else None
        self.embed = nn.Sequential(
            linear(noise_channels, emb_channels), nn.SiLU(), linear(emb_channels, emb_channels), nn.SiLU()
        )

        def heads(res: int) -> int:
            return c.attention_heads if res in c.attention_resolutions else 0

        # Encoder; the stem, every down block and every block output is a skip for the decoder.
        self.stem = conv2d(c.input_channels, c.base_channels, 3)
        channels, residual_channels = c.base_channels, c.input_channels
        skip_channels = [channels]
        encoder = []
        for depth, (res, mult) in enumerate(zip(c.feature_resolutions(), c.channel_mults, strict=True)):
            down, residual_input = None, None
            if depth > 0:
                down = UNetBlock(channels, channels, resample="down", **block)
                skip_channels.append(channels)
                if c.encoder == "residual":
                    residual_input = ConvDown(residual_channels, channels, c.resample_filter)
                    residual_channels = channels
            blocks = []
            for _ in range(c.blocks_per_resolution):
                blocks.append(UNetBlock(channels, c.base_channels * mult, attention_heads=heads(res), **block))
                channels = c.base_channels * mult
                skip_channels.append(channels)
            encoder.append(_EncoderDepth(down, residual_input, blocks))
        self.encoder = nn.ModuleList(encoder)

        # Decoder, deepest first; only the last block of each depth attends (as in SongUNet).
        decoder = []
        for depth in reversed(range(c.depths)):
            res, out_channels = c.feature_resolutions()[depth], c.base_channels * c.channel_mults[depth]
            if depth == c.depths - 1:
                entry_blocks = [
                    UNetBlock(channels, channels, attention_heads=c.attention_heads, **block),
                    UNetBlock(channels, channels, **block),
                ]
            else:
                entry_blocks = [UNetBlock(channels, channels, resample="up", **block)]
            blocks = []
            for index in range(c.blocks_per_resolution + 1):
                attention_heads = heads(res) if index == c.blocks_per_resolution else 0
                in_channels = channels + skip_channels.pop()
                blocks.append(UNetBlock(in_channels, out_channels, attention_heads=attention_heads, **block))
                channels = out_channels
            decoder.append(_DecoderDepth(entry_blocks, blocks))
        self.decoder = nn.ModuleList(decoder)

        self.head_norm = nn.GroupNorm(group_count(channels), channels, eps=1e-6)
        self.head_conv = conv2d(channels, c.out_channels * c.upscale**2, 3, scale=1e-5)

    def forward(
        self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        c = self.config
        stride = 2 ** (c.depths - 1)
        if x.ndim != 4 or x.shape[1] != c.input_channels or x.shape[-1] % stride or x.shape[-2] % stride:
            raise FastgenError(
                f"UNet expects [B, {c.input_channels}, H, W] with H, W divisible by {stride}, got {tuple(x.shape)}"
            )
        if class_labels is not None and self.label_embedding is None:
            raise FastgenError("class_labels given to an unconditional network (label_dim=0)")

        features = self.noise_features(noise_labels.reshape(-1))
        if self.label_embedding is not None:
            features = features + self.label_embedding(class_labels, x.shape[0])
        emb = self.embed(features)

        h, residual = self.stem(x), x
        skips = [h]
        for depth in self.encoder:
            if depth.down is not None:
                h = depth.down(h, emb)
                if depth.residual_input is not None:
                    # NCSN++ "residual" encoder: a strided conv path from the input, merged at every down step.
                    h = residual = (h + depth.residual_input(residual)) * _SQRT_HALF
                skips.append(h)
            for block in depth.blocks:
                h = block(h, emb)
                skips.append(h)

        for depth in self.decoder:
            for block in depth.entry:
                h = block(h, emb)
            for block in depth.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)

        out = self.head_conv(F.silu(self.head_norm(h)))
        return F.pixel_shuffle(out, c.upscale) if c.upscale > 1 else out

    def example_inputs(self, resolution: int, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Zero inputs of the right shapes on the network's device (for FLOP counts, tracing, ONNX export)."""
        param = next(self.parameters())
        x = torch.zeros(
            batch_size, self.config.input_channels, resolution, resolution, device=param.device, dtype=param.dtype
        )
        noise_labels = torch.zeros(batch_size, device=param.device, dtype=param.dtype)
        if not self.config.label_dim:
            return x, noise_labels
        return x, noise_labels, torch.zeros(batch_size, self.config.label_dim, device=param.device, dtype=param.dtype)
