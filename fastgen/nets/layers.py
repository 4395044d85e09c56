"""Building blocks shared by the UNet and the discriminator (EDM / NCSN++ style).

Everything here is plain conv / matmul / group-norm arithmetic with shape-only control flow, so the
networks export to ONNX (opset 17, dynamic batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.errors import FastgenError

Resample = Literal["none", "up", "down"]


def group_count(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """GroupNorm groups as in EDM (≤32, ≥4 channels each), lowered to a divisor of ``channels``.

    EDM uses min(32, C // 4), which crashes for widths it does not divide; the divisor keeps odd tiny
    widths legal and gives EDM's number whenever EDM's works.
    """
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    while channels % groups:
        groups -= 1
    return groups


def init_xavier(module: nn.Conv2d | nn.Linear, scale: float = 1.0) -> None:
    """Xavier-uniform weights times ``scale`` and zero bias (EDM's SongUNet initialisation)."""
    nn.init.xavier_uniform_(module.weight)
    with torch.no_grad():
        module.weight.mul_(scale)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def conv2d(
    in_channels: int, out_channels: int, kernel_size: int, scale: float = 1.0, padding: int | None = None
) -> nn.Conv2d:
    """Biased 'same' convolution with Xavier init times ``scale``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2 if padding is None else padding)
    init_xavier(conv, scale)
    return conv


def linear(in_features: int, out_features: int, scale: float = 1.0) -> nn.Linear:
    """Biased linear layer with Xavier init times ``scale``."""
    layer = nn.Linear(in_features, out_features)
    init_xavier(layer, scale)
    return layer


def validate_resample_filter(taps: Sequence[int | float], name: str) -> None:
    """A separable FIR filter resamples by exactly 2 only with an even number of taps and a nonzero sum."""
    if len(taps) < 2 or len(taps) % 2 or sum(taps) == 0:
        raise FastgenError(
            f"{name} needs an even number (≥2) of taps with a nonzero sum, e.g. [1,1] or [1,3,3,1]; got {list(taps)}"
        )


class FIRResample(nn.Module):
    """Depthwise ×2 up- or downsampling with a separable FIR filter (e.g. [1,1] box, [1,3,3,1] NCSN++)."""

    def __init__(
        self, channels: int, taps: Sequence[float], direction: Literal["up", "down"], padding: int | None = None
    ) -> None:
        super().__init__()
        f = torch.as_tensor(taps, dtype=torch.float32)
        kernel = torch.outer(f, f) / f.sum().square()
        # A transposed stride-2 conv spreads each input over 4 outputs; ×4 keeps the mean.
        kernel = kernel * 4 if direction == "up" else kernel
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).contiguous(), persistent=False)
        self.direction = direction
        self.channels = channels
        self.padding = (len(taps) - 1) // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel.to(x.dtype)
        if self.direction == "up":
            return F.conv_transpose2d(x, kernel, stride=2, padding=self.padding, groups=self.channels)
        return F.conv2d(x, kernel, stride=2, padding=self.padding, groups=self.channels)


class ResampleConv(nn.Module):
    """Optional FIR ×2 resampling followed by a convolution, in EDM's order (resample first, cheaper)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        resample: Resample,
        taps: Sequence[float],
    ) -> None:
        super().__init__()
        self.resample = nn.Identity() if resample == "none" else FIRResample(in_channels, taps, resample)
        self.conv = conv2d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.resample(x))


class ConvDown(nn.Module):
    """3×3 conv at full resolution, then FIR ×2 downsampling (NCSN++'s residual input branch, EDM's fused_resample).

    Convolving before downsampling costs 4× the FLOPs of the other order; it is kept because the official
    UDPM network (EDM's NCSN++) does so, and its FLOPs are the ones the anchors measure.
    """

    def __init__(self, in_channels: int, out_channels: int, taps: Sequence[float]) -> None:
        super().__init__()
        fir_padding = (len(taps) - 1) // 2
        self.conv = conv2d(in_channels, out_channels, 3, padding=1 + fir_padding)
        self.down = FIRResample(out_channels, taps, "down", padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.conv(x))


class SinusoidalFeatures(nn.Module):
    """[sin, cos](label · freqs) for a scalar label per sample; subclasses choose the ``freqs`` buffer."""

    freqs: torch.Tensor

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        phase = labels.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat([phase.sin(), phase.cos()], dim=1)


class FourierFeatures(SinusoidalFeatures):
    """Random Fourier features of a scalar label (NCSN++): [sin, cos](2π f·t), f ~ N(0, scale²)."""

    def __init__(self, channels: int, scale: float = 16.0) -> None:
        super().__init__()
        # Random but part of the trained model: a persistent buffer so checkpoints and ONNX graphs keep it.
        self.register_buffer("freqs", 2 * math.pi * scale * torch.randn(channels // 2))


class PositionalFeatures(SinusoidalFeatures):
    """Transformer sinusoidal features of a scalar label (DDPM++): frequencies 1 … 1/10000, endpoint included."""

    def __init__(self, channels: int, max_period: float = 10000.0) -> None:
        super().__init__()
        half = channels // 2
        exponents = torch.arange(half, dtype=torch.float32) / max(half - 1, 1)
        self.register_buffer("freqs", max_period**-exponents, persistent=False)


class LabelEmbedding(nn.Module):
    """Class labels → a vector added to the conditioning; takes class indices [B] or one-hot/soft rows [B, label_dim].

    ``dropout`` zeroes whole label vectors while training (classifier-free guidance: zeros = unconditional).
    """

    def __init__(self, label_dim: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.label_dim = label_dim
        self.dropout = dropout
        self.proj = linear(label_dim, out_features)

    def forward(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        if class_labels is None:
            raise FastgenError(f"this network is class-conditional (label_dim={self.label_dim}); pass class_labels")
        if not class_labels.is_floating_point():
            class_labels = F.one_hot(class_labels.long(), self.label_dim)
        if class_labels.shape != (batch_size, self.label_dim):
            expected = f"[{batch_size}] indices or [{batch_size}, {self.label_dim}] rows"
            raise FastgenError(f"class_labels must be {expected}, got {tuple(class_labels.shape)}")
        labels = class_labels.to(self.proj.weight.dtype)
        if self.training and self.dropout > 0:
            labels = labels * (torch.rand(batch_size, 1, device=labels.device) >= self.dropout).to(labels.dtype)
        # One-hot rows have norm 1; √label_dim gives the projection unit-variance inputs (as EDM does).
        return self.proj(labels * math.sqrt(self.label_dim))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, written as two batched matmuls so every op exports."""

    def __init__(self, channels: int, heads: int, eps: float, out_scale: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = channels // heads
        self.norm = nn.GroupNorm(group_count(channels), channels, eps=eps)
        self.qkv = conv2d(channels, 3 * channels, 1, scale=math.sqrt(0.2))
        self.proj = conv2d(channels, channels, 1, scale=out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        qkv = self.qkv(self.norm(x)).reshape(-1, 3, self.heads, self.head_dim, height * width)
        q, k, v = (t.reshape(-1, self.head_dim, height * width) for t in qkv.unbind(1))
        # Softmax in fp32 even under autocast: the logits of large feature maps overflow fp16.
        logits = torch.bmm(q.transpose(1, 2).float(), k.float()) / math.sqrt(self.head_dim)
        weights = logits.softmax(dim=-1).to(v.dtype)
        out = torch.bmm(v, weights.transpose(1, 2))
        return self.proj(out.reshape(x.shape))


class UNetBlock(nn.Module):
    """Residual block conditioned on an embedding, with optional ×2 resampling and self-attention.

    ``adaptive_scale`` uses the embedding as scale and shift (StyleGAN/ADM), otherwise as a bias (DDPM++/NCSN++).
    ``project_skip`` gives the shortcut a 1×1 conv whenever it resamples (EDM's resample_proj); without it only
    a channel change gets one. ``residual_init`` scales the init of the convs that write into the residual
    stream (EDM: 1e-5, so each block starts near identity).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        resample: Resample = "none",
        resample_filter: Sequence[float] = (1, 1),
        attention_heads: int = 0,
        dropout: float = 0.0,
        eps: float = 1e-6,
        adaptive_scale: bool = False,
        project_skip: bool = True,
        skip_scale: float = math.sqrt(0.5),
        residual_init: float = 1e-5,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale
        self.norm0 = nn.GroupNorm(group_count(in_channels), in_channels, eps=eps)
        self.conv0 = ResampleConv(in_channels, out_channels, 3, resample, resample_filter)
        self.affine = linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = nn.GroupNorm(group_count(out_channels), out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv2d(out_channels, out_channels, 3, scale=residual_init)
        needs_projection = in_channels != out_channels or (project_skip and resample != "none")
        if needs_projection:
            self.skip: nn.Module = ResampleConv(in_channels, out_channels, 1, resample, resample_filter)
        elif resample != "none":
            self.skip = FIRResample(in_channels, resample_filter, resample)
        else:
            self.skip = nn.Identity()
        self.attention = SelfAttention(out_channels, attention_heads, eps, residual_init) if attention_heads else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(h.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + params))
        h = self.conv1(self.dropout(h))
        h = (h + self.skip(x)) * self.skip_scale
        if self.attention is not None:
            h = (h + self.attention(h)) * self.skip_scale
        return h
