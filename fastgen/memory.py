"""Refuse work that cannot fit in memory up front, with the estimate, instead of failing (or thrashing) minutes later.

Estimates are lower bounds, so nothing that fits is refused: the image-sized tensors a sampler keeps per image, the
largest activation of its networks (measured on one image), and the pixels of what is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from fastgen.errors import FastgenError

# Image-sized float32 tensors a sampler keeps alive at once: the state, the noise, the network's prediction, the result.
_SAMPLER_TENSORS = 4
_FLOAT_BYTES = 4


def sampler_bytes(channels: int, resolution: int, batch: int) -> int:
    """Lower bound of the memory a sampler needs for ``batch`` images (network activations come on top)."""
    return _SAMPLER_TENSORS * _FLOAT_BYTES * channels * resolution**2 * batch


def largest_activation(modules: Iterable[nn.Module], inputs: Iterable[tuple[torch.Tensor, ...]]) -> int:
    """The largest tensor any submodule returns when each module runs on its inputs (one image: cheap)."""
    largest = 0

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * output.element_size())

    for module, example in zip(modules, inputs):
        handles = [submodule.register_forward_hook(record) for submodule in module.modules()]
        try:
            with torch.no_grad():
                module(*example)
        finally:
            for handle in handles:
                handle.remove()
    return largest


def grid_bytes(count: int, channels: int, side: int) -> int:
    """Lower bound of the host memory a PNG grid of ``count`` images of ``side`` pixels needs: float pixels + 8-bit grid."""
    return (_FLOAT_BYTES + 1) * channels * side**2 * count


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the GPU's free memory, or the host's available memory (Linux: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(needed: int, device: torch.device, what: str, advice: str) -> None:
    """Raise a ``FastgenError`` with the estimate when ``needed`` bytes exceed what ``device`` has free."""
    available = available_bytes(device)
    if needed > available:
        raise FastgenError(f"{what} needs at least {needed / 2**30:.1f} GiB of {device.type} memory and "
                           f"{available / 2**30:.1f} GiB are free; {advice}")  # fmt: skip
