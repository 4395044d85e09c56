"""Multi-process training under ``torchrun`` (one process per device); a no-op in a single process.

Every rank draws the same *global* batch from its own copy of the data iterator and keeps its own
slice, so the recipe's ``batch_size`` is the global batch whatever the world size. Gradients are
averaged by DistributedDataParallel; only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fastgen.errors import FastgenError

Batch = Tensor | tuple[Any, ...] | list[Any]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # whether ``setup`` created the process group (and ``shutdown`` ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def setup(device_setting: str) -> tuple[DistEnv, torch.device]:
    """Join the job described by torchrun's RANK/WORLD_SIZE/LOCAL_RANK (nccl on CUDA, gloo on CPU)
    and pick this rank's device for the recipe's ``run.device`` ('auto' | 'cpu' | 'cuda')."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(device_setting, local_rank)
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        return DistEnv(), device
    return DistEnv(rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=owns_group), device


def shutdown(env: DistEnv) -> None:
    """End the process group if ``setup`` started it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _resolve_device(setting: str, local_rank: int) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cpu":
        return torch.device("cpu")
    if setting != "cuda":
        raise FastgenError(f"run.device must be 'auto', 'cpu' or 'cuda', got {setting!r}")
    if not torch.cuda.is_available():
        raise FastgenError("run.device = 'cuda' but torch sees no CUDA device; use run.device='cpu' or 'auto'")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)  # nccl and the default CUDA stream follow the current device
    return device


def local_slice(batch: Batch, env: DistEnv, device: torch.device) -> Batch:
    """This rank's equal share of a global batch (every tensor cut along dim 0), on ``device``."""

    def take(value: Any) -> Any:
        if not isinstance(value, Tensor):
            return value
        share = value.shape[0] // env.world_size
        return value[env.rank * share : (env.rank + 1) * share].to(device, non_blocking=True)

    return take(batch) if isinstance(batch, Tensor) else type(batch)(take(value) for value in batch)


def wrap(module: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """The module to call for a backward whose gradients must be averaged: DDP when distributed."""
    if not env.is_distributed:
        return module
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def mean(values: Tensor, env: DistEnv) -> Tensor:
    """Average a tensor over ranks (in place when distributed)."""
    if env.is_distributed:
        dist.all_reduce(values)
        values /= env.world_size
    return values


def gather(value: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not env.is_distributed:
        return [value]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(env: DistEnv) -> None:
    """Wait for all ranks."""
    if env.is_distributed:
        dist.barrier()
