"""The network side of a sampler: call sites as callables on one device, in one precision.

A sampler only sees ``sites`` (call-site name → callable). This module turns torch call sites into fast ones
(a precision, channels_last, optionally ``torch.compile``); ONNX Runtime or TensorRT sites plug in unchanged.
Whatever the network precision, the diffusion state stays float32: a 1000-step chain accumulates rounding,
and the fused kernels take one dtype for all their tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fastgen.errors import FastgenError
from fastgen.families import Family, Sites, module_sites
from fastgen.nets.precision import to_precision

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str | torch.dtype) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` (or the torch dtype itself) → the torch dtype."""
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        return precision
    if precision not in PRECISIONS:
        raise FastgenError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def precision_name(dtype: torch.dtype) -> str:
    """The short name (``bf16`` …) of a dtype from :data:`PRECISIONS`."""
    return next(name for name, value in PRECISIONS.items() if value == dtype)


class TorchSite:
    """A torch module as a call site: image inputs cast to its precision and layout, output float32 contiguous.

    Only 4-D inputs (images) are cast; per-sample scalars such as the timestep stay float32, because a 16-bit
    timestep loses resolution (bf16 rounds t = 999 to 1000).
    """

    def __init__(self, module: Callable[..., Tensor], dtype: torch.dtype, channels_last: bool) -> None:
        self.module = module
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, *inputs: Tensor) -> Tensor:
        cast = tuple(
            x.to(dtype=self.dtype, memory_format=self.memory_format) if x.dim() == 4 and x.is_floating_point() else x
            for x in inputs
        )
        return self.module(*cast).to(dtype=torch.float32, memory_format=torch.contiguous_format)


def as_sites(family: Family, sites_or_networks: Mapping[str, Any]) -> dict[str, Callable[..., Tensor]]:
    """Call sites from either the family's networks (keys among ``family.config.networks``) or ready sites."""
    names = set(sites_or_networks)
    if not names:
        raise FastgenError("no networks or call sites given")
    if names <= set(family.config.networks):
        return module_sites(family.call_sites(sites_or_networks))
    return dict(sites_or_networks)


def prepare_sites(
    sites: Sites,
    device: torch.device | str,
    precision: str | torch.dtype = "fp32",
    *,
    channels_last: bool | None = None,
    compile: bool = False,
) -> dict[str, Callable[..., Tensor]]:
    """Torch-module sites copied to ``device`` in ``precision`` (eval mode), wrapped as :class:`TorchSite`.

    ``channels_last`` defaults to on for 16-bit precisions (the layout tensor cores want; ANCHORS.md's best row).
    ``compile`` wraps each module in ``torch.compile`` (default mode, so it nests inside an outer CUDA graph).
    The modules are deep-copied (together, so shared weights stay shared): the caller's networks are not
    changed. Sites that are not ``nn.Module`` (engine wrappers, prepared sites) are returned as given.
    """
    dtype = resolve_precision(precision)
    channels_last = dtype != torch.float32 if channels_last is None else channels_last
    copies = copy.deepcopy({name: site for name, site in sites.items() if isinstance(site, nn.Module)})
    prepared: dict[str, Callable[..., Tensor]] = dict(sites)
    for name, module in copies.items():
        module = to_precision(module.to(device), dtype).eval()  # noise features stay float32
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        prepared[name] = TorchSite(torch.compile(module) if compile else module, dtype, channels_last)
    return prepared
