"""fastgen.kernels: the .cu sources, the Philox mirror, the host constants, and (with a GPU) every kernel.

CPU: every .cu/.cuh compiles with nvcc (and with NVRTC where its library is installed), the CUDA Philox and
the NumPy mirror give the Random123 known answers, the mirror's layouts and statistics are right, and the
host constants reproduce the torch references. GPU (skipped without one): each kernel against the float64
reference fed the same noise, outputs poisoned with NaN, noise statistics, seed + offset reproducibility.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgen.diffusion import blur, ddpm
from fastgen.diffusion.udpm import UDPM, CirculantUDPM, UDPMSchedule, gaussian_kernel
from fastgen.errors import FastgenError
from fastgen.kernels import HEADERS, KERNEL_DIR, SOURCES, loader, ops, philox
from fastgen.kernels.ops import PhiloxNoise

ARCHS = ("sm_80", "sm_90")
NVCC = shutil.which("nvcc")
requires_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: cannot compile-check the .cu sources")

# Random123's kat_vectors for philox4x32 with 10 rounds: counter (4 words), key (2 words) → output (4 words).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _nvcc(*args: str | Path) -> None:
    command = [NVCC, "-std=c++17", "-Werror", "all-warnings", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _nvrtc_skip_reason() -> str | None:
    try:
        loader.cuda_core()
        from cuda.pathfinder import load_nvidia_dynamic_lib
    except (FastgenError, ImportError) as error:
        return f"cuda-python/cuda-core not installed: {error}"
    try:
        load_nvidia_dynamic_lib("nvrtc")
    except Exception as error:  # noqa: BLE001 - pathfinder raises its own not-found types
        return f"the NVRTC library is not installed (pip install nvidia-cuda-nvrtc): {error}"
    return None


def _gpu_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU: torch.cuda.is_available() is False"
    try:
        loader.cuda_core()
    except FastgenError as error:
        return str(error)
    return None


NVRTC_SKIP = _nvrtc_skip_reason()
GPU_SKIP = _gpu_skip_reason()
requires_gpu = pytest.mark.skipif(GPU_SKIP is not None, reason=GPU_SKIP or "")


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.detach().cpu().double(), ref.detach().cpu().double()
    return ((got - ref).norm() / ref.norm()).item()


# ------------------------------------------------------------------------------------------- compilation


@requires_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES)
def test_source_compiles_with_nvcc(source: str, arch: str, tmp_path: Path) -> None:
    _nvcc(f"-arch={arch}", "-c", KERNEL_DIR / source, "-o", tmp_path / "kernel.o")


@requires_nvcc
@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_on_its_own(header: str, tmp_path: Path) -> None:
    unit = tmp_path / "unit.cu"
    unit.write_text(f'#include "{header}"\n')
    _nvcc("-arch=sm_90", "-I", KERNEL_DIR, "-c", unit, "-o", tmp_path / "unit.o")


def test_every_kernel_file_is_listed() -> None:
    on_disk = {path.name for path in KERNEL_DIR.iterdir() if path.suffix in (".cu", ".cuh")}
    assert on_disk == set(SOURCES) | set(HEADERS)


@pytest.mark.skipif(NVRTC_SKIP is not None, reason=NVRTC_SKIP or "")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES)
def test_source_compiles_with_nvrtc(source: str, arch: str) -> None:
    # The loader's own compile path; NVRTC needs no GPU.
    assert len(bytes(loader.compile_source(source, arch).code)) > 0


@requires_nvcc
def test_cuda_philox_matches_known_answers_and_mirror(tmp_path: Path) -> None:
    """The header's Philox is __host__ __device__: run it on the CPU against the KAT and the mirror."""
    rng = np.random.default_rng(0)
    cases = [(c, k) for c, k, _ in PHILOX_KAT] + [
        (tuple(rng.integers(0, 2**32, 4).tolist()), tuple(rng.integers(0, 2**32, 2).tolist())) for _ in range(32)
    ]
    calls = "\n".join(
        f"    print(fg_philox4x32_10(make_uint4({c[0]}u, {c[1]}u, {c[2]}u, {c[3]}u), make_uint2({k[0]}u, {k[1]}u)));"
        for c, k in cases
    )
    program = tmp_path / "philox_host.cu"
    program.write_text(
        '#include <cstdio>\n#include "philox.cuh"\n'
        'static void print(uint4 r) { std::printf("%08x %08x %08x %08x\\n", r.x, r.y, r.z, r.w); }\n'
        f"int main() {{\n{calls}\n    return 0;\n}}\n"
    )
    _nvcc("-arch=sm_90", "-I", KERNEL_DIR, program, "-o", tmp_path / "philox_host")
    lines = subprocess.run([tmp_path / "philox_host"], capture_output=True, text=True, check=True).stdout.split("\n")
    for (counter, key), line in zip(cases, lines, strict=False):
        mirror = philox.philox4x32_10(np.array(counter, dtype=np.uint32), np.array(key, dtype=np.uint32))
        assert [int(word, 16) for word in line.split()] == mirror.tolist()
    for (_, _, expected), line in zip(PHILOX_KAT, lines, strict=False):
        assert tuple(int(word, 16) for word in line.split()) == expected


# ------------------------------------------------------------------------------------------ Philox mirror


@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX_KAT)
def test_python_philox_matches_random123_known_answers(counter, key, expected) -> None:
    out = philox.philox4x32_10(np.array(counter, dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert tuple(out.tolist()) == expected


def test_python_philox_is_vectorised_elementwise() -> None:
    counters = np.random.default_rng(1).integers(0, 2**32, (5, 4), dtype=np.uint64).astype(np.uint32)
    key = np.array([123, 456], dtype=np.uint32)
    batch = philox.philox4x32_10(counters, key)
    for row, out in zip(counters, batch, strict=True):
        assert (philox.philox4x32_10(row, key) == out).all()


def test_box_muller_normals_are_standard() -> None:
    values = philox.normals(2024, 7, np.arange(250_000, dtype=np.uint64)).reshape(-1)
    assert abs(values.mean()) < 6e-3  # 6 standard errors of 1e6 samples
    assert abs(values.var() - 1) < 8.5e-3
    assert abs((values**4).mean() - 3) < 0.05  # Gaussian kurtosis
    by_slot = philox.normals(2024, 7, np.arange(250_000, dtype=np.uint64))
    correlation = np.corrcoef(by_slot.T)
    assert np.abs(correlation - np.eye(4)).max() < 0.012


def test_box_muller_edges_are_finite() -> None:
    radius_zero = philox.box_muller(np.uint32(0xFFFFFFFF), np.uint32(12345))  # u = 1
    assert radius_zero == (0.0, 0.0)
    tail = philox.box_muller(np.uint32(0), np.uint32(0))  # u = 2^-24, the largest radius
    assert tail[0] == pytest.approx(math.sqrt(48 * math.log(2))) and tail[1] == 0.0


def test_seed_and_offset_change_the_stream() -> None:
    index = np.arange(64, dtype=np.uint64)
    base = philox.normals(1, 0, index)
    assert (philox.normals(1, 0, index) == base).all()
    assert not np.isclose(philox.normals(2, 0, index), base).any()
    assert not np.isclose(philox.normals(1, 1, index), base).any()
    assert not np.isclose(philox.normals(1, 2**32, index), base).any()  # the offset's high word counts too


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, True, "3"])
def test_seed_and_offset_are_checked(bad: object) -> None:
    with pytest.raises(FastgenError):
        PhiloxNoise(bad, 0)
    with pytest.raises(FastgenError):
        PhiloxNoise(0, bad)


def test_elementwise_noise_layout() -> None:
    noise = philox.elementwise_noise(5, 3, (2, 3, 5, 7))  # 210 elements: not a multiple of 4
    flat = philox.normals(5, 3, np.arange(53, dtype=np.uint64)).reshape(-1)
    assert noise.dtype == torch.float64 and tuple(noise.shape) == (2, 3, 5, 7)
    assert (noise.reshape(-1).numpy() == flat[:210]).all()


def test_block_noise_layout() -> None:
    batch, channels, height, width = 2, 3, 4, 6
    noise = philox.block_noise(9, 1, (batch, channels, height, width))
    counters = philox.normals(9, 1, np.arange(batch * channels * (height // 2) * (width // 2), dtype=np.uint64))
    for b, (n, c, i, j) in enumerate(np.ndindex(batch, channels, height // 2, width // 2)):
        block = noise[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(-1).numpy()
        assert (block == counters[b]).all()


@pytest.mark.parametrize(("height", "width"), [(8, 8), (5, 7), (6, 3), (1, 4)])
def test_hermitian_noise_is_a_real_white_fields_spectrum(height: int, width: int) -> None:
    images = 4000
    spectrum = philox.hermitian_noise_spectrum(4, 2, images, height, width)
    pixels = torch.fft.irfft2(spectrum, s=(height, width), norm="ortho")
    # Hermitian-consistent: the transform of the real field gives the spectrum back, nothing was dropped.
    torch.testing.assert_close(torch.fft.rfft2(pixels, norm="ortho"), spectrum, rtol=0, atol=1e-12)
    # Per coefficient: real N(0, 1) where k = −k, else real and imaginary parts N(0, ½) — the spectrum of white noise.
    ky = torch.arange(height)[:, None]
    kx = torch.arange(width // 2 + 1)[None, :]
    self_conjugate = ((kx == 0) | (2 * kx == width)) & ((2 * ky) % height == 0)
    tolerance = 6 * math.sqrt(2 / images)
    real_variance = spectrum.real.square().mean(dim=0)
    imag_variance = spectrum.imag.square().mean(dim=0)
    assert (real_variance - torch.where(self_conjugate, 1.0, 0.5)).abs().max() < tolerance
    assert (imag_variance[~self_conjugate] - 0.5).abs().max() < tolerance
    assert (imag_variance[self_conjugate] == 0).all()
    samples = pixels.reshape(images, -1)
    covariance = samples.T @ samples / images
    assert (covariance - torch.eye(height * width, dtype=torch.float64)).abs().max() < tolerance


def test_hermitian_noise_counter_base_shifts_the_stream() -> None:
    # The Matheron kernel numbers e' after e: base = images·2h·(w+1).
    first = philox.hermitian_noise_spectrum(1, 1, 2, 4, 4, base=0)
    assert not torch.isclose(philox.hermitian_noise_spectrum(1, 1, 2, 4, 4, base=first.numel()), first).any()


def test_dct_noise_layout() -> None:
    noise = philox.dct_noise_spectrum(3, 8, 2, 3, 5)
    first_normals = philox.normals(3, 8, np.arange(30, dtype=np.uint64))[:, 0]
    assert (noise.reshape(-1).numpy() == first_normals).all()


# ------------------------------------------------------------------------------------ host-side constants


def _lemma1_kernels() -> list[torch.Tensor | None]:
    general = torch.tensor([[0.8, 0.2], [0.4, -0.4]], dtype=torch.float64)
    return [None, general / general.norm()]


def _basis_around(taps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unit taps direction (range of Hᵀ per block) and an orthonormal basis of its complement."""
    q, _ = torch.linalg.qr(torch.cat([taps[:, None], torch.eye(4, dtype=torch.float64)[:, :3]], dim=1))
    direction = q[:, 0] * torch.sign(q[:, 0] @ taps)
    return direction, q[:, 1:].T


@pytest.mark.parametrize("kernel", _lemma1_kernels(), ids=["box", "general"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_udpm_posterior_constants_reproduce_the_reference(kernel: torch.Tensor | None, level: int) -> None:
    """Probe the reference posterior_step (linear in x_l, x̂, e) on one 2×2 block along the taps and the
    null space of H: each probe isolates one of the kernel's constants."""
    process = UDPM(UDPMSchedule(), kernel)
    constants = process.posterior_constants(level)
    taps = constants.taps.reshape(-1)
    torch.testing.assert_close(taps, process.kernel.reshape(-1), rtol=0, atol=0)
    direction, null_space = _basis_around(taps)
    zero_block, zero_pixel = torch.zeros(4, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)

    def reference(y: torch.Tensor, v: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return process.posterior_step(
            y.reshape(1, 1, 1, 1), v.reshape(1, 1, 2, 2), level, e.reshape(1, 1, 2, 2)
        ).reshape(4)

    close = {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(
        reference(torch.ones(1, dtype=torch.float64), zero_block, zero_block), constants.ky * taps, **close
    )
    torch.testing.assert_close(
        reference(zero_pixel, direction, zero_block), (constants.kx + constants.kp) * direction, **close
    )
    torch.testing.assert_close(
        reference(zero_pixel, zero_block, direction), (constants.ke + constants.kep) * direction, **close
    )
    for null in null_space:
        torch.testing.assert_close(reference(zero_pixel, null, zero_block), constants.kx * null, **close)
        torch.testing.assert_close(reference(zero_pixel, zero_block, null), constants.ke * null, **close)
    if level == 1:  # the kernel then returns x̂ bit for bit
        assert (constants.kx, constants.kp, constants.ky, constants.ke, constants.kep) == (1.0, 0.0, 0.0, 0.0, 0.0)


def test_udpm_posterior_constants_reject_what_the_kernel_cannot_do() -> None:
    stride_3 = UDPM(UDPMSchedule(levels=2, alphas=(0.5, 0.5), sigmas=(0.1, 0.2), gamma=3)).posterior_constants(1)
    with pytest.raises(FastgenError, match="γ = 2"):
        ops.udpm_posterior_step(stride_3, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 6, 6), None)
    with pytest.raises(FastgenError, match="level"):
        UDPM().posterior_constants(4)


def _affine_contract(c: ddpm.AffineStepConstants, x: torch.Tensor, m: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """What ddpm_step.cu computes from its constants (AffineStepConstants' docstring)."""
    x0 = c.a * x + c.b * m
    if c.clip:
        x0 = x0.clamp(-1, 1)
    return c.p * x0 + c.q * x + c.r * m + c.s * z


def _ddpm_schedule(prediction_type: str) -> ddpm.DiffusionSchedule:
    return ddpm.DiffusionSchedule.build("linear", 100, prediction_type=prediction_type, dtype=torch.float64)


STEP_CASES = [
    # (t, t_prev, eta): t_prev None = the ancestral step
    (99, None, None),
    (40, None, None),
    (0, None, None),
    (99, 79, 0.0),
    (50, 10, 0.5),
    (30, 29, 1.0),
    (5, -1, 0.0),
    (5, -1, 1.0),
]


def _step_constants(
    schedule: ddpm.DiffusionSchedule, t: int, t_prev: int | None, eta: float | None, clip: bool
) -> ddpm.AffineStepConstants:
    if t_prev is None:
        return ddpm.ancestral_constants(schedule, t, clip)
    return ddpm.ddim_constants(schedule, t, t_prev, eta, clip)


def _reference_step(
    schedule: ddpm.DiffusionSchedule,
    x: torch.Tensor,
    t: int,
    t_prev: int | None,
    eta: float | None,
    m: torch.Tensor,
    z: torch.Tensor | None,
    clip: bool,
) -> torch.Tensor:
    steps = torch.full((x.shape[0],), float(t), dtype=torch.float32)
    if t_prev is None:
        return ddpm.ancestral_step(schedule, x, steps, m, z, clip)
    return ddpm.ddim_step(schedule, x, steps, torch.full_like(steps, float(t_prev)), m, eta, z, clip)


@pytest.mark.parametrize("prediction_type", ["eps", "x0"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize(("t", "t_prev", "eta"), STEP_CASES)
def test_ddpm_constants_reproduce_the_reference(prediction_type, clip, t, t_prev, eta) -> None:
    schedule = _ddpm_schedule(prediction_type)
    generator = torch.Generator().manual_seed(t)
    x, m, z = (torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64) * 1.5 for _ in range(3))
    constants = _step_constants(schedule, t, t_prev, eta, clip)
    expected = _reference_step(schedule, x, t, t_prev, eta, m, z, clip)
    torch.testing.assert_close(_affine_contract(constants, x, m, z), expected, rtol=1e-12, atol=1e-12)


def test_ddpm_constants_check_their_arguments() -> None:
    schedule = _ddpm_schedule("eps")
    with pytest.raises(FastgenError):
        ddpm.ancestral_constants(schedule, 100)
    with pytest.raises(FastgenError):
        ddpm.ddim_constants(schedule, 10, -2, 0.0)
    with pytest.raises(FastgenError):
        ddpm.ddim_constants(schedule, 10, 5, 1.5)


# --------------------------------------------------------------------------------------- without a GPU


def test_missing_cuda_core_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda.core", None)  # makes `import cuda.core` raise ImportError
    with pytest.raises(FastgenError, match="cuda-python"):
        loader.cuda_core()


def test_cpu_tensors_are_refused() -> None:
    with pytest.raises(FastgenError, match="CUDA"):
        ops.udpm_posterior_step(UDPM().posterior_constants(2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4), None)
    with pytest.raises(FastgenError, match="CUDA"):
        ops.affine_step(ddpm.ancestral_constants(_ddpm_schedule("eps"), 3), torch.zeros(4), torch.zeros(4), None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
def test_launch_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(FastgenError, match="GPU"):
        loader.launch("ddpm_step.cu", "fastgen_ddpm_step_f32", 1, (), torch.device("cuda"))


# ---------------------------------------------------------------------------------------------- GPU


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer the fused steps allocate starts as NaN, so an element a kernel never writes shows up."""
    empty_like = torch.empty_like

    def nan_empty_like(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = empty_like(tensor, *args, **kwargs)
        return out.fill_(complex(math.nan, math.nan) if out.is_complex() else math.nan)

    monkeypatch.setattr(torch, "empty_like", nan_empty_like)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(shape, generator=generator, device="cuda", dtype=torch.float32).to(dtype)


LOW_PRECISION_TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}
NOISE_KINDS = ["philox", "tensor", "none"]


@requires_gpu
@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kernel", _lemma1_kernels(), ids=["box", "general"])
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("noise_kind", NOISE_KINDS)
def test_gpu_udpm_posterior_matches_reference(dtype, kernel, level, noise_kind) -> None:
    process = UDPM(UDPMSchedule(), kernel)
    batch, channels, height, width = 3, 2, 5, 7
    x_l = _randn(batch, channels, height, width, seed=1, dtype=dtype)
    x_hat = _randn(batch, channels, 2 * height, 2 * width, seed=2, dtype=dtype)
    seed, offset = 11, level
    white = {
        "philox": philox.block_noise(seed, offset, x_hat.shape),
        "tensor": _randn(*x_hat.shape, seed=3, dtype=dtype).double().cpu(),
        "none": torch.zeros(x_hat.shape, dtype=torch.float64),
    }[noise_kind]
    noise = {"philox": PhiloxNoise(seed, offset), "tensor": white.to("cuda", dtype), "none": None}[noise_kind]
    out = ops.udpm_posterior_step(process.posterior_constants(level), x_l, x_hat, noise)
    assert out.dtype == dtype and torch.isfinite(out).all()
    if level == 1:
        assert torch.equal(out, x_hat)
        return
    reference = process.posterior_step(x_l.double().cpu(), x_hat.double().cpu(), level, white)
    assert rel_err(out, reference) <= LOW_PRECISION_TOLERANCE[dtype]


@requires_gpu
@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("prediction_type", ["eps", "x0"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize(("t", "t_prev", "eta"), STEP_CASES)
@pytest.mark.parametrize("noise_kind", NOISE_KINDS)
def test_gpu_ddpm_step_matches_reference(dtype, prediction_type, clip, t, t_prev, eta, noise_kind) -> None:
    schedule = _ddpm_schedule(prediction_type)
    shape = (3, 3, 7, 9)  # 567 elements: exercises the ragged tail
    x = _randn(*shape, seed=4, dtype=dtype)
    model_out = _randn(*shape, seed=5, dtype=dtype)
    seed, offset = 3, t
    white = {
        "philox": philox.elementwise_noise(seed, offset, shape),
        "tensor": _randn(*shape, seed=6, dtype=dtype).double().cpu(),
        "none": None,
    }[noise_kind]
    noise = {
        "philox": PhiloxNoise(seed, offset),
        "tensor": None if white is None else white.to("cuda", dtype),
        "none": None,
    }[noise_kind]
    out = ops.affine_step(_step_constants(schedule, t, t_prev, eta, clip), x, model_out, noise)
    assert out.dtype == dtype and torch.isfinite(out).all()
    reference = _reference_step(schedule, x.double().cpu(), t, t_prev, eta, model_out.double().cpu(), white, clip)
    assert rel_err(out, reference) <= LOW_PRECISION_TOLERANCE[dtype]


@requires_gpu
def test_gpu_misaligned_views_are_handled() -> None:
    schedule = _ddpm_schedule("eps")
    storage = _randn(2 * 4097 + 1, seed=7)
    x, model_out = storage[1:4098], storage[4098:]  # 4 bytes past 16-byte alignment: no vector loads
    out = ops.affine_step(ddpm.ancestral_constants(schedule, 50), x, model_out, PhiloxNoise(1, 2))
    reference = _reference_step(
        schedule, x.double().cpu().reshape(1, 1, 1, -1), 50, None, None, model_out.double().cpu().reshape(1, 1, 1, -1),
        philox.elementwise_noise(1, 2, (1, 1, 1, 4097)), False,
    )  # fmt: skip  (the reference takes images: one 1×4097 "image")
    assert rel_err(out.reshape(reference.shape), reference) <= 1e-5


@requires_gpu
@pytest.mark.usefixtures("poisoned")
def test_gpu_noise_statistics_and_mirror() -> None:
    """A pure-noise launch of the elementwise kernel: N(0, 1) moments and the CPU mirror's exact numbers."""
    shape = (4, 1024, 1024)
    zeros = torch.zeros(shape, device="cuda")
    pure_noise = ddpm.AffineStepConstants(a=0.0, b=0.0, clip=False, p=0.0, q=0.0, r=0.0, s=1.0)
    noise = ops.affine_step(pure_noise, zeros, zeros, PhiloxNoise(77, 5)).double()
    count = noise.numel()
    assert abs(noise.mean().item()) < 6 / math.sqrt(count)
    assert abs(noise.var().item() - 1) < 6 * math.sqrt(2 / count)
    head = noise.reshape(-1)[: 1 << 16].cpu()
    torch.testing.assert_close(head, philox.elementwise_noise(77, 5, (1 << 16,)), rtol=1e-5, atol=1e-5)


@requires_gpu
def test_gpu_seed_and_offset_reproduce() -> None:
    constants = UDPM().posterior_constants(2)
    x_l, x_hat = _randn(2, 3, 16, 16, seed=8), _randn(2, 3, 32, 32, seed=9)
    first = ops.udpm_posterior_step(constants, x_l, x_hat, PhiloxNoise(5, 40))
    again = ops.udpm_posterior_step(constants, x_l, x_hat, PhiloxNoise(5, 40))
    other_offset = ops.udpm_posterior_step(constants, x_l, x_hat, PhiloxNoise(5, 41))
    other_seed = ops.udpm_posterior_step(constants, x_l, x_hat, PhiloxNoise(6, 40))
    assert torch.equal(first, again)
    assert not torch.isclose(first, other_offset).any() and not torch.isclose(first, other_seed).any()


@requires_gpu
@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("basis", ["fourier", "dct"])
@pytest.mark.parametrize(("height", "width"), [(16, 16), (9, 14), (8, 7)])
@pytest.mark.parametrize("t", [0, 17, 49])
@pytest.mark.parametrize("noise_kind", NOISE_KINDS)
def test_gpu_blur_step_matches_reference(basis, height, width, t, noise_kind) -> None:
    reference_schedule = blur.make_blur_schedule(height, width, num_steps=50, basis=basis, dtype=torch.float64)
    batch, channels = 3, 2
    x = _randn(batch, channels, height, width, seed=10)
    eps_hat = _randn(batch, channels, height, width, seed=11)
    seed, offset = 21, t
    images = batch * channels
    if noise_kind == "philox" and basis == "fourier":
        spectrum = philox.hermitian_noise_spectrum(seed, offset, images, height, width)
        white = torch.fft.irfft2(spectrum, s=(height, width), norm="ortho").reshape(x.shape)
    elif noise_kind == "philox":
        white = blur.from_spectrum(
            philox.dct_noise_spectrum(seed, offset, images, height, width), "dct", (height, width)
        )
        white = white.reshape(x.shape)
    elif noise_kind == "tensor":
        white = _randn(*x.shape, seed=12).double().cpu()
    else:
        white = torch.zeros(x.shape, dtype=torch.float64)
    noise = {"philox": PhiloxNoise(seed, offset), "tensor": white.to("cuda", torch.float32), "none": None}[noise_kind]
    coefficients = torch.stack(blur.reverse_step_coefficients(reference_schedule, t))
    coefficients = coefficients.reshape(3, *blur.spectrum_shape(basis, height, width))
    out = ops.blur_step(coefficients.to("cuda", torch.float32), basis, x, eps_hat, noise)
    assert out.dtype == x.dtype and torch.isfinite(out).all()
    reference = blur.reverse_step(reference_schedule, x.double().cpu(), t, eps_hat.double().cpu(), white)
    assert rel_err(out, reference) <= 1e-5


@requires_gpu
@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize(("height", "width"), [(8, 8), (5, 7), (4, 6), (3, 2)])
@pytest.mark.parametrize("noise_kind", NOISE_KINDS)
def test_gpu_matheron_step_matches_reference(level, height, width, noise_kind) -> None:
    process = CirculantUDPM(UDPMSchedule(), gaussian_kernel(5, 1.0))
    batch, channels = 2, 3
    x_l = _randn(batch, channels, height, width, seed=13)
    x_hat = _randn(batch, channels, 2 * height, 2 * width, seed=14)
    images, seed, offset = batch * channels, 31, level
    if noise_kind == "philox":
        high = philox.hermitian_noise_spectrum(seed, offset, images, 2 * height, 2 * width)
        low = philox.hermitian_noise_spectrum(seed, offset, images, height, width, base=high.numel())
        prior_noise = torch.fft.irfft2(high, s=(2 * height, 2 * width), norm="ortho").reshape(x_hat.shape)
        obs_noise = torch.fft.irfft2(low, s=(height, width), norm="ortho").reshape(x_l.shape)
        noise = PhiloxNoise(seed, offset)
    elif noise_kind == "tensor":
        prior_noise = _randn(*x_hat.shape, seed=15).double().cpu()
        obs_noise = _randn(*x_l.shape, seed=16).double().cpu()
        noise = (prior_noise.to("cuda", torch.float32), obs_noise.to("cuda", torch.float32))
    else:
        prior_noise = torch.zeros(x_hat.shape, dtype=torch.float64)
        obs_noise = torch.zeros(x_l.shape, dtype=torch.float64)
        noise = None
    constants = process.matheron_constants(level, (2 * height, 2 * width))
    out = ops.udpm_matheron_step(constants, ops.matheron_spectra(constants, x_hat.device), x_l, x_hat, noise)
    assert out.dtype == x_hat.dtype and torch.isfinite(out).all()
    if level == 1:
        assert torch.equal(out, x_hat)
        return
    reference = process.matheron_step(x_l.double().cpu(), x_hat.double().cpu(), level, prior_noise, obs_noise)
    assert rel_err(out, reference) <= 1e-5
