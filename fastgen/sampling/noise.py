"""The programs' noise contract (export/PROGRAM.md): Philox4x32-10 keyed by (seed, op, draw, element), in torch.

The same generator as the kernels' ``philox.cuh`` and its NumPy mirror ``fastgen.kernels.philox``, written with
torch int64 tensor ops so that it runs vectorised on the CPU and on a GPU, and inside a CUDA graph. Every row of a
batch has its own key (seed, image index: :class:`RowKeys`), held in device tensors that a replay reads, so one
captured graph serves any mix of seeds and images.
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
    """Philox4x32-10 of int64 ``counter`` [4, ...] (32-bit words) under ``key`` [2, ...] (broadcast against the
    counters' trailing dimensions: one key, or one per row): the four output words [4, ...].

    32×32-bit products are taken in int64, whose wrap-around keeps all 64 bits: the low word is the product's low
    half, the high word its bits 32–63.
    """
    rounds, bumps = _key_schedule(counter.device)
    key = key.to(torch.int64)
    schedule = (rounds * bumps).reshape(_ROUNDS, 2, *[1] * (key.dim() - 1))
    keys = (key[None] + schedule) & _LOW32  # the key of every round (Random123's schedule)
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


def row_normals(key: Tensor, first: Tensor, op_index: int, draw: int, count: int) -> Tensor:
    """The contract's normals [R, count] (float64) of draw ``draw`` of op ``op_index`` for R rows: row r is ``count``
    normals from element ``first[r]`` of the stream under key ``key[:, r]`` (``key`` [2, R] int64, ``first`` [R]
    int64, both on one device; read there, never on the host, so a CUDA graph replays new rows). Element e is
    normal e mod 4 of counter (e//4 low, e//4 high, draw, op_index)."""
    for name, value in (("op index", op_index), ("draw", draw)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LOW32:
            raise FastgenError(f"noise {name} must be an integer in [0, 2^32), got {value!r}")
    lane = (first % 4)[:, None]
    counters = (count + 3 + 3) // 4  # enough for `count` normals from any lane of the first counter
    index = (first // 4)[:, None] + torch.arange(counters, dtype=torch.int64, device=first.device)  # [R, counters]
    counter = torch.stack((index & _LOW32, index >> 32, torch.full_like(index, draw), torch.full_like(index, op_index)))
    words = philox4x32_10(counter, key[:, :, None])
    cosines, sines = box_muller(words[0::2], words[1::2])  # [2, R, counters]: Box–Muller on (x, y) and on (z, w)
    values = torch.stack((cosines, sines), dim=1).permute(2, 3, 0, 1).reshape(len(first), 4 * counters)  # counter-major
    return values.gather(1, lane + torch.arange(count, dtype=torch.int64, device=first.device))


def normals(key: Tensor, op_index: int, draw: int, shape: Sequence[int], dtype: torch.dtype = torch.float32,
            first: int = 0) -> Tensor:  # fmt: skip
    """The contract's normals of draw ``draw`` of op ``op_index`` for a tensor of ``shape`` under one ``key``
    (:func:`seed_words`), on its device; ``first``: the element index of this tensor's first element."""
    start = torch.tensor([first], dtype=torch.int64, device=key.device)
    return row_normals(key[:, None], start, op_index, draw, math.prod(shape)).reshape(tuple(shape)).to(dtype)


Row = tuple[int, int]
"""(seed, image index): image ``index`` of the seed's sequence — what one row of a batch samples."""

MAX_IMAGE_INDEX = 2**63
"""Image indices are below this (int64 tensors hold them; each draw also checks that index × elements per image
fits)."""


def seed_rows(seed: int, count: int, first_image: int = 0) -> list[Row]:
    """The rows of images ``first_image`` … ``first_image + count - 1`` of ``seed``: one seed's batch."""
    return [(seed, first_image + offset) for offset in range(count)]


def check_rows(rows: object) -> list[Row]:
    """A batch's rows: a non-empty sequence of (seed, image index) integer pairs, seeds in [0, 2^64) and indices in
    [0, 2^63)."""
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or not rows:
        raise FastgenError(f"rows must be a non-empty sequence of (seed, image index) pairs, got {type(rows).__name__}")
    checked = []
    for position, row in enumerate(rows):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != 2:
            raise FastgenError(f"row {position} must be a (seed, image index) pair, got {row!r}")
        seed, index = row
        check_seed(seed)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_IMAGE_INDEX:
            raise FastgenError(f"row {position}: the image index must be an integer in [0, 2^63), got {index!r}")
        checked.append((seed, index))
    return checked


class RowKeys:
    """Per-row noise keys of a batch on a device: the Philox key words [2, B] and image indices [B] that row r of
    every draw reads. :meth:`fill` writes new rows in place (a captured CUDA graph then samples them)."""

    def __init__(self, batch_size: int, device: torch.device | str = "cpu") -> None:
        self.words = torch.zeros(2, batch_size, dtype=torch.int64, device=device)
        self.images = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.last_image = 0  # on the host: bounds the element indices without reading the device

    @classmethod
    def of(cls, rows: Sequence[Row], device: torch.device | str = "cpu") -> RowKeys:
        keys = cls(len(check_rows(rows)), device)
        keys.fill(rows)
        return keys

    @property
    def batch_size(self) -> int:
        return len(self.images)

    def fill(self, rows: Sequence[Row]) -> None:
        rows = check_rows(rows)
        if len(rows) != self.batch_size:
            raise FastgenError(f"{len(rows)} rows given for a batch of {self.batch_size}")
        seeds = [seed for seed, _ in rows]
        host = torch.tensor([[seed & _LOW32 for seed in seeds], [seed >> 32 for seed in seeds]], dtype=torch.int64)
        self.words.copy_(host)
        self.images.copy_(torch.tensor([index for _, index in rows], dtype=torch.int64))
        self.last_image = max(index for _, index in rows)


def philox_source(keys: RowKeys, dtype: torch.dtype = torch.float32) -> NoiseSource:
    """The contract as a program's noise source for the rows of ``keys``: row r of every draw is the draw's noise
    for image ``keys.images[r]`` of its seed (element indices count from that image's first element), so a row's
    image is the same whatever batch or chunk it is sampled in."""

    def noise(op_index: int, draw: int, shape: tuple[int, ...]) -> Tensor:
        if shape[0] != keys.batch_size:
            raise FastgenError(f"a draw for {shape[0]} images from noise keys of {keys.batch_size} rows")
        per_image = math.prod(shape[1:])
        if (keys.last_image + 1) * per_image >= 2**63:
            raise FastgenError(f"image index {keys.last_image} is too large for draws of {per_image} elements per image")
        values = row_normals(keys.words, keys.images * per_image, op_index, draw, per_image)
        return values.reshape(tuple(shape)).to(dtype)

    return noise
