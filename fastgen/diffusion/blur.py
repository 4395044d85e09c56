"""Blur diffusion (Lee et al. 2022, "Progressive Deblurring of Diffusion Models"), computed per frequency.

The forward process blurs with a Gaussian W and adds noise. W is diagonal in an orthonormal basis U:
the 2-D DFT for a circular boundary (``"fourier"``) or the 2-D DCT-II for a half-sample symmetric
("reflect", numpy ``symmetric``) boundary (``"dct"``). With d_k the eigenvalue of W at frequency k,
f the blur schedule and β the noise schedule; steps are 0-based here, t = 0 … T−1 (the paper's i = t + 1):

    a_{t,k} = (1 − β_t) · d_k^{2 f(t)},     ā_{t,k} = Π_{j≤t} a_{j,k}
    forward   x̄_t = √ā_t · x̄_0 + √(1 − ā_t) · ε̄            (x̄ = Uᵀx; the network predicts the white ε)
    score     s̄ = −ε̄_θ / √(1 − ā_t)                           (power −½; the paper's eqs. 15–17 write −1)
    reverse   x̄_{t−1} = x̄_t + (1 − √a_t) x̄_t + (1 − a_t) s̄ + √(1 − a_t) z̄

The reverse step is DESIGN.md's first-order expansion of the exact one-step identity
E[√a_t x_{t−1} | x_t] = x_t + (1 − a_t)∇log p_t(x_t); it uses a_t, the factor of the forward step that
*made* x_t. (DESIGN.md and the paper's eq. 19 write a_{i+1}: one step off, and undefined at the first
reverse step t = T−1; the official code uses a_i as here.) Being first order it leaves a bias, measured
exactly on Gaussian data in tests/test_blur.py: ≤ 0.2 % in mean and ≤ 0.8 % in variance per frequency in
the paper's setting (T = 1000, quartic, σ = 0.4, f(N) = 0.14), but up to ~18 % in variance where 1 − a_t
is large early in the chain (e.g. the paper's log schedule with f(N) = 0.6).

Everything is a per-frequency scalar, so no N×N matrix is ever formed: an operator U diag(s) Uᵀ is one
transform, a pointwise product and one inverse transform.

Fourier representation: we use the unitary complex DFT (``rfft2``/``irfft2``, ``norm="ortho"``) instead
of a real cos/sin basis. Every per-frequency scalar here is real and even in ω, so the pair (k, −k) gets
the same scalar; U diag(s) Uᴴ is then the same real symmetric matrix as with the real orthonormal
Fourier basis, x stays real, and white noise stays white (E|ε̄_k|² = 1 for every k).

Memory: a schedule holds four tables of shape [T, H, W'] (W' = W//2 + 1 for Fourier, W for DCT) in its
dtype: at T = 1000, 64×64, float32 that is 4 × 8.4 MB (Fourier) or 4 × 16.4 MB (DCT).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from fastgen.diffusion.ddpm import gaussian_noise
from fastgen.diffusion.schedules import make_betas
from fastgen.errors import FastgenError
from fastgen.progress import progress_bar

BLUR_SCHEDULES = ("linear", "log", "quadratic", "cubic", "quartic")
BASES = ("fourier", "dct")

Predictor = Callable[[Tensor, Tensor], Tensor]
"""``predictor(x_t, t) -> eps_hat``: x_t [B, C, H, W]; t float [B] holding the integer step index."""


# ---------------------------------------------------------------------------------------- schedules
def blur_powers(kind: str, num_steps: int, final_power: float) -> Tensor:
    """Blur schedule f for the steps 1 … T (float64, [T]): f(1) ≈ 0 rising to f(T) = ``final_power``.

    The functional forms are those of the official code with f(1) = 0 (the paper fixes f(0) = 0 and
    reports f(N): 0.14 for quartic, 0.6 for log): linear (i−1)/(T−1), log ln i / ln T,
    quadratic (i²−1)/(T²−1), cubic (i/T)³, quartic (i/T)⁴, each times f(T).
    """
    if kind not in BLUR_SCHEDULES:
        raise FastgenError(f"unknown blur schedule {kind!r}; choose one of {', '.join(BLUR_SCHEDULES)}")
    if not isinstance(num_steps, int) or num_steps < 2:
        raise FastgenError(f"blur diffusion needs num_steps >= 2, got {num_steps!r}")
    if not (math.isfinite(final_power) and final_power >= 0):
        raise FastgenError(f"final_blur_power (f(N), the power of W at the last step) must be >= 0, got {final_power}")
    i = torch.arange(1, num_steps + 1, dtype=torch.float64)
    n = float(num_steps)
    shapes = {
        "linear": lambda: (i - 1) / (n - 1),
        "log": lambda: torch.log(i) / math.log(n),
        "quadratic": lambda: (i**2 - 1) / (n**2 - 1),
        "cubic": lambda: (i / n) ** 3,
        "quartic": lambda: (i / n) ** 4,
    }
    return final_power * shapes[kind]()


def gaussian_transfer(omega: Tensor, sigma: float) -> Tensor:
    """Frequency response d(ω) of the sampled Gaussian kernel g_j ∝ exp(−j²/2σ²), normalised to sum 1.

    This is the eigenvalue of the blur matrix W (the paper's W: a sampled Gaussian of variance σ² in
    pixels) for the basis vector of angular frequency ω: ω = 2πk/N (circular), πk/N (DCT-II, reflect).
    It is ≈ exp(−σ²ω²/2) up to aliasing, strictly positive, and 1 at ω = 0.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise FastgenError(f"blur_sigma (Gaussian kernel σ in pixels) must be > 0, got {sigma}")
    # taps beyond 10σ weigh < e^-50 relative to the centre: truncating there is exact in float64
    radius = math.ceil(10 * sigma) + 1
    offsets = torch.arange(radius + 1, dtype=torch.float64, device=omega.device)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps[1:] *= 2  # the kernel is symmetric: g_j e^{-iωj} + g_{-j} e^{iωj} = 2 g_j cos(ωj)
    response = torch.cos(omega.to(torch.float64)[..., None] * offsets) @ taps
    return response / taps.sum()


def _angular_frequencies(basis: str, n: int, half_spectrum: bool) -> Tensor:
    """ω of each coefficient along one axis, in the layout ``to_spectrum`` produces."""
    if basis == "fourier":
        cycles = (
            torch.fft.rfftfreq(n, dtype=torch.float64) if half_spectrum else torch.fft.fftfreq(n, dtype=torch.float64)
        )
        return 2 * math.pi * cycles
    return math.pi * torch.arange(n, dtype=torch.float64) / n


def check_basis(basis: str) -> None:
    if basis not in BASES:
        raise FastgenError(f"unknown blur basis {basis!r}; choose one of {', '.join(BASES)}")


@dataclass(frozen=True)
class BlurSchedule:
    """Per-frequency constants of a blur diffusion at one resolution; tables are [T, H, W'].

    ``one_minus_*`` are computed in float64 before the cast, so they keep full relative precision where
    a, ā ≈ 1 (early steps, low frequencies) — the place they are divided by.
    """

    basis: str
    height: int
    width: int
    betas: Tensor  # [T] β_t
    blur_powers: Tensor  # [T] f(t)
    eigenvalues: Tensor  # [H, W'] d_k
    alphas: Tensor  # [T, H, W'] a_{t,k}
    alphas_cumprod: Tensor  # [T, H, W'] ā_{t,k}
    one_minus_alphas: Tensor
    one_minus_alphas_cumprod: Tensor

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> BlurSchedule:
        """A copy with every tensor moved to ``device`` and/or cast to the real ``dtype``."""
        moved = {
            field.name: getattr(self, field.name).to(device=device, dtype=dtype)
            for field in fields(self)
            if isinstance(getattr(self, field.name), Tensor)
        }
        return replace(self, **moved)


def make_blur_schedule(
    height: int,
    width: int,
    *,
    num_steps: int = 1000,
    beta_schedule: str = "linear",
    blur_schedule: str = "quartic",
    blur_sigma: float = 0.4,
    final_blur_power: float = 0.14,
    basis: str = "fourier",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> BlurSchedule:
    """Build the schedule; the defaults are the paper's best LSUN setting (σ = 0.4, quartic, f(N) = 0.14).

    ``blur_sigma`` is the σ (pixels) of the sampled Gaussian W; ``final_blur_power`` = f(N) is the power
    of W at the last step (0 gives plain DDPM). Powers of a *sampled* Gaussian are not sampled Gaussians
    of a smaller σ (aliasing), so the paper's (σ, f(N)) pair is kept instead of one "max σ".
    """
    check_basis(basis)
    if not all(isinstance(n, int) and n >= 1 for n in (height, width)):
        raise FastgenError(f"image height and width must be positive integers, got {height!r} x {width!r}")
    betas = make_betas(beta_schedule, num_steps)
    powers = blur_powers(blur_schedule, num_steps, final_blur_power)
    eigenvalues = (
        gaussian_transfer(_angular_frequencies(basis, height, half_spectrum=False), blur_sigma)[:, None]
        * gaussian_transfer(_angular_frequencies(basis, width, half_spectrum=True), blur_sigma)[None, :]
    )
    schedule = BlurSchedule(
        basis=basis,
        height=height,
        width=width,
        betas=betas,
        blur_powers=powers,
        eigenvalues=eigenvalues,
        **step_tables(StepFactors.of(betas, powers, eigenvalues)),
    )
    return schedule.to(device=device, dtype=dtype)


@dataclass(frozen=True)
class StepFactors:
    """The separable logarithms of a_{t,k} and ā_{t,k} (float64): ln a = log_alpha + 2·power·ln d_k and
    ln ā = log_alpha_cumprod + 2·power_cumsum·ln d_k — what a sampling program stores instead of [T, H, W'] tables."""

    log_alpha: Tensor  # [T] ln(1 − β_t)
    power: Tensor  # [T] f(t)
    log_alpha_cumprod: Tensor  # [T] Σ_{j≤t} ln(1 − β_j)
    power_cumsum: Tensor  # [T] Σ_{j≤t} f(j)
    log_eigenvalues: Tensor  # [H, W'] ln d_k

    @classmethod
    def of(cls, betas: Tensor, powers: Tensor, eigenvalues: Tensor) -> StepFactors:
        log_alpha = torch.log1p(-betas.double())
        powers = powers.double()
        return cls(log_alpha, powers, torch.cumsum(log_alpha, 0), torch.cumsum(powers, 0), eigenvalues.double().log())


def step_tables(factors: StepFactors) -> dict[str, Tensor]:
    """a, ā, 1 − a, 1 − ā as [T, H, W'] tables (log space keeps d^{2f} and the long products accurate; expm1 gives
    1 − a and 1 − ā without cancellation)."""
    log_d = factors.log_eigenvalues[None]
    log_alphas = factors.log_alpha[:, None, None] + 2 * factors.power[:, None, None] * log_d
    log_alphas_cumprod = factors.log_alpha_cumprod[:, None, None] + 2 * factors.power_cumsum[:, None, None] * log_d
    return {
        "alphas": log_alphas.exp(),
        "alphas_cumprod": log_alphas_cumprod.exp(),
        "one_minus_alphas": -torch.expm1(log_alphas),
        "one_minus_alphas_cumprod": -torch.expm1(log_alphas_cumprod),
    }


def factors_of(schedule: BlurSchedule) -> StepFactors:
    """The schedule's step factors, from its betas, powers and eigenvalues (exact for a float64 schedule)."""
    return StepFactors.of(schedule.betas, schedule.blur_powers, schedule.eigenvalues)


# ---------------------------------------------------------------------------------------- transforms
def spectrum_shape(basis: str, height: int, width: int) -> tuple[int, int]:
    """Shape of the last two dims of ``to_spectrum``'s output: (H, W//2+1) for Fourier, (H, W) for DCT."""
    check_basis(basis)
    return (height, width // 2 + 1) if basis == "fourier" else (height, width)


def to_spectrum(x: Tensor, basis: str) -> Tensor:
    """Uᵀx over the last two dims: orthonormal complex half-spectrum DFT, or orthonormal real DCT-II."""
    check_basis(basis)
    if basis == "fourier":
        return torch.fft.rfft2(x, norm="ortho")
    return _dct2(x)


def from_spectrum(coeffs: Tensor, basis: str, size: tuple[int, int]) -> Tensor:
    """U c: the inverse of ``to_spectrum`` for images of spatial ``size`` (H, W)."""
    check_basis(basis)
    if basis == "fourier":
        return torch.fft.irfft2(coeffs, s=size, norm="ortho")
    return _idct2(coeffs)


def spectral_filter(x: Tensor, scalars: Tensor, basis: str) -> Tensor:
    """U diag(scalars) Uᵀ x: a real per-frequency scalar field (broadcast to the spectrum) applied to x."""
    return from_spectrum(scalars * to_spectrum(x, basis), basis, (x.shape[-2], x.shape[-1]))


# DCT-II by one FFT (Makhoul 1980). Reordering x as v = (x0, x2, x4, …, x5, x3, x1) along an axis turns
# cos(πk(2n+1)/2N) into Re(w_k e^{-2πimk/N}) with w_k = e^{-iπk/2N}. In 2-D, cos·cos = ½Re(E1E2 + E1E2*),
# so X[k1,k2] = ½Re(w1 (w2 V[k1,k2] + w2* V[k1,−k2])) with V = FFT2(v): one fft2, no N×N matrix.
# The index and twiddle tensors below are cached per (size, dtype, device): for small images rebuilding
# them costs more than the transform. Callers must not modify them in place.
@functools.cache
def _makhoul_order(n: int, device: torch.device) -> Tensor:
    return torch.cat([torch.arange(0, n, 2, device=device), torch.arange(1, n, 2, device=device).flip(0)])


@functools.cache
def _makhoul_inverse_order(n: int, device: torch.device) -> Tensor:
    return torch.argsort(_makhoul_order(n, device))


@functools.cache
def _half_sample_twiddle(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """w_k = e^{-iπk/2n} in the complex dtype matching the real ``dtype``."""
    angle = -math.pi / (2 * n) * torch.arange(n, dtype=torch.float64, device=device)
    return torch.polar(torch.ones_like(angle), angle).to(torch.promote_types(dtype, torch.complex64))


@functools.cache
def _ortho_dct_scale(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    scale = torch.full((n,), math.sqrt(2 / n), dtype=dtype, device=device)
    scale[0] = math.sqrt(1 / n)
    return scale


def _dct2(x: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    dtype, device = x.dtype, x.device
    # advanced indexing, not index_select: the latter is ~7x slower on the last dim on CPU
    reordered = x[..., _makhoul_order(height, device)[:, None], _makhoul_order(width, device)]
    spectrum = torch.fft.fft2(reordered)
    negated_k2 = spectrum[..., (-torch.arange(width, device=device)) % width]
    w1 = _half_sample_twiddle(height, dtype, device)[:, None]
    w2 = _half_sample_twiddle(width, dtype, device)
    coeffs = 0.5 * ((w1 * w2) * spectrum + (w1 * w2.conj()) * negated_k2).real
    return coeffs * (_ortho_dct_scale(height, dtype, device)[:, None] * _ortho_dct_scale(width, dtype, device))


def _idct2(coeffs: Tensor) -> Tensor:
    height, width = coeffs.shape[-2:]
    dtype, device = coeffs.dtype, coeffs.device
    plain = coeffs / (_ortho_dct_scale(height, dtype, device)[:, None] * _ortho_dct_scale(width, dtype, device))
    # per axis V_k = w_k* (X_k − i X_{N−k}) with X_N := 0; the two axes' maps multiply, then one ifft2.
    # X_N is the zero that padding appends, so N − k indexes the mirrored coefficient for every k.
    padded = torch.nn.functional.pad(plain, (0, 1, 0, 1))
    rows, cols = torch.arange(height, device=device)[:, None], torch.arange(width, device=device)
    mirrored_rows, mirrored_cols = height - rows, width - cols
    spectrum = torch.complex(
        plain - padded[..., mirrored_rows, mirrored_cols],
        -(padded[..., mirrored_rows, cols] + padded[..., rows, mirrored_cols]),
    )
    twiddle = _half_sample_twiddle(height, dtype, device)[:, None] * _half_sample_twiddle(width, dtype, device)
    reordered = torch.fft.ifft2(spectrum * twiddle.conj()).real
    return reordered[..., _makhoul_inverse_order(height, device)[:, None], _makhoul_inverse_order(width, device)]


# ---------------------------------------------------------------------------------------- checks
def _check_images(schedule: BlurSchedule, x: Tensor, name: str) -> None:
    expected = (schedule.height, schedule.width)
    if x.dim() != 4 or tuple(x.shape[-2:]) != expected:
        raise FastgenError(
            f"{name} has shape {tuple(x.shape)}; this blur schedule expects [B, C, {expected[0]}, {expected[1]}]"
        )
    if x.device != schedule.alphas.device:
        raise FastgenError(
            f"{name} is on {x.device} but the blur schedule is on {schedule.alphas.device}; use schedule.to()"
        )


def _check_like(reference: Tensor, other: Tensor, name: str) -> None:
    if other.shape != reference.shape:
        raise FastgenError(f"{name} has shape {tuple(other.shape)}, expected {tuple(reference.shape)}")


def _cuda_graph_capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _check_step(schedule: BlurSchedule, t: int | Tensor, batch: int) -> None:
    """t: an int, or an integer tensor [B] (one step per sample)."""
    steps = schedule.num_steps
    if isinstance(t, Tensor):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.shape != (batch,):
            raise FastgenError(
                f"step index tensor must be an integer tensor of shape [{batch}], got {t.dtype} {tuple(t.shape)}"
            )
        # the range check reads the tensor back, which a CUDA graph capture forbids
        if not _cuda_graph_capturing() and t.numel() and (int(t.min()) < 0 or int(t.max()) >= steps):
            raise FastgenError(f"step index out of range [0, {steps}): got values in [{int(t.min())}, {int(t.max())}]")
    elif isinstance(t, bool) or not isinstance(t, int):
        raise FastgenError(f"step index must be an int or an integer tensor, got {type(t).__name__}")
    elif not 0 <= t < steps:
        raise FastgenError(f"step index {t} out of range [0, {steps})")


def _at_step(table: Tensor, t: int | Tensor) -> Tensor:
    """Rows of a [T, H, W'] table at step(s) t, shaped [1 or B, 1, H, W'] to broadcast over channels."""
    return table[t].reshape(-1, 1, *table.shape[1:])


# ---------------------------------------------------------------------------------------- process
def q_sample(schedule: BlurSchedule, x0: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
    """x_t = U(√ā_t Uᵀx0 + √(1−ā_t) Uᵀε); ``noise`` is the white pixel-space ε, the network's target."""
    _check_images(schedule, x0, "x0")
    _check_like(x0, noise, "noise")
    _check_step(schedule, t, x0.shape[0])
    spectra = to_spectrum(torch.stack([x0, noise]), schedule.basis)
    mixed = (
        _at_step(schedule.alphas_cumprod, t).sqrt() * spectra[0]
        + _at_step(schedule.one_minus_alphas_cumprod, t).sqrt() * spectra[1]
    )
    return from_spectrum(mixed, schedule.basis, (schedule.height, schedule.width))


def eps_loss(eps_hat: Tensor, noise: Tensor) -> Tensor:
    """Per-sample ε objective (paper eq. 18, λ = 1): mean over C, H, W of (ε̂ − ε)², shape [B]."""
    _check_like(noise, eps_hat, "eps_hat")
    return (eps_hat - noise).square().flatten(1).mean(dim=1)


def score_from_eps(schedule: BlurSchedule, eps_hat: Tensor, t: int | Tensor) -> Tensor:
    """∇log p_t(x_t) from predicted ε: U diag(−(1 − ā_t)^(−½)) Uᵀ ε̂ (DESIGN.md's power −½)."""
    _check_images(schedule, eps_hat, "eps_hat")
    _check_step(schedule, t, eps_hat.shape[0])
    return spectral_filter(eps_hat, -_at_step(schedule.one_minus_alphas_cumprod, t).rsqrt(), schedule.basis)


def reverse_step_coefficients(schedule: BlurSchedule, t: int | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frequency (c_x, c_eps, c_z), each [1 or B, 1, H, W'], with x̄_{t−1} = c_x x̄_t + c_eps ε̄ + c_z z̄."""
    return coefficients_from_tables(
        _at_step(schedule.alphas, t), _at_step(schedule.one_minus_alphas, t), _at_step(schedule.one_minus_alphas_cumprod, t)
    )


def coefficients_from_tables(alphas: Tensor, one_minus_alphas: Tensor,
                             one_minus_alphas_cumprod: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """c_x = 2 − √a_t, c_eps = −(1 − a_t)/√(1 − ā_t) (the score folded in), c_z = √(1 − a_t)."""
    return 2 - alphas.sqrt(), -one_minus_alphas * one_minus_alphas_cumprod.rsqrt(), one_minus_alphas.sqrt()


def reverse_step(schedule: BlurSchedule, x: Tensor, t: int | Tensor, eps_hat: Tensor, noise: Tensor) -> Tensor:
    """One pure reverse step x_t → x_{t−1}: one transform of [x, ε̂, z], a per-frequency combination, one inverse.

    ``noise`` is white pixel-space z (zeros for a noise-free step). No state, no randomness: the oracle
    for a fused kernel and safe to capture in a CUDA graph (with a tensor t the range check is skipped
    while capturing).
    """
    _check_images(schedule, x, "x")
    _check_like(x, eps_hat, "eps_hat")
    _check_like(x, noise, "noise")
    _check_step(schedule, t, x.shape[0])
    return combine_step(reverse_step_coefficients(schedule, t), schedule.basis, x, eps_hat, noise)


def combine_step(coefficients: tuple[Tensor, Tensor, Tensor], basis: str, x: Tensor, eps_hat: Tensor,
                 noise: Tensor | None) -> Tensor:  # fmt: skip
    """U (c_x Uᵀx + c_eps Uᵀε̂ + c_z Uᵀz) for per-frequency (c_x, c_eps, c_z); ``noise`` None: no noise term."""
    images = [x, eps_hat] if noise is None else [x, eps_hat, noise]
    spectra = to_spectrum(torch.stack(images), basis)
    combined = sum(c * spectrum for c, spectrum in zip(coefficients, spectra))
    return from_spectrum(combined, basis, (x.shape[-2], x.shape[-1]))


# ---------------------------------------------------------------------------------------- sampler
def sample_steps(
    schedule: BlurSchedule,
    predictor: Predictor,
    batch_size: int,
    channels: int,
    *,
    generator: torch.Generator | None = None,
    initial_noise: Tensor | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """Run the reverse chain, yielding (t, x_{t−1}) after each step t = T−1 … 0; the last is the sample.

    Prior: x_{T−1} = U √(1 − ā_{T−1}) Uᵀ ε, i.e. q(x_{T−1} | x_0 = 0) — the forward marginal without its
    mean term (√ā_{T−1} x0 ≈ 0). It differs from the paper's N(0, I) by ā_{T−1} in variance (≤ 4.1e-5
    for linear β, T = 1000). ε is ``initial_noise`` if given, else drawn with ``generator``. The last
    step (t = 0) adds no noise. Keep every k-th yield for a coarse-to-fine strip.
    """
    if not all(isinstance(n, int) and n >= 1 for n in (batch_size, channels)):
        raise FastgenError(f"batch_size and channels must be positive integers, got {batch_size!r}, {channels!r}")
    shape = (batch_size, channels, schedule.height, schedule.width)
    dtype, device = schedule.alphas.dtype, schedule.alphas.device
    if initial_noise is None:
        initial_noise = gaussian_noise(shape, generator=generator, device=device, dtype=dtype)
    elif tuple(initial_noise.shape) != shape:
        raise FastgenError(f"initial_noise has shape {tuple(initial_noise.shape)}, expected {shape}")
    _check_images(schedule, initial_noise, "initial_noise")
    # validated eagerly here; the generator below only runs when iterated
    return _reverse_chain(schedule, predictor, initial_noise, generator, progress)


@torch.no_grad()
def _reverse_chain(
    schedule: BlurSchedule,
    predictor: Predictor,
    initial_noise: Tensor,
    generator: torch.Generator | None,
    progress: bool,
) -> Iterator[tuple[int, Tensor]]:
    batch_size = initial_noise.shape[0]
    x = spectral_filter(initial_noise, _at_step(schedule.one_minus_alphas_cumprod, -1).sqrt(), schedule.basis)
    for t in progress_bar(range(schedule.num_steps - 1, -1, -1), desc="blur diffusion", disable=not progress):
        eps_hat = predictor(x, torch.full((batch_size,), float(t), dtype=x.dtype, device=x.device))
        _check_like(x, eps_hat, "predictor output")
        noise = (
            gaussian_noise(x.shape, generator=generator, device=x.device, dtype=x.dtype) if t > 0 else torch.zeros_like(x)
        )
        x = reverse_step(schedule, x, t, eps_hat, noise)
        yield t, x


def sample(
    schedule: BlurSchedule,
    predictor: Predictor,
    batch_size: int,
    channels: int,
    *,
    generator: torch.Generator | None = None,
    initial_noise: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Images [B, C, H, W] from the full reverse chain (see ``sample_steps``)."""
    steps = sample_steps(
        schedule, predictor, batch_size, channels, generator=generator, initial_noise=initial_noise, progress=progress
    )
    for _, x in steps:
        pass
    return x
