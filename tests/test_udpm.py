"""UDPM: operators, exact posterior and the FFT path, checked against dense float64 matrices.

Dense references are built here from the definitions (H tap by tap, Bayes' rule by matrix inversion), never
from the module's own operators, so each check compares two independent computations.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from fastgen.diffusion.udpm import (
    CirculantUDPM,
    UDPM,
    UDPMLatents,
    UDPMSchedule,
    box_kernel,
    concat_latents,
    draw_latents,
    gaussian_kernel,
    interpolation_grid,
    level_predictors,
    perturb_noise,
    sample,
    swap_noise,
)
from fastgen.errors import FastgenError

F64 = torch.float64
PAPER = UDPMSchedule()
MILD = UDPMSchedule(levels=3, alphas=(0.9, 0.8, 0.7), sigmas=(0.3, 0.4, 0.5))
SCHEDULES = [pytest.param(PAPER, id="paper"), pytest.param(MILD, id="mild")]
NONUNIFORM = torch.tensor([[0.1, 0.3], [0.5, 0.7]], dtype=F64)
NONUNIFORM = NONUNIFORM / NONUNIFORM.norm()
RECTANGULAR = torch.tensor([[0.2, 1.0, 0.4], [0.6, 0.9, 0.1], [0.3, 0.5, 0.8], [0.7, 0.2, 0.4]], dtype=F64)
# Sampling tolerance: an empirical covariance entry from n draws has std <= sqrt(2/n)·max variance;
# 5 standard deviations keeps these fixed-seed tests far from flaky while still catching wrong formulas.
SIGMAS_ALLOWED = 5


def dense(op, height: int, width: int) -> torch.Tensor:
    """Matrix of a linear map of [1, 1, h, w] images: column j is op(basis image j), in one batched call."""
    n = height * width
    basis = torch.eye(n, dtype=F64).reshape(n, 1, height, width)
    return op(basis).reshape(n, -1).T


def reference_down(kernel: torch.Tensor, gamma: int, height: int, width: int) -> torch.Tensor:
    """Dense H from its definition: (Hx)[i, j] = Σ_ab w[a, b] x[(γi + a + o_r) mod H, (γj + b + o_c) mod W]."""
    rows, cols = kernel.shape
    offset_r, offset_c = -((rows - gamma) // 2), -((cols - gamma) // 2)
    matrix = torch.zeros((height // gamma) * (width // gamma), height * width, dtype=F64)
    for i in range(height // gamma):
        for j in range(width // gamma):
            for a in range(rows):
                for b in range(cols):
                    source = ((gamma * i + a + offset_r) % height) * width + (gamma * j + b + offset_c) % width
                    matrix[i * (width // gamma) + j, source] += kernel[a, b]
    return matrix


def reference_marginal_covs(schedule: UDPMSchedule, kernel: torch.Tensor, size: int) -> list[torch.Tensor]:
    """[C_0 … C_L] by the dense recursion C_l = α_l² H C_{l-1} Hᵀ + σ_l² I, C_0 = 0."""
    covs = [torch.zeros(size * size, size * size, dtype=F64)]
    for level in range(1, schedule.levels + 1):
        grid = size // schedule.gamma ** (level - 1)
        down = reference_down(kernel, schedule.gamma, grid, grid)
        alpha, sigma = schedule.alphas[level - 1], schedule.sigmas[level - 1]
        covs.append(alpha**2 * down @ covs[-1] @ down.T + sigma**2 * torch.eye(down.shape[0], dtype=F64))
    return covs


def bayes_posterior(down, prior_cov, alpha, sigma, prior_scale, x_l, x_hat):
    """Dense Bayes for x_{l-1} ~ N(ᾱ x̂, C), x_l | x_{l-1} ~ N(α H x_{l-1}, σ² I): (mean, covariance)."""
    prior_precision = torch.linalg.inv(prior_cov)
    cov = torch.linalg.inv(prior_precision + alpha**2 / sigma**2 * down.T @ down)
    mean = cov @ (prior_precision @ (prior_scale * x_hat.reshape(-1)) + alpha / sigma**2 * down.T @ x_l.reshape(-1))
    return mean, cov


def assert_matrix_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-9) -> None:
    """Entrywise agreement relative to the largest entry (posterior covariances span many decades)."""
    scale = expected.abs().max().clamp_min(1e-300)
    error = (actual - expected).abs().max() / scale
    assert error < rtol, f"relative error {error:.3g}"


def deterministic_predictors(gamma: int, levels: int):
    """A fixed nonlinear per-sample stand-in for a network: upsample by γ, squash, shift per level."""
    return [
        lambda x, level=level: torch.tanh(F.interpolate(x, scale_factor=gamma) + 0.1 * level)
        for level in range(1, levels + 1)
    ]


# ------------------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_follows_design_marginal_formula(schedule):
    assert schedule.alpha_bar(0) == 1 and schedule.sigma_tilde(0) == 0
    for level in range(1, schedule.levels + 1):
        alpha_bars = [math.prod(schedule.alphas[:k]) for k in range(1, level + 1)]
        design = alpha_bars[-1] ** 2 * sum(s**2 / a**2 for s, a in zip(schedule.sigmas, alpha_bars))
        assert schedule.alpha_bar(level) == pytest.approx(alpha_bars[-1], rel=1e-14)
        assert schedule.sigma_tilde(level) ** 2 == pytest.approx(design, rel=1e-12)


# ---------------------------------------------------------------------------------- closed-form operators


@pytest.mark.parametrize(
    ("kernel", "gamma", "size"),
    [(box_kernel(2), 2, 8), (NONUNIFORM, 2, 8), (box_kernel(3), 3, 9)],
    ids=["box2", "nonuniform2", "box3"],
)
def test_lemma1_operators_give_identity_and_projection(kernel, gamma, size):
    process = UDPM(UDPMSchedule(levels=1, alphas=(0.5,), sigmas=(0.1,), gamma=gamma), kernel)
    down = reference_down(kernel, gamma, size, size)
    torch.testing.assert_close(dense(process.down, size, size), down, rtol=0, atol=1e-14)
    torch.testing.assert_close(dense(process.up, size // gamma, size // gamma), down.T, rtol=0, atol=1e-14)
    eye = torch.eye(down.shape[0], dtype=F64)
    torch.testing.assert_close(down @ down.T, eye, rtol=0, atol=1e-14)
    projection = dense(lambda x: process.up(process.down(x)), size, size)
    torch.testing.assert_close(projection @ projection, projection, rtol=0, atol=1e-14)
    torch.testing.assert_close(projection, projection.T, rtol=0, atol=1e-14)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("level", [2, 3])
@pytest.mark.parametrize("kernel", [box_kernel(2), NONUNIFORM], ids=["box", "nonuniform"])
def test_closed_form_posterior_equals_dense_bayes(schedule, level, kernel):
    process = UDPM(schedule, kernel)
    generator = torch.Generator().manual_seed(level)
    x_hat = torch.randn(1, 1, 8, 8, generator=generator, dtype=F64)
    x_l = torch.randn(1, 1, 4, 4, generator=generator, dtype=F64)
    down = reference_down(kernel, 2, 8, 8)
    alpha, sigma = schedule.alphas[level - 1], schedule.sigmas[level - 1]
    A, B = alpha**2 / sigma**2, 1 / schedule.sigma_tilde(level - 1) ** 2
    # DESIGN's (A HᵀH + B I)⁻¹ is Bayes with prior covariance I/B.
    prior_cov = torch.eye(64, dtype=F64) / B
    mean, cov = bayes_posterior(down, prior_cov, alpha, sigma, schedule.alpha_bar(level - 1), x_l, x_hat)
    torch.testing.assert_close(cov, torch.linalg.inv(A * down.T @ down + B * torch.eye(64, dtype=F64)))

    assert_matrix_close(dense(lambda v: process.posterior_cov(v, level), 8, 8), cov)
    root = dense(lambda v: process.posterior_cov_sqrt(v, level), 8, 8)
    assert_matrix_close(root, root.T)
    assert_matrix_close(root @ root, cov)
    assert_matrix_close(process.posterior_mean(x_l, x_hat, level).reshape(-1), mean)


def test_paper_fourier_posterior_and_scalar_sigma_are_not_exact():
    """DESIGN's correction: Σ is not shift invariant (no DFT diagonal, eq. 21), and a scalar Σ fits range(Hᵀ) only."""
    level, process = 2, UDPM(MILD)
    cov = dense(lambda v: process.posterior_cov(v, level), 8, 8)
    shift = torch.roll(torch.eye(64, dtype=F64).reshape(64, 8, 8), 1, dims=-1).reshape(64, 64)
    assert (shift @ cov @ shift.T - cov).abs().max() > 1e-3 * cov.abs().max()

    down = reference_down(box_kernel(2), 2, 8, 8)
    alpha, sigma = MILD.alphas[level - 1], MILD.sigmas[level - 1]
    range_variance = 1 / (alpha**2 / sigma**2 + 1 / MILD.sigma_tilde(level - 1) ** 2)
    assert_matrix_close(cov @ down.T, range_variance * down.T)
    assert (cov - range_variance * torch.eye(64, dtype=F64)).abs().max() > 1e-3 * cov.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("process", [UDPM(MILD), CirculantUDPM(MILD)], ids=["closed", "circulant"])
def test_level_one_posterior_is_exactly_the_prediction(process, dtype):
    generator = torch.Generator().manual_seed(0)
    x_1 = torch.randn(2, 3, 4, 4, generator=generator, dtype=dtype)
    x_hat = torch.randn(2, 3, 8, 8, generator=generator, dtype=dtype)
    noise = torch.randn(2, 3, 8, 8, generator=generator, dtype=dtype)
    step = process.posterior_step(x_1, x_hat, 1, noise)
    assert step.dtype == dtype and torch.equal(step, x_hat)
    if isinstance(process, UDPM):
        assert torch.equal(process.posterior_mean(x_1, x_hat, 1), x_hat)
        assert torch.equal(process.posterior_cov(noise, 1), torch.zeros_like(noise))
    else:
        assert torch.equal(process.matheron_step(x_1, x_hat, 1, noise, torch.randn_like(x_1)), x_hat)


@pytest.mark.parametrize(
    "process", [UDPM(MILD, NONUNIFORM), CirculantUDPM(MILD, gaussian_kernel(3, 0.8))], ids=["closed", "circulant"]
)
def test_posterior_samples_have_the_dense_covariance(process):
    level, draws = 2, 40_000
    generator = torch.Generator().manual_seed(1)
    x_hat = torch.randn(1, 1, 4, 4, generator=generator, dtype=F64)
    x_l = torch.randn(1, 1, 2, 2, generator=generator, dtype=F64)
    kernel = process.kernel
    prior_cov = reference_marginal_covs(MILD, kernel, 8)[level - 1]
    mean, cov = bayes_posterior(
        reference_down(kernel, 2, 4, 4), prior_cov, MILD.alphas[level - 1], MILD.sigmas[level - 1],
        MILD.alpha_bar(level - 1), x_l, x_hat,
    )
    noise = torch.randn(draws, 1, 4, 4, generator=generator, dtype=F64)
    samples = process.posterior_step(x_l.expand(draws, -1, -1, -1), x_hat.expand(draws, -1, -1, -1), level, noise)
    samples = samples.reshape(draws, -1)
    largest_variance = cov.diagonal().max()
    assert (samples.mean(0) - mean).abs().max() < SIGMAS_ALLOWED * (largest_variance / draws).sqrt()
    assert (samples.T.cov() - cov).abs().max() < SIGMAS_ALLOWED * math.sqrt(2 / draws) * largest_variance


# --------------------------------------------------------------------------------------- forward process


@pytest.mark.parametrize(
    "process", [UDPM(MILD), CirculantUDPM(MILD, gaussian_kernel(3, 0.8))], ids=["closed", "circulant"]
)
def test_q_sample_matches_the_markov_chain_at_every_level(process):
    """q(x_l|x0) exactly (dense noise map and mean) and against the simulated chain x_l = α H x_{l-1} + σ e."""
    draws, size = 20_000, 8
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 1, size, size, generator=generator, dtype=F64)
    covs = reference_marginal_covs(MILD, process.kernel, size)
    chain, image_mean = x0.reshape(1, -1).expand(draws, -1), x0.reshape(-1)
    for level in range(1, MILD.levels + 1):
        grid = size // 2 ** (level - 1)
        down = reference_down(process.kernel, 2, grid, grid)
        alpha, sigma = MILD.alphas[level - 1], MILD.sigmas[level - 1]
        chain = alpha * chain @ down.T + sigma * torch.randn(draws, down.shape[0], generator=generator, dtype=F64)
        image_mean = down @ image_mean
        marginal_mean = MILD.alpha_bar(level) * image_mean

        low = grid // 2
        zero = torch.zeros(1, 1, low, low, dtype=F64)
        torch.testing.assert_close(process.q_sample(x0, level, zero).reshape(-1), marginal_mean)
        noise_map = dense(lambda e: process.q_sample(x0.expand(e.shape[0], -1, -1, -1), level, e), low, low)
        noise_map = noise_map - marginal_mean[:, None]
        assert_matrix_close(noise_map @ noise_map.T, covs[level])
        if isinstance(process, UDPM):
            assert_matrix_close(covs[level], MILD.sigma_tilde(level) ** 2 * torch.eye(low * low, dtype=F64))

        largest_variance = covs[level].diagonal().max()
        assert (chain.mean(0) - marginal_mean).abs().max() < SIGMAS_ALLOWED * (largest_variance / draws).sqrt()
        assert (chain.T.cov().reshape(low**2, low**2) - covs[level]).abs().max() < (
            SIGMAS_ALLOWED * math.sqrt(2 / draws) * largest_variance
        )


def test_target_is_h_to_the_level_minus_one():
    process, x0 = UDPM(PAPER, NONUNIFORM), torch.randn(2, 3, 16, 16, dtype=F64)
    torch.testing.assert_close(process.target(x0, 1), x0, rtol=0, atol=0)
    torch.testing.assert_close(process.target(x0, 3), process.down(process.down(x0)))


# ------------------------------------------------------------------------------------- general FFT path


@pytest.mark.parametrize(
    ("kernel", "height", "width"),
    [(gaussian_kernel(5, 1.0), 16, 16), (RECTANGULAR, 8, 12), (gaussian_kernel(7, 1.5), 4, 6)],
    ids=["gauss5", "rectangular", "wraps-around"],
)
def test_circulant_operators_match_reference(kernel, height, width):
    process = CirculantUDPM(MILD, kernel)
    down = reference_down(kernel, 2, height, width)
    torch.testing.assert_close(dense(process.down, height, width), down, rtol=0, atol=1e-13)
    torch.testing.assert_close(dense(process.up, height // 2, width // 2), down.T, rtol=0, atol=1e-13)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_circulant_marginal_covariance_matches_dense_recursion(schedule):
    kernel, size = gaussian_kernel(5, 1.0), 16
    process = CirculantUDPM(schedule, kernel)
    covs = reference_marginal_covs(schedule, kernel, size)
    for level in range(1, schedule.levels + 1):
        grid = size // 2**level
        assert_matrix_close(dense(lambda v: process.marginal_cov(v, level), grid, grid), covs[level])


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("level", [2, 3])
def test_circulant_posterior_equals_dense_bayes(schedule, level):
    kernel, size = gaussian_kernel(5, 1.0), 16
    process = CirculantUDPM(schedule, kernel)
    high, low = size // 2 ** (level - 1), size // 2**level
    generator = torch.Generator().manual_seed(level)
    x_hat = torch.randn(1, 1, high, high, generator=generator, dtype=F64)
    x_l = torch.randn(1, 1, low, low, generator=generator, dtype=F64)
    prior_cov = reference_marginal_covs(schedule, kernel, size)[level - 1]
    mean, cov = bayes_posterior(
        reference_down(kernel, 2, high, high), prior_cov, schedule.alphas[level - 1], schedule.sigmas[level - 1],
        schedule.alpha_bar(level - 1), x_l, x_hat,
    )

    # The samplers are affine in their noises: the means come from zero noise, the factors from basis noises.
    def low_zeros(e):
        return torch.zeros(e.shape[0], 1, low, low, dtype=F64)

    def high_zeros(e):
        return torch.zeros(e.shape[0], 1, high, high, dtype=F64)

    step_mean = process.posterior_step(x_l, x_hat, level, torch.zeros_like(x_hat))
    assert_matrix_close(step_mean.reshape(-1), mean)
    factor = dense(lambda e: process.posterior_step(low_zeros(e), high_zeros(e), level, e), high, high)
    assert_matrix_close(factor @ factor.T, cov)

    matheron_mean = process.matheron_step(x_l, x_hat, level, torch.zeros_like(x_hat), torch.zeros_like(x_l))
    assert_matrix_close(matheron_mean.reshape(-1), mean)
    prior_part = dense(lambda e: process.matheron_step(low_zeros(e), high_zeros(e), level, e, low_zeros(e)), high, high)
    obs_part = dense(lambda e: process.matheron_step(low_zeros(e), high_zeros(e), level, high_zeros(e), e), low, low)
    assert_matrix_close(prior_part @ prior_part.T + obs_part @ obs_part.T, cov)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kernel", [box_kernel(2), NONUNIFORM], ids=["box", "nonuniform"])
def test_circulant_path_with_lemma1_kernel_equals_closed_form(schedule, kernel):
    closed, circulant = UDPM(schedule, kernel), CirculantUDPM(schedule, kernel)
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 3, 16, 16, generator=generator, dtype=F64)
    for level in range(1, schedule.levels + 1):
        low = 16 // 2**level
        noise = torch.randn(2, 3, low, low, generator=generator, dtype=F64)
        torch.testing.assert_close(circulant.q_sample(x0, level, noise), closed.q_sample(x0, level, noise))
        x_l = torch.randn(2, 3, low, low, generator=generator, dtype=F64)
        x_hat = torch.randn(2, 3, 2 * low, 2 * low, generator=generator, dtype=F64)
        step_noise = torch.randn_like(x_hat)
        expected = closed.posterior_step(x_l, x_hat, level, step_noise)
        torch.testing.assert_close(circulant.posterior_step(x_l, x_hat, level, step_noise), expected)


# ----------------------------------------------------------------------------------- sampler and latents


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("process", [UDPM(PAPER), CirculantUDPM(PAPER)], ids=["closed", "circulant"])
def test_oracle_predictor_returns_the_one_image(process, dtype):
    """With a one-image dataset f_l(x_l) = H^{l-1} x0 exactly, and the level-1 limit returns x0 bit for bit."""
    x0 = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4), dtype=dtype)
    predictors = [
        lambda x, level=level: process.target(x0, level).expand(x.shape[0], -1, -1, -1) for level in range(1, 4)
    ]
    result = sample(process, predictors, torch.Generator().manual_seed(5), shape=(4, 3, 16, 16), dtype=dtype)
    assert torch.equal(result.image, x0.expand(4, -1, -1, -1))


@pytest.mark.parametrize("process", [UDPM(MILD), CirculantUDPM(MILD)], ids=["closed", "circulant"])
def test_same_latents_give_the_same_sample(process):
    predictors = deterministic_predictors(2, 3)
    first = sample(process, predictors, torch.Generator().manual_seed(6), shape=(2, 3, 16, 16))
    again = sample(process, predictors, first.latents)
    assert torch.equal(first.image, again.image)
    redrawn = draw_latents(MILD, (2, 3, 16, 16), torch.Generator().manual_seed(6), observation_noise=process.observation_noise)
    used = first.latents
    assert len(used.maps()) == (7 if process.observation_noise else 4)  # x_top, e_1 … e_3 (, e'_1 … e'_3)
    assert all(torch.equal(a, b) for a, b in zip(redrawn.maps(), used.maps(), strict=True))
    other = sample(process, predictors, torch.Generator().manual_seed(7), shape=(2, 3, 16, 16))
    assert not torch.allclose(first.image, other.image)
    single = sample(process, level_predictors(lambda x, level: predictors[level - 1](x), 3), first.latents)
    assert torch.equal(first.image, single.image)


def test_interpolation_grid_corners_reproduce_corner_samples():
    process, predictors = UDPM(MILD), deterministic_predictors(2, 3)
    corners_batch = draw_latents(MILD, (4, 3, 16, 16), torch.Generator().manual_seed(8), F64)
    corner_images = sample(process, predictors, corners_batch).image
    grid = interpolation_grid([corners_batch.select(k) for k in range(4)], [1.0, 0.6, 0.0], [1.0, 0.3, 0.0])
    images = sample(process, predictors, grid).image.reshape(3, 3, 3, 16, 16)
    for corner, (i, j) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        torch.testing.assert_close(images[i, j], corner_images[corner])
    assert not torch.allclose(images[1, 1], corner_images[0])
    # Every (η, δ) mixes the corners with weights whose squares sum to 1: orthonormal corners stay unit norm.
    orthonormal = torch.eye(4, dtype=F64).reshape(4, 1, 1, 2, 2)
    basis = [UDPMLatents(orthonormal[k], (orthonormal[k],)) for k in range(4)]
    mixed = interpolation_grid(basis, [0.0, 0.3, 0.8, 1.0], [0.1, 0.5, 1.0])
    torch.testing.assert_close(mixed.x_top.flatten(1).norm(dim=1), torch.ones(12, dtype=F64))


@pytest.mark.parametrize("process", [UDPM(MILD), CirculantUDPM(MILD)], ids=["closed", "circulant"])
def test_swap_and_perturb_change_only_the_chosen_level(process):
    """A level's maps (e_l, and e'_l with observation noise) are edited together; the other levels' stay."""
    predictors = deterministic_predictors(2, 3)
    both = draw_latents(MILD, (2, 3, 16, 16), torch.Generator().manual_seed(9), F64, observation_noise=process.observation_noise)
    first, second = both.select(0), both.select(1)
    image = sample(process, predictors, first).image

    def same_maps(a: UDPMLatents, b: UDPMLatents, level: int) -> bool:
        return all(x is y for x, y in zip(a.latent_maps(level), b.latent_maps(level), strict=True))

    # Under the exact posterior x_0 = f_1(x_1): the level-1 noise has no effect at all.
    swapped_fine, _ = swap_noise(first, second, 1)
    assert torch.equal(sample(process, predictors, swapped_fine).image, image)
    swapped, swapped_back = swap_noise(first, second, 2)
    assert len(swapped.latent_maps(2)) == (2 if process.observation_noise else 1)
    assert same_maps(swapped, second, 2) and same_maps(swapped_back, first, 2)
    assert same_maps(swapped, first, 1) and same_maps(swapped, first, 3) and same_maps(swapped, first, 4)
    assert not torch.allclose(sample(process, predictors, swapped).image, image)
    assert same_maps(swap_noise(*swap_noise(first, second, 2), 2)[0], first, 2)

    unchanged = perturb_noise(first, 2, 0.0, torch.Generator().manual_seed(10))
    assert torch.equal(sample(process, predictors, unchanged).image, image)
    perturbed = perturb_noise(first, 3, 0.3, torch.Generator().manual_seed(10))
    assert all(same_maps(perturbed, first, level) for level in (1, 2, 4))
    assert all(not torch.equal(new, old) for new, old in zip(perturbed.latent_maps(3), first.latent_maps(3), strict=True))
    assert not torch.allclose(sample(process, predictors, perturbed).image, image)


# ------------------------------------------------------------------------------------------ bad inputs


def _latents(shape=(1, 3, 16, 16)) -> UDPMLatents:
    return draw_latents(PAPER, shape, torch.Generator().manual_seed(0))


def _step(x_l_shape, x_hat_shape, level=2, noise_shape=None, process=None):
    process = UDPM(PAPER) if process is None else process
    noise = torch.zeros(x_hat_shape if noise_shape is None else noise_shape)
    return process.posterior_step(torch.zeros(x_l_shape), torch.zeros(x_hat_shape), level, noise)


def _sample(latents=None, predictors=None, process=None):
    predictors = deterministic_predictors(2, 3) if predictors is None else predictors
    return sample(process or UDPM(PAPER), predictors, _latents() if latents is None else latents)


def _with_obs_noises(latents, edit=lambda maps: maps):
    """``latents`` with observation-noise maps e'_l at x_l's resolution (e_{l+1}'s, x_top's for l = L), then ``edit``ed."""
    return UDPMLatents(latents.x_top, latents.noises, edit(tuple(torch.zeros_like(e) for e in (*latents.noises[1:], latents.x_top))))


def _with_first_noise(noise_edit):
    good = _latents()
    return UDPMLatents(good.x_top, (noise_edit(good.noises[0]), *good.noises[1:]))


BAD_INPUTS = [
    # schedules
    (lambda: UDPMSchedule(levels=2), r"3 alphas for 2 levels", "alphas-length"),
    (lambda: UDPMSchedule(sigmas=(0.1, 0.0, 0.3)), r"sigmas must be positive", "sigma-nonpositive"),
    (lambda: UDPMSchedule(alphas=(0.5, 1.2, 0.1)), r"alphas must lie in \(0, 1\]", "alpha-above-one"),
    (lambda: UDPMSchedule(alphas=(0.5, 0.0, 0.1)), r"alphas must lie in \(0, 1\]", "alpha-zero"),
    (lambda: UDPMSchedule(gamma=1), r"gamma", "gamma"),
    # kernels
    (lambda: UDPM(PAPER, gaussian_kernel(3)), r"exceeds the stride.*CirculantUDPM.*FFT", "kernel-too-wide"),
    (lambda: UDPM(PAPER, torch.ones(2, 2)), r"L2 norm is 2.*normalise", "kernel-not-unit-norm"),
    (lambda: CirculantUDPM(PAPER, torch.ones(2, 2, 2)), r"1-D or 2-D", "kernel-3d"),
    (lambda: CirculantUDPM(PAPER, torch.tensor([[math.nan, 1.0]])), r"finite", "kernel-nan"),
    # shapes and levels
    (
        lambda: UDPM(PAPER).q_sample(torch.zeros(1, 3, 12, 12), 1, torch.zeros(1, 3, 6, 6)),
        r"not divisible by γ\^L = 8",
        "resolution",
    ),
    (
        lambda: UDPM(PAPER).q_sample(torch.zeros(1, 3, 16, 16), 1, torch.zeros(1, 3, 4, 4)),
        r"noise has shape",
        "q-noise-shape",
    ),
    (lambda: _step((1, 3, 4, 4), (1, 3, 8, 8), level=0), r"level must be an integer in \[1, 3\]", "level-zero"),
    (lambda: UDPM(PAPER).target(torch.zeros(1, 3, 16, 16), 4), r"level must be an integer in \[1, 3\]", "level-4"),
    (lambda: _step((1, 3, 4, 4), (1, 1, 8, 8)), r"x_hat has 1 channels but x_l has 3", "channels"),
    (lambda: _step((1, 3, 4, 4), (1, 3, 4, 4)), r"x_hat \(the predictor output\) has shape", "x-hat-resolution"),
    (
        lambda: _step((1, 3, 4, 4), (1, 3, 8, 8), noise_shape=(1, 3, 4, 4), process=CirculantUDPM(PAPER)),
        r"noise has shape",
        "step-noise-shape",
    ),
    (lambda: UDPM(PAPER).down(torch.zeros(3, 8, 8)), r"\[B, C, H, W\]", "not-an-image"),
    # latents and the sampler
    (
        lambda: _sample(UDPMLatents(_latents().x_top, _latents().noises[1:])),
        r"latents hold 2 noise maps",
        "latents-count",
    ),
    (lambda: _sample(_with_first_noise(lambda e: e[..., :8, :8])), r"latents noise e_1 has shape", "latents-shape"),
    (
        lambda: _sample(process=CirculantUDPM(PAPER)),
        r"latents hold no observation-noise maps, which this UDPM's circulant-kernel .* save them again with --save-latents",
        "latents-without-observation-noise",
    ),
    (lambda: _sample(_with_obs_noises(_latents())), r"hold observation-noise maps .* box-kernel", "latents-extra-observation-noise"),
    (
        lambda: _sample(_with_obs_noises(_latents(), lambda maps: maps[:2]), process=CirculantUDPM(PAPER)),
        r"2 observation-noise maps for 3 levels",
        "latents-observation-count",
    ),
    (
        lambda: _sample(_with_obs_noises(_latents(), lambda maps: (maps[0], maps[0], maps[2])), process=CirculantUDPM(PAPER)),
        r"latents noise e'_2 has shape \(1, 3, 8, 8\), expected \(1, 3, 4, 4\) \(the resolution of x_2",
        "latents-observation-shape",
    ),
    (lambda: concat_latents([_latents(), _with_obs_noises(_latents())]), r"do not combine", "latents-mixed"),
    (lambda: _sample(predictors=deterministic_predictors(2, 2)), r"2 predictors for 3 levels", "predictor-count"),
    (lambda: _sample(predictors=lambda x, level: x), r"level_predictors", "predictor-not-a-list"),
    (
        lambda: sample(UDPM(PAPER), deterministic_predictors(2, 3), torch.Generator()),
        r"needs the image shape",
        "generator-without-shape",
    ),
    (lambda: interpolation_grid([_latents()] * 3, [0.5], [0.5]), r"exactly 4 corner", "interpolation-corners"),
    (lambda: interpolation_grid([_latents()] * 4, [1.5], [0.5]), r"etas must be .* in \[0, 1\]", "interpolation-eta"),
    (lambda: perturb_noise(_latents(), 1, 2.0, torch.Generator()), r"strength", "perturb-strength"),
    (lambda: swap_noise(_latents(), _latents((1, 3, 32, 32)), 2), r"equal e_2 shapes", "swap-shapes"),
]


@pytest.mark.parametrize(("call", "message"), [p[:2] for p in BAD_INPUTS], ids=[p[2] for p in BAD_INPUTS])
def test_bad_inputs_raise_fastgen_error_naming_the_problem(call, message):
    with pytest.raises(FastgenError, match=message):
        call()
