"""Running a network in fp16/bf16 without rounding what must stay exact: one rule for every fast path.

Sinusoidal noise features multiply a label (a timestep reaches ~1000) by frequencies: in bf16 both the frequencies
and the product round by up to whole radians, so sin/cos of them is noise. :func:`to_precision` casts a network to
fp16/bf16 but keeps such modules float32 — their weights and buffers untouched, their inputs cast up and their
outputs cast down to the network's dtype — for the CUDA-graph sampler and the ONNX exporter alike
(:func:`float32_modules` is the one rule of which modules those are).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastgen.nets.layers import FIRResample, FourierFeatures, PositionalFeatures

NOISE_FEATURES: tuple[type[nn.Module], ...] = (FourierFeatures, PositionalFeatures)


def float32_modules(dtype: torch.dtype) -> tuple[type[nn.Module], ...]:
    """The submodule types that keep computing in float32 when a network runs in ``dtype``: the noise features, and
    in bf16 the fixed FIR resampling filters too (TensorRT-RTX 1.7 cannot build a bfloat16 ConvTranspose, and these
    depthwise ops cost little in any precision)."""
    return (*NOISE_FEATURES, FIRResample) if dtype == torch.bfloat16 else NOISE_FEATURES


def to_precision(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``module`` in place to ``dtype``, except submodules of :func:`float32_modules` (see the module doc).

    Floating-point tensors only (integer buffers keep their type). Returns ``module``.
    """
    keep_float32 = float32_modules(dtype)
    kept = [sub for sub in module.modules() if isinstance(sub, keep_float32)]
    inside_kept = {id(m) for sub in kept for m in sub.modules()}

    def cast(tensor: Tensor) -> Tensor:
        return tensor.to(dtype) if tensor.is_floating_point() else tensor

    for sub in module.modules():
        if id(sub) not in inside_kept:
            sub._apply(cast, recurse=False)  # only this module's own tensors: kept children stay as they are
    if dtype != torch.float32:
        for sub in kept:
            sub.register_forward_pre_hook(lambda _module, args: tuple(_to_float32(a) for a in args))
            sub.register_forward_hook(lambda _module, _args, out: out.to(dtype))
    return module


def _to_float32(value: object) -> object:
    return value.float() if isinstance(value, Tensor) and value.is_floating_point() else value
