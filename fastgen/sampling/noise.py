"""The programs' noise contract (export/PROGRAM.md): Philox4x32-10 keyed by (seed, op, draw, element), in torch.

The same generator as the kernels' ``philox.cuh`` and its NumPy mirror ``fastgen.kernels.philox``, written with
torch int64 tensor ops so that it runs vectorised on the CPU and on a GPU, and inside a CUDA graph: the seed is
a device tensor that a replay reads, so one captured graph serves every seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fastgen.errors import FastgenError

NoiseSource = Callable[[int, int, tuple[int, ...]], Tensor]
"""``noise(op_index, draw, shape)``: standard normals of ``shape`` (batch first) for draw ``draw`` of op ``op_index``."""

_LOW32 = 0xFFFFFFFF
_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_KEY_BUMPS = (0x9E3779B9, 0xBB67AE85)
_ROUNDS = 10


def check_seed(seed: object) -> int:
    """A seed is an integer in [0, 2^64), the kernels' unsigned 64-bit key."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise FastgenError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    return seed


def seed_words(seed: int, device: torch.device | str = "cpu") -> Tensor:
    """The Philox key (seed & 0xffffffff, seed >> 32) as an int64 tensor [2] (fill it in place to reseed a graph)."""
    seed = check_seed(seed)
    return torch.tensor([seed & _LOW32, seed >> 32], dtype=torch.int64, device=device)


@functools.lru_cache(maxsize=None)
def _key_schedule(device: torch.device) -> tuple[Tensor, Tensor]:
    """Round numbers [10, 1] and key bumps [2] on ``device``, made once (a CUDA graph capture may not copy them
    there; the warm-up runs before it make them)."""
    rounds = torch.arange(_ROUNDS, dtype=torch.int64, device=device)[:, None]
    return rounds, torch.tensor(_KEY_BUMPS, dtype=torch.int64, device=device)


def philox4x32_10(counter: Tensor, key: Tensor) -> Tensor:
    """Philox4x32-10 of int64 ``counter`` [4, N] (32-bit words) under ``key`` [2]: the four output words [4, N].

    32×32-bit products are taken in int64, whose wrap-around keeps all 64 bits: the low word is the product's low
    half, the high word its bits 32–63.
    """
    rounds, bumps = _key_schedule(counter.device)
    keys = (key.to(torch.int64)[None, :] + rounds * bumps) & _LOW32  # the key of every round (Random123's schedule)
    c0, c1, c2, c3 = counter.unbind(0)
    for round_index in range(_ROUNDS):
        product0, product1 = c0 * _MULTIPLIERS[0], c2 * _MULTIPLIERS[1]
        c0, c1, c2, c3 = (
            ((product1 >> 32) & _LOW32) ^ c1 ^ keys[round_index, 0],
            product1 & _LOW32,
            ((product0 >> 32) & _LOW32) ^ c3 ^ keys[round_index, 1],
            product0 & _LOW32,
        )
    return torch.stack((c0, c1, c2, c3))


def box_muller(first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs of standard normals (float64) from pairs of 32-bit words, as ``fg_box_muller``: u ∈ (0, 1] from the top
    24 bits of ``first``, the angle 2πv from the top 24 bits of ``second``."""
    u = ((first >> 8) + 1).double() * 2.0**-24
    angle = (second >> 8).double() * (2 * math.pi * 2.0**-24)
    radius = torch.sqrt(-2.0 * torch.log(u))
    return radius * torch.cos(angle), radius * torch.sin(angle)


def normals(key: Tensor, op_index: int, draw: int, shape: Sequence[int], dtype: torch.dtype = torch.float32,
            first: int = 0) -> Tensor:  # fmt: skip
    """The contract's normals of draw ``draw`` of op ``op_index`` for a tensor of ``shape`` (batch first), on
    ``key``'s device: element e is normal e mod 4 of counter (e//4 low, e//4 high, draw, op_index). ``first``: the
    element index of this tensor's first element (a later slice of a larger batch)."""
    for name, value in (("op index", op_index), ("draw", draw)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LOW32:
            raise FastgenError(f"noise {name} must be an integer in [0, 2^32), got {value!r}")
    count = math.prod(shape)
    first_counter, lane = divmod(first, 4)
    index = torch.arange(first_counter, first_counter + (lane + count + 3) // 4, dtype=torch.int64, device=key.device)
    counter = torch.stack(
        (index & _LOW32, index >> 32, torch.full_like(index, draw), torch.full_like(index, op_index))
    )
    words = philox4x32_10(counter, key)
    cosines, sines = box_muller(words[0::2], words[1::2])  # [2, N]: Box–Muller on (x, y) and on (z, w)
    values = torch.stack((cosines, sines), dim=1).permute(2, 0, 1).reshape(-1)[lane:lane + count]  # counter-major
    return values.reshape(tuple(shape)).to(dtype)


def philox_source(key: Tensor, dtype: torch.dtype = torch.float32, first_image: int = 0) -> NoiseSource:
    """The contract as a program's noise source, on ``key``'s device (:func:`seed_words`), for the batch that starts
    at image ``first_image`` of the seed's sequence: element indices count from that image, so sampling in chunks
    gives the images one large batch would."""

    def noise(op_index: int, draw: int, shape: tuple[int, ...]) -> Tensor:
        return normals(key, op_index, draw, shape, dtype, first=first_image * math.prod(shape[1:]))

    return noise
