"""``fastgen bench --bandwidth``: the fused step kernels against the GPU's own device-to-device copy.

The step kernels are memory-bound (a few FLOPs per element), so their yardstick is bandwidth: each kernel's
fewest bytes (every input read once, the output written once; in-kernel Philox noise reads nothing) over its
median time, as a fraction of a large ``copy_`` (bytes read + written) measured in the same run. Every buffer is
far larger than the L2 cache, and inputs are random, not zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from fastgen.bench.measure import Timer
from fastgen.diffusion.ddpm import DiffusionSchedule
from fastgen.diffusion.udpm import UDPM
from fastgen.errors import FastgenError

BANDWIDTH_KEYS = ("kernel", "noise", "elements", "bytes", "latency_ms", "gb_per_s", "of_copy", "device")
COPY_BYTES = 2**30  # 1 GiB read + 1 GiB written: 20× the H100's L2


def _kernel_cases(images: int, res: int, device: torch.device) -> list[tuple[str, str, int, Callable[[], Tensor]]]:
    """(kernel, noise, bytes moved, launch) of each fused step at its largest 64×64-sample size."""
    from fastgen.kernels import ops  # needs cuda.core only when measured

    generator = torch.Generator(device).manual_seed(0)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, device=device)

    fine = randn(images, 3, res, res)
    coarse, x_hat, white = randn(images, 3, res // 2, res // 2), randn(images, 3, res, res), randn(images, 3, res, res)
    process = UDPM()  # the paper's schedule and 2×2 box kernel
    schedule = DiffusionSchedule.build("linear", 1000)
    philox = ops.PhiloxNoise(seed=1, offset=0)
    word = 4  # float32: the diffusion state's dtype
    full, quarter = fine.numel() * word, coarse.numel() * word
    return [
        ("udpm_posterior", "philox", quarter + 2 * full, lambda: ops.udpm_posterior_step(process, coarse, x_hat, 2, philox)),
        ("udpm_posterior", "tensor", quarter + 3 * full, lambda: ops.udpm_posterior_step(process, coarse, x_hat, 2, white)),
        ("ddpm_ancestral", "philox", 3 * full, lambda: ops.ddpm_ancestral_step(schedule, fine, 500, x_hat, philox)),
        ("ddim", "none", 3 * full, lambda: ops.ddim_step(schedule, fine, 500, 480, x_hat, 0.0, None)),
    ]


def kernel_bandwidth(
    images: int = 4096, res: int = 64, *, device: str | torch.device = "cuda", warmup: int = 3, repeats: int = 20
) -> list[dict[str, Any]]:
    """Rows (keys :data:`BANDWIDTH_KEYS`): a 1 GiB device copy, then each fused step on ``images`` float32 images
    of ``res``×``res`` (the UDPM posterior from ``res``/2), with GB/s and the fraction of the copy's GB/s."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise FastgenError("the kernel bandwidth bench needs a CUDA GPU (torch.cuda.is_available() is False here)")
    if res % 2 or res < 2:
        raise FastgenError(f"res must be even (the UDPM posterior doubles res/2), got {res}")
    timer = Timer(device, warmup, repeats)
    name = torch.cuda.get_device_name(device)
    source = torch.rand(COPY_BYTES // 4, device=device)
    target = torch.empty_like(source)
    copy_ms = timer(lambda: target.copy_(source))
    del source, target
    copy_rate = 2 * COPY_BYTES / copy_ms / 1e6
    rows = [dict(zip(BANDWIDTH_KEYS, ("copy_", "none", COPY_BYTES // 4, 2 * COPY_BYTES, copy_ms, copy_rate, 1.0, name)))]
    with torch.inference_mode():
        for kernel, noise, moved, launch in _kernel_cases(images, res, device):
            ms = timer(launch)
            rate = moved / ms / 1e6
            rows.append(dict(zip(BANDWIDTH_KEYS, (kernel, noise, images * 3 * res * res, moved, ms, rate, rate / copy_rate, name))))
    return rows


def print_bandwidth(rows: list[dict[str, Any]], console: Console) -> None:
    """The rows as a table, the copy first."""
    table = Table(title=f"fused step kernels vs copy_ · {rows[0]['device']}")
    for key in ("kernel", "noise", "elements", "MB moved", "ms", "GB/s", "of copy"):
        table.add_column(key, justify="left" if key in ("kernel", "noise") else "right")
    for row in rows:
        table.add_row(row["kernel"], row["noise"], f"{row['elements']:,}", f"{row['bytes'] / 1e6:,.0f}",
                      f"{row['latency_ms']:.3f}", f"{row['gb_per_s']:,.0f}", f"{row['of_copy']:.0%}")  # fmt: skip
    console.print(table)
