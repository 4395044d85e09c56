"""Blur diffusion: FFT/DCT operators against dense matrices, marginals, score, reverse step, oracle sampling.

Dense references are built here from the spatial Gaussian kernel and `torch.linalg.eigh`, independently of
the module's transfer function and transforms.
"""

import itertools
import math
import re

import pytest
import torch

from fastgen.diffusion.blur import (
    BASES,
    BLUR_SCHEDULES,
    blur_powers,
    eps_loss,
    from_spectrum,
    make_blur_schedule,
    q_sample,
    reverse_step,
    sample,
    sample_steps,
    score_from_eps,
    spectral_filter,
    to_spectrum,
)
from fastgen.errors import FastgenError

F64 = torch.float64



# ---------------------------------------------------------------------------------------- dense references
def _dense_blur_1d(n: int, sigma: float, basis: str) -> torch.Tensor:
    """n×n blur by the normalised sampled Gaussian: circular (fourier) or half-sample reflect (dct)."""
    radius = 10 * n + math.ceil(20 * sigma)  # far beyond where the taps underflow
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets.to(F64) / sigma) ** 2)
    taps /= taps.sum()
    period = n if basis == "fourier" else 2 * n
    folded = torch.zeros(period, dtype=F64).index_add_(0, offsets % period, taps)
    p, q = torch.arange(n)[:, None], torch.arange(n)[None, :]
    if basis == "fourier":
        return folded[(p - q) % n]
    # x_ext[-1-q] = x[q]: pixel q is seen at offsets p - q and p + q + 1 (mod 2n)
    return folded[(p - q) % period] + folded[(p + q + 1) % period]


def _dense_blur(height: int, width: int, sigma: float, basis: str) -> torch.Tensor:
    """Separable 2-D blur acting on row-major flattened images."""
    return torch.kron(_dense_blur_1d(height, sigma, basis), _dense_blur_1d(width, sigma, basis))


def _matrix_function(symmetric: torch.Tensor, fn) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(symmetric)
    return vectors @ torch.diag(fn(values)) @ vectors.T


def _apply(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return (images.flatten(-2) @ matrix.T).reshape(images.shape)


def _dense_forward_marginal(schedule, blur: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean operator √ᾱ_t W^{F_t}, covariance I − ᾱ_t W^{2F_t}) from β, f and the dense W alone."""
    alpha_bar = torch.cumprod(1 - schedule.betas, 0)[t]
    total_power = schedule.blur_powers[: t + 1].sum()
    mean_op = _matrix_function(blur, lambda d: alpha_bar.sqrt() * d**total_power)
    covariance = torch.eye(blur.shape[0], dtype=F64) - _matrix_function(
        blur, lambda d: alpha_bar * d ** (2 * total_power)
    )
    return mean_op, covariance


def _dense_transform(basis: str, height: int, width: int) -> torch.Tensor:
    """Rows = to_spectrum of each pixel basis image: [H*W, spectrum size]."""
    identity = torch.eye(height * width, dtype=F64).reshape(-1, height, width)
    return to_spectrum(identity, basis).flatten(1)


# ---------------------------------------------------------------------------------------- oracles
def _gaussian_oracle(schedule, mean_image: torch.Tensor, data_variance: torch.Tensor):
    """Optimal ε-predictor E[ε | x_t] for x0 ~ N(mean, U diag(v0) Uᵀ); v0 = 0 is the one-image dataset.

    Per frequency x̄_t ~ N(√ā m̄, ā v0 + 1 − ā), so E[ε̄ | x̄_t] = √(1 − ā)(x̄_t − √ā m̄)/(ā v0 + 1 − ā).
    """
    size = (schedule.height, schedule.width)
    mean_spectrum = to_spectrum(mean_image, schedule.basis)

    def predictor(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = int(t[0])  # the sampler runs one step for the whole batch
        alpha_bar, rest = schedule.alphas_cumprod[step], schedule.one_minus_alphas_cumprod[step]
        spectrum = to_spectrum(x, schedule.basis)
        eps = rest.sqrt() * (spectrum - alpha_bar.sqrt() * mean_spectrum) / (alpha_bar * data_variance + rest)
        return from_spectrum(eps, schedule.basis, size)

    return predictor


def _first_order_moments(schedule, data_variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact output moments of DESIGN's first-order sampler under the Gaussian oracle, per frequency.

    With the oracle the step is affine: x̄ ← g_t x̄ + h_t m̄ + √(1−a_t) z̄, so the output mean is gain·m̄ and
    its variance follows exactly — this measures the discretisation bias with no sampling error.
    """
    gain = torch.zeros_like(data_variance)
    variance = schedule.one_minus_alphas_cumprod[-1].clone()
    for t in reversed(range(schedule.num_steps)):
        a, alpha_bar = schedule.alphas[t], schedule.alphas_cumprod[t]
        marginal = alpha_bar * data_variance + 1 - alpha_bar
        x_gain = (2 - a.sqrt()) - (1 - a) / marginal
        gain = x_gain * gain + (1 - a) * alpha_bar.sqrt() / marginal
        variance = x_gain**2 * variance + ((1 - a) if t > 0 else 0)
    return gain, variance


# ---------------------------------------------------------------------------------------- schedules
def test_blur_powers_rise_from_zero_to_final_power_in_the_papers_order():
    steps, final = 1000, 0.14
    curves = {kind: blur_powers(kind, steps, final) for kind in BLUR_SCHEDULES}
    for kind, f in curves.items():
        assert f.shape == (steps,)
        assert f[0] < 1e-8 * final, kind  # f(1) = 0, or (1/T)^k·f(N) for cubic/quartic
        assert float(f[-1]) == pytest.approx(final), kind
        assert torch.all(f.diff() >= 0), kind
    # Fig. 4: log blurs earliest, quartic latest
    middle = [curves[kind][steps // 2] for kind in ("log", "linear", "quadratic", "cubic", "quartic")]
    assert all(earlier > later for earlier, later in itertools.pairwise(middle))


def test_schedule_tables_are_consistent():
    schedule = make_blur_schedule(
        6, 5, num_steps=50, beta_schedule="cosine", blur_sigma=0.8, final_blur_power=0.5, dtype=F64
    )
    expected_alphas = (1 - schedule.betas)[:, None, None] * schedule.eigenvalues ** (
        2 * schedule.blur_powers[:, None, None]
    )
    assert schedule.alphas.shape == (50, 6, 3)
    torch.testing.assert_close(schedule.alphas, expected_alphas, rtol=1e-12, atol=0)
    torch.testing.assert_close(schedule.alphas_cumprod, torch.cumprod(expected_alphas, 0), rtol=1e-12, atol=0)
    torch.testing.assert_close(schedule.one_minus_alphas, 1 - schedule.alphas, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(schedule.one_minus_alphas_cumprod, 1 - schedule.alphas_cumprod, rtol=1e-9, atol=1e-15)
    assert schedule.to(dtype=torch.float32).alphas.dtype == torch.float32


# ---------------------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("size", [(8, 8), (5, 6)])
def test_transform_is_orthonormal_and_matches_the_dense_basis(basis, size):
    height, width = size
    rows = _dense_transform(basis, height, width)
    n, m = torch.arange(height * width) // width, torch.arange(height * width) % width
    if basis == "dct":

        def cosines(index, length):
            k = torch.arange(length, dtype=F64)
            scale = torch.full((length,), math.sqrt(2 / length), dtype=F64)
            scale[0] = math.sqrt(1 / length)
            return scale * torch.cos(math.pi * k[None, :] * (2 * index[:, None] + 1) / (2 * length))

        expected = (cosines(n, height)[:, :, None] * cosines(m, width)[:, None, :]).flatten(1)
        torch.testing.assert_close(rows, expected, rtol=0, atol=1e-12)
        gram = rows @ rows.T
    else:
        k1, k2 = torch.arange(height, dtype=F64), torch.arange(width // 2 + 1, dtype=F64)
        phase = (
            2 * math.pi * (n[:, None, None] * k1[None, :, None] / height + m[:, None, None] * k2[None, None, :] / width)
        )
        expected = (torch.exp(-1j * phase) / math.sqrt(height * width)).flatten(1)
        torch.testing.assert_close(rows, expected, rtol=0, atol=1e-12)
        # the half spectrum stands for the full one: bins other than k2 = 0 (and Nyquist) count twice
        self_conjugate = (k2 == 0) | (2 * k2 == width)
        weights = torch.where(self_conjugate, 1.0, 2.0).to(F64).repeat(height)
        gram = ((rows.conj() * weights) @ rows.T).real
    torch.testing.assert_close(gram, torch.eye(height * width, dtype=F64), rtol=0, atol=1e-12)
    images = torch.randn(3, 2, height, width, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(from_spectrum(to_spectrum(images, basis), basis, size), images, rtol=0, atol=1e-12)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("power", [1.0, 2.0, 0.37])
def test_spectral_blur_equals_the_dense_blur_matrix_power(basis, power):
    height, width, sigma = 8, 6, 0.9
    schedule = make_blur_schedule(height, width, blur_sigma=sigma, basis=basis, dtype=F64)
    blur = _dense_blur(height, width, sigma, basis)
    dense_power = (
        torch.linalg.matrix_power(blur, int(power))
        if power.is_integer()
        else _matrix_function(blur, lambda d: d**power)
    )
    images = torch.randn(2, 3, height, width, dtype=F64, generator=torch.Generator().manual_seed(1))
    result = spectral_filter(images, schedule.eigenvalues**power, basis)
    torch.testing.assert_close(result, _apply(dense_power, images), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------- forward / score
@pytest.mark.parametrize("basis", BASES)
def test_q_sample_marginal_matches_dense_mean_and_covariance(basis):
    height, width, t, n = 5, 4, 50, 40_000
    schedule = make_blur_schedule(
        height, width, blur_sigma=1.0, final_blur_power=0.5, blur_schedule="linear", basis=basis, dtype=F64
    )
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 1, height, width, dtype=F64, generator=generator)
    noise = torch.randn(n, 1, height, width, dtype=F64, generator=generator)
    samples = q_sample(schedule, x0.expand(n, -1, -1, -1), t, noise).flatten(1)
    mean_op, covariance = _dense_forward_marginal(schedule, _dense_blur(height, width, 1.0, basis), t)
    # 5 standard errors per entry; Var(Ĉ_pq) = (C_pp C_qq + C_pq²)/n for Gaussian samples
    std = covariance.diagonal().sqrt()
    cov_se = ((std[:, None] * std[None, :]) ** 2 + covariance**2).div(n).sqrt()
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() > 10 * cov_se.max()  # the blur's correlations are well resolved
    torch.testing.assert_close(
        samples.mean(0), mean_op @ x0.flatten(), rtol=0, atol=5 * float(std.max()) / math.sqrt(n)
    )
    assert torch.all((torch.cov(samples.T) - covariance).abs() <= 5 * cov_se)


@pytest.mark.parametrize("basis", BASES)
def test_score_from_true_noise_is_the_dense_gaussian_score(basis):
    """Power −½: U(1−Ā)^(−½)Uᵀε equals the exact −Σ_t⁻¹(x_t − μ_t); the paper's power −1 would not."""
    height, width, t = 6, 5, 120
    schedule = make_blur_schedule(
        height, width, blur_sigma=1.0, final_blur_power=0.5, blur_schedule="linear", basis=basis, dtype=F64
    )
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 3, height, width, dtype=F64, generator=generator)
    noise = torch.randn(2, 3, height, width, dtype=F64, generator=generator)
    x_t = q_sample(schedule, x0, t, noise)
    mean_op, covariance = _dense_forward_marginal(schedule, _dense_blur(height, width, 1.0, basis), t)
    dense_score = -_apply(torch.linalg.inv(covariance), x_t - _apply(mean_op, x0))
    torch.testing.assert_close(score_from_eps(schedule, noise, t), dense_score, rtol=1e-8, atol=1e-8)


def test_eps_loss_is_per_sample_mean_square():
    generator = torch.Generator().manual_seed(4)
    noise = torch.randn(3, 2, 4, 4, generator=generator)
    eps_hat = noise + torch.arange(3.0)[:, None, None, None]
    torch.testing.assert_close(eps_loss(eps_hat, noise), torch.arange(3.0) ** 2)


# ---------------------------------------------------------------------------------------- reverse step
@pytest.mark.parametrize("basis", BASES)
def test_reverse_step_matches_dense_design_formula(basis):
    """x_{t−1} = x + (I − A_t^½)x + (I − A_t)s + (I − A_t)^½ z with s = −(I − Ā_t)^(−½) ε̂, per sample step."""
    height, width = 5, 6
    schedule = make_blur_schedule(
        height,
        width,
        num_steps=200,
        beta_schedule="cosine",
        blur_sigma=1.0,
        final_blur_power=0.5,
        blur_schedule="linear",
        basis=basis,
        dtype=F64,
    )
    values, vectors = torch.linalg.eigh(_dense_blur(height, width, 1.0, basis))

    def dense(diagonal: torch.Tensor) -> torch.Tensor:  # U diag(·) Uᵀ in W's own eigenbasis
        return vectors @ torch.diag(diagonal) @ vectors.T

    steps = torch.tensor([0, 57, 199])
    generator = torch.Generator().manual_seed(5)
    x, eps_hat, noise = torch.randn(3, 3, 2, height, width, dtype=F64, generator=generator)
    result = reverse_step(schedule, x, steps, eps_hat, noise)
    alpha_bars = torch.cumprod(1 - schedule.betas, 0)
    for row, t in enumerate(steps.tolist()):
        a = (1 - schedule.betas[t]) * values ** (2 * schedule.blur_powers[t])
        a_bar = alpha_bars[t] * values ** (2 * schedule.blur_powers[: t + 1].sum())
        score = _apply(dense(-(1 - a_bar).rsqrt()), eps_hat[row])
        expected = (
            x[row]
            + _apply(dense(1 - a.sqrt()), x[row])
            + _apply(dense(1 - a), score)
            + _apply(dense((1 - a).sqrt()), noise[row])
        )
        torch.testing.assert_close(result[row], expected, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------- oracle sampling
@pytest.mark.parametrize("basis", BASES)
def test_one_image_oracle_sampler_returns_the_image(basis):
    """With v0 = 0 the last step gives x̄ = c̄ + (1 − √a_0)(x̄_0 − c̄), |x̄_0 − c̄| ~ √(1 − a_0) = 0.01: the error
    is ~5e-5 · 0.01 · a few (2.2e-6 measured). DESIGN's literal a_{t+1} leaves 8.5e-3: this pins the index.
    """
    schedule = make_blur_schedule(8, 8, basis=basis, dtype=F64)  # the paper's setting
    image = torch.rand(1, 3, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(6)) * 2 - 1
    predictor = _gaussian_oracle(schedule, image, torch.zeros_like(schedule.eigenvalues))
    result = sample(schedule, predictor, 4, 3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(result, image.expand(4, -1, -1, -1), rtol=0, atol=1e-5)


def test_sampler_starts_from_the_prior_and_calls_the_predictor_at_every_step():
    """The first predictor input is q(x_{T-1} | x0 = 0) = (I − ᾱ W^{2F})^½ ε; t runs T−1 … 0 as floats."""
    height, width, steps = 6, 5, 20
    schedule = make_blur_schedule(
        height, width, num_steps=steps, beta_schedule="cosine", final_blur_power=1.0, dtype=F64
    )
    image = torch.rand(1, 1, height, width, dtype=F64, generator=torch.Generator().manual_seed(8))
    oracle = _gaussian_oracle(schedule, image, torch.full_like(schedule.eigenvalues, 0.1))
    calls = []

    def recording_predictor(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((x, t))
        return oracle(x, t)

    initial = torch.randn(2, 1, height, width, dtype=F64, generator=torch.Generator().manual_seed(9))
    strip = list(sample_steps(schedule, recording_predictor, 2, 1, initial_noise=initial))
    assert [t for t, _ in strip] == list(range(steps - 1, -1, -1))
    assert [t.tolist() for _, t in calls] == [[float(t)] * 2 for t in range(steps - 1, -1, -1)]
    _, prior_covariance = _dense_forward_marginal(schedule, _dense_blur(height, width, 0.4, "fourier"), steps - 1)
    expected_prior = _apply(_matrix_function(prior_covariance, torch.sqrt), initial)
    torch.testing.assert_close(calls[0][0], expected_prior, rtol=0, atol=1e-12)


def test_sampler_is_reproducible_with_a_generator():
    schedule = make_blur_schedule(8, 8, num_steps=20, beta_schedule="cosine", final_blur_power=1.0)
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(10))
    predictor = _gaussian_oracle(schedule, image, torch.full_like(schedule.eigenvalues, 0.1))

    def run(seed: int) -> torch.Tensor:
        return sample(schedule, predictor, 2, 1, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(run(11), run(11), rtol=0, atol=0)
    assert not torch.equal(run(11), run(12))


def test_first_order_bias_in_the_papers_setting_is_small():
    """Measured with the exact moment recursion (T = 1000, σ = 0.4, quartic, f(N) = 0.14, 8×8, both bases):
    mean gain within 0.15 %, variance within 0.8 % of the data; asserted at 0.3 % / 1 %."""
    for basis in BASES:
        schedule = make_blur_schedule(8, 8, basis=basis, dtype=F64)
        data_variance = 0.05 + schedule.eigenvalues**8
        gain, variance = _first_order_moments(schedule, data_variance)
        assert (gain - 1).abs().max() < 3e-3
        assert ((variance - data_variance) / data_variance).abs().max() < 1e-2


@pytest.mark.parametrize("basis", BASES)
def test_gaussian_oracle_sampler_reproduces_data_mean_and_covariance(basis):
    """x0 ~ N(m, U diag(v0) Uᵀ): the sampler's per-frequency mean/variance and pixel covariance match the data.

    Tolerance = discretisation bias (exact moment recursion; ≤ 0.7 % in mean and ≤ 5 % in variance for this
    short, strongly blurred chain: T = 200 cosine, σ = 1, f(N) = 0.5) + 5 standard errors of n = 2048 samples
    per frequency (variance: relative √(2/n) ≈ 3 %; mean: √(v/n)).
    """
    height, width, batch, channels = 4, 5, 1024, 2
    n = batch * channels
    schedule = make_blur_schedule(
        height,
        width,
        num_steps=200,
        beta_schedule="cosine",
        blur_sigma=1.0,
        final_blur_power=0.5,
        basis=basis,
        dtype=torch.float32,
    )
    data_variance = 0.05 + schedule.eigenvalues**8  # even in ω, so a real covariance; spans 0.05 … 1.05
    mean_image = torch.randn(1, 1, height, width, generator=torch.Generator().manual_seed(12))
    predictor = _gaussian_oracle(schedule, mean_image, data_variance)
    samples = sample(schedule, predictor, batch, channels, generator=torch.Generator().manual_seed(13))

    gain, variance = _first_order_moments(schedule.to(dtype=F64), data_variance.to(F64))
    spectra = to_spectrum(samples.to(F64), basis).flatten(0, 1)
    data_mean = to_spectrum(mean_image.to(F64), basis)[0, 0]
    data_variance = data_variance.to(F64)
    sample_mean = spectra.mean(0)
    sample_variance = (spectra - sample_mean).abs().square().mean(0)
    assert torch.all((sample_mean - data_mean).abs() <= (gain - 1).abs() * data_mean.abs() + 5 * (variance / n).sqrt())
    assert torch.all(
        (sample_variance - data_variance).abs() <= (variance - data_variance).abs() + 5 * variance * math.sqrt(2 / n)
    )

    data_covariance = spectral_filter(
        torch.eye(height * width, dtype=F64).reshape(-1, height, width), data_variance, basis
    ).flatten(1)
    std = data_covariance.diagonal().sqrt()
    cov_se = ((std[:, None] * std[None, :]) ** 2 + data_covariance**2).div(n).sqrt()
    pixel_cov = torch.cov(samples.to(F64).reshape(n, -1).T)
    bias = (variance - data_variance).abs().max()  # |(U D Uᵀ)_pq| ≤ max|D|
    assert torch.all((pixel_cov - data_covariance).abs() <= bias + 5 * cov_se)


# ---------------------------------------------------------------------------------------- bad inputs
def _schedule():
    return make_blur_schedule(8, 8, num_steps=10, beta_schedule="cosine")


def _images(*shape):
    return torch.zeros(*shape)


BAD_INPUTS = [
    (lambda: make_blur_schedule(8, 8, blur_schedule="cosine"), "unknown blur schedule"),
    (lambda: make_blur_schedule(8, 8, basis="wavelet"), "unknown blur basis"),
    (lambda: make_blur_schedule(8, 8, blur_sigma=0.0), "blur_sigma"),
    (lambda: make_blur_schedule(8, 8, blur_sigma=-1.0), "blur_sigma"),
    (lambda: make_blur_schedule(8, 8, final_blur_power=-0.1), "final_blur_power"),
    (lambda: make_blur_schedule(8, 8, num_steps=1), "num_steps"),
    (lambda: make_blur_schedule(0, 8), "height and width"),
    (lambda: make_blur_schedule(8, 8, beta_schedule="sigmoid"), "unknown beta schedule"),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 7), 0, _images(2, 3, 8, 7)), "expects [B, C, 8, 8]"),
    (lambda: q_sample(_schedule(), _images(3, 8, 8), 0, _images(3, 8, 8)), "expects [B, C, 8, 8]"),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 8), 0, _images(1, 3, 8, 8)), "noise has shape"),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 8), 10, _images(2, 3, 8, 8)), "out of range"),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 8), -1, _images(2, 3, 8, 8)), "out of range"),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 8), torch.tensor([0, 10]), _images(2, 3, 8, 8)), "out of range"),
    (
        lambda: q_sample(_schedule(), _images(2, 3, 8, 8), torch.tensor([0.0, 1.0]), _images(2, 3, 8, 8)),
        "integer tensor",
    ),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 8), torch.tensor([0, 1, 2]), _images(2, 3, 8, 8)), "shape [2]"),
    (lambda: q_sample(_schedule(), _images(2, 3, 8, 8), 1.0, _images(2, 3, 8, 8)), "step index must be an int"),
    (
        lambda: reverse_step(_schedule(), _images(2, 3, 8, 8), 3, _images(2, 1, 8, 8), _images(2, 3, 8, 8)),
        "eps_hat has shape",
    ),
    (
        lambda: reverse_step(_schedule(), _images(2, 3, 8, 8), 3, _images(2, 3, 8, 8), _images(2, 3, 4, 4)),
        "noise has shape",
    ),
    (lambda: score_from_eps(_schedule(), _images(2, 3, 6, 8), 3), "expects [B, C, 8, 8]"),
    (lambda: eps_loss(_images(2, 3, 8, 8), _images(2, 3, 8, 4)), "eps_hat has shape"),
    (lambda: sample(_schedule(), lambda x, t: x[:, :1], 2, 3), "predictor output"),
    (lambda: sample(_schedule(), lambda x, t: x, 2, 3, initial_noise=_images(2, 1, 8, 8)), "initial_noise"),
    (lambda: sample_steps(_schedule(), lambda x, t: x, 0, 3), "batch_size"),
]


@pytest.mark.parametrize("call, message", BAD_INPUTS, ids=[message for _, message in BAD_INPUTS])
def test_bad_inputs_raise_fastgen_error_naming_the_problem(call, message):
    with pytest.raises(FastgenError, match=re.escape(message)):
        call()
