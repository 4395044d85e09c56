"""NumPy mirror of the kernels' noise (philox.cuh): Philox4x32-10, Box–Muller, and each kernel's layout.

The GPU kernels draw their noise in-kernel from ``(seed, offset)``; these functions compute the same
numbers on the CPU, so a kernel's output can be checked against the torch reference fed the same noise,
and a sample made on the GPU can be replayed anywhere. The generator is the Random123 Philox4x32 with 10
rounds (checked against its published known-answer vectors); the normals are computed in float64 from the
same 24-bit uniforms the kernels use, so they agree with the kernels' float32 normals to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from fastgen.errors import FastgenError

_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_KEY_BUMPS = (0x9E3779B9, 0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_ROUNDS = 10


def philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32-10 of ``counter`` [..., 4] under ``key`` [..., 2] (uint32, broadcast): [..., 4] uint32."""
    counter = np.asarray(counter, dtype=np.uint32).astype(np.uint64)
    key = np.asarray(key, dtype=np.uint32).astype(np.uint64)
    c0, c1, c2, c3 = (counter[..., i] for i in range(4))
    k0, k1 = key[..., 0], key[..., 1]
    m0, m1 = (np.uint64(m) for m in _MULTIPLIERS)
    for round_index in range(_ROUNDS):
        if round_index:
            k0 = (k0 + np.uint64(_KEY_BUMPS[0])) & _LOW32
            k1 = (k1 + np.uint64(_KEY_BUMPS[1])) & _LOW32
        # 32×32 → 64-bit products never overflow uint64.
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _LOW32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _LOW32
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3), axis=-1).astype(np.uint32)


def check_seed_offset(seed: object, offset: object) -> tuple[int, int]:
    """Both must be integers in [0, 2^64): the kernels take them as unsigned 64-bit values."""
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**64:
            raise FastgenError(f"noise {name} must be an integer in [0, 2^64), got {value!r}")
    return int(seed), int(offset)


def philox_bits(seed: int, offset: int, index: np.ndarray) -> np.ndarray:
    """The four words of each counter ``index`` (uint64 array) for this seed and offset: [..., 4] uint32."""
    seed, offset = check_seed_offset(seed, offset)
    index = np.asarray(index, dtype=np.uint64)
    counter = np.stack(
        np.broadcast_arrays(
            index & _LOW32, index >> np.uint64(32), np.uint64(offset & 0xFFFFFFFF), np.uint64(offset >> 32)
        ),
        axis=-1,
    )
    return philox4x32_10(counter, np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint64))


def box_muller(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two standard normals from two uint32 words, as ``fg_box_muller`` computes them (in float64)."""
    u = ((np.asarray(a, dtype=np.uint32) >> 8).astype(np.float64) + 1.0) * 2.0**-24
    v = (np.asarray(b, dtype=np.uint32) >> 8).astype(np.float64) * 2.0**-24
    radius = np.sqrt(-2.0 * np.log(u))
    return radius * np.cos(2 * np.pi * v), radius * np.sin(2 * np.pi * v)


def normals(seed: int, offset: int, index: np.ndarray) -> np.ndarray:
    """The four normals of each counter ``index``: [..., 4] float64 (``fg_normal4``)."""
    bits = philox_bits(seed, offset, index)
    first = box_muller(bits[..., 0], bits[..., 1])
    second = box_muller(bits[..., 2], bits[..., 3])
    return np.stack([*first, *second], axis=-1)


# ------------------------------------------------------------------------------------- kernel layouts


def elementwise_noise(seed: int, offset: int, shape: Sequence[int]) -> Tensor:
    """The DDPM/DDIM kernel's noise for a tensor of ``shape``: counter g → elements 4g … 4g+3 (float64)."""
    count = int(np.prod(shape))
    flat = normals(seed, offset, np.arange((count + 3) // 4, dtype=np.uint64)).reshape(-1)[:count]
    return torch.from_numpy(flat.reshape(tuple(shape)))


def block_noise(seed: int, offset: int, shape: Sequence[int]) -> Tensor:
    """The UDPM posterior kernel's noise at x_{l-1}'s ``shape`` [B, C, 2h, 2w] (float64).

    Counter b = the 2×2 block's row-major index over [B, C, h, w]; its normals fill the block row by row.
    """
    batch, channels, height, width = shape
    if height % 2 or width % 2:
        raise FastgenError(f"block noise needs an even height and width, got {height}x{width}")
    blocks = batch * channels * (height // 2) * (width // 2)
    values = normals(seed, offset, np.arange(blocks, dtype=np.uint64))
    values = values.reshape(batch, channels, height // 2, width // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return torch.from_numpy(np.ascontiguousarray(values).reshape(batch, channels, height, width))


def hermitian_noise_spectrum(seed: int, offset: int, images: int, height: int, width: int, base: int = 0) -> Tensor:
    """``fg_hermitian_normal`` for every stored coefficient: complex128 [images, H, W//2+1].

    The orthonormal rfft2 of white noise on an H×W grid; ``torch.fft.irfft2(·, s=(H, W), norm="ortho")``
    of it is the pixel-space white noise the kernel used. Counters start at ``base``.
    """
    columns = width // 2 + 1
    ky = np.arange(height)[:, None]
    kx = np.arange(columns)[None, :]
    paired = (kx == 0) | (2 * kx == width)
    partner = (height - ky) % height
    row = np.where(paired & (partner < ky), partner, ky)
    image = np.arange(images)[:, None, None]
    index = (base + (image * height + row) * columns + kx).astype(np.uint64)
    bits = philox_bits(seed, offset, index)
    real, imag = box_muller(bits[..., 0], bits[..., 1])
    self_conjugate = paired & (partner == ky)
    real = np.where(self_conjugate, real, real * np.sqrt(0.5))
    imag = np.where(self_conjugate, 0.0, np.where(row == ky, imag, -imag) * np.sqrt(0.5))
    return torch.from_numpy(real + 1j * imag)


def dct_noise_spectrum(seed: int, offset: int, images: int, height: int, width: int) -> Tensor:
    """The blur kernel's DCT-basis noise: counter (image·H + ky)·W + kx, first normal; float64 [images, H, W]."""
    index = np.arange(images * height * width, dtype=np.uint64)
    bits = philox_bits(seed, offset, index)
    return torch.from_numpy(box_muller(bits[..., 0], bits[..., 1])[0].reshape(images, height, width))
