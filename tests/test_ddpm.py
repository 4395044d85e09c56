"""DDPM / DDIM math: forward marginals, step algebra, and samplers driven by exact (closed-form) predictors.

Statistical tests state their tolerance as a number of standard errors (SE) of the estimate for the sample
size used; every test is seeded, so the outcome is deterministic and the tolerance documents the margin.
"""

import math

import pytest
import torch

from fastgen.diffusion import ddpm
from fastgen.diffusion.ddpm import DiffusionSchedule
from fastgen.diffusion.schedules import make_betas
from fastgen.errors import FastgenError

T = 1000


def reference_alpha_bar(kind: str) -> torch.Tensor:
    """ᾱ_t straight from the definition, independent of the schedule object's tables (float64)."""
    return torch.cumprod(1 - make_betas(kind, T), dim=0)


def delta_oracle(schedule: DiffusionSchedule, image: torch.Tensor):
    """The exact predictor when the data is the single ``image``: ε = (x_t − √ᾱ_t·image)/√(1−ᾱ_t), or the image."""
    alpha_bar = reference_alpha_bar("linear").float()

    def predictor(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if schedule.prediction_type == "x0":
            return image.expand_as(x)
        a = alpha_bar[t.long()].view(-1, 1, 1, 1)
        return (x - a.sqrt() * image) / (1 - a).sqrt()

    return predictor


# Gaussian data N(m, diag(s²)) on a 1×4×4 image, and its exact posterior-mean predictors.
GAUSS_MEAN = torch.linspace(-0.6, 0.6, 16).view(1, 1, 4, 4)
GAUSS_STD = torch.linspace(1.0, 0.5, 16).view(1, 1, 4, 4)


def gaussian_oracle(prediction_type: str, kind: str = "linear"):
    """Exact posterior means for x0 ~ N(m, s²) and x_t = a·x0 + b·ε (a = √ᾱ_t, b = √(1−ᾱ_t)).

    E[ε|x_t] = b(x_t − a m)/(a²s² + b²) and E[x0|x_t] = m + a s²(x_t − a m)/(a²s² + b²).
    """
    alpha_bar = reference_alpha_bar(kind).float()

    def predictor(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a2 = alpha_bar[t.long()].view(-1, 1, 1, 1)
        a, b = a2.sqrt(), (1 - a2).sqrt()
        centred = (x - a * GAUSS_MEAN) / (a2 * GAUSS_STD**2 + b**2)
        return b * centred if prediction_type == "eps" else GAUSS_MEAN + a * GAUSS_STD**2 * centred

    return predictor



# ----------------------------------------------------------------------------------------------------------------
# schedule and forward process


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_tables_follow_the_definitions(kind):
    schedule = DiffusionSchedule.build(kind, dtype=torch.float64)
    betas = make_betas(kind, T)
    alpha_bar = reference_alpha_bar(kind)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    torch.testing.assert_close(schedule.alphas_cumprod, alpha_bar)
    torch.testing.assert_close(schedule.posterior_variance, betas * (1 - alpha_bar_prev) / (1 - alpha_bar))
    # μ̃ of Ho et al. eq. 7 written on (x0, x_t); at t = 0 the posterior collapses onto x0.
    torch.testing.assert_close(schedule.posterior_mean_coef_x0, alpha_bar_prev.sqrt() * betas / (1 - alpha_bar))
    assert schedule.posterior_std[0] == 0 and schedule.posterior_mean_coef_x0[0] == pytest.approx(1.0)
    moved = schedule.to(dtype=torch.float32)
    assert moved.alphas_cumprod.dtype == torch.float32 and moved.prediction_type == schedule.prediction_type
    assert moved.num_steps == T


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_sample_marginal_matches_the_forward_chain(kind):
    """x_t from q_sample and from running the Markov chain x_t = √(1−β_t)x_{t−1} + √β_t z agree with N(√ᾱ x0, 1−ᾱ).

    N = 4000 chains of a 2×2 image. Tolerance 5 SE: per-pixel mean SE = √((1−ᾱ)/N); the variance, equal for
    all pixels, is pooled over the 4·N centred values: relative SE = √(2/(4N)) ≈ 1.1 %.
    """
    torch.manual_seed(0)
    schedule = DiffusionSchedule.build(kind, dtype=torch.float64)
    betas = make_betas(kind, T)
    alpha_bar = reference_alpha_bar(kind)
    x0 = torch.tensor([-0.9, -0.3, 0.4, 1.0], dtype=torch.float64).view(1, 1, 2, 2)
    n = 4000
    checkpoints = {0, 9, 99, 499, 999}
    x = x0.expand(n, 1, 2, 2)
    chain = {}
    for t in range(T):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn_like(x)
        if t in checkpoints:
            chain[t] = x
    for t in sorted(checkpoints):
        closed_form = ddpm.q_sample(
            schedule, x0.expand(n, 1, 2, 2), torch.full((n,), t), torch.randn(n, 1, 2, 2, dtype=torch.float64)
        )
        mean, var = alpha_bar[t].sqrt() * x0, 1 - alpha_bar[t]
        for draws in (chain[t], closed_form):
            residual = draws - mean
            assert (residual.mean(0).abs() < 5 * math.sqrt(var / n)).all(), (t, residual.mean(0))
            assert abs(residual.var().item() / var - 1) < 5 * math.sqrt(2 / (4 * n)), (t, residual.var() / var)


def test_training_loss_is_the_per_sample_mse_to_the_prediction_target():
    torch.manual_seed(0)
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0.0, 500.0, 999.0])
    for prediction_type, target in (("eps", noise), ("x0", x0)):
        schedule = DiffusionSchedule.build(prediction_type=prediction_type)
        offsets = torch.tensor([0.0, 0.5, 2.0]).view(3, 1, 1, 1)
        loss = ddpm.training_loss(schedule, target + offsets, x0, noise, t)
        torch.testing.assert_close(loss, offsets.flatten() ** 2)


def test_model_output_conversion_is_consistent_between_prediction_types():
    """eps → (x0, eps) and x0 → (x0, eps) describe the same point: x_t = √ᾱ x0 + √(1−ᾱ) eps; clipping keeps that."""
    torch.manual_seed(0)
    alpha_bar = reference_alpha_bar("linear")  # float64 throughout: 1 − ᾱ_0 = 1e-4 would cancel badly in float32
    eps_schedule = DiffusionSchedule.build(dtype=torch.float64)
    x0_schedule = DiffusionSchedule.build(prediction_type="x0", dtype=torch.float64)
    x_t, eps = 3 * torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    t = torch.tensor([0.0, 10.0, 400.0, 999.0])
    a = alpha_bar[t.long()].view(-1, 1, 1, 1)
    x0_hat, eps_hat = ddpm.model_output_to_x0_eps(eps_schedule, x_t, t, eps)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(a.sqrt() * x0_hat + (1 - a).sqrt() * eps_hat, x_t)
    x0_again, eps_again = ddpm.model_output_to_x0_eps(x0_schedule, x_t, t, x0_hat)
    torch.testing.assert_close(x0_again, x0_hat)
    torch.testing.assert_close(eps_again, eps)
    clipped, eps_clipped = ddpm.model_output_to_x0_eps(eps_schedule, x_t, t, eps, clip_x0=True)
    torch.testing.assert_close(clipped, x0_hat.clamp(-1, 1))
    assert (clipped != x0_hat).any()  # the clamp was active
    torch.testing.assert_close(a.sqrt() * clipped + (1 - a).sqrt() * eps_clipped, x_t)


def test_ddim_with_eta_one_and_unit_stride_is_the_ancestral_step():
    torch.manual_seed(0)
    schedule = DiffusionSchedule.build("cosine", dtype=torch.float64)
    x_t, out, noise = (torch.randn(5, 2, 3, 3, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([1.0, 2.0, 300.0, 998.0, 999.0])
    ancestral = ddpm.ancestral_step(schedule, x_t, t, out, noise)
    torch.testing.assert_close(ddpm.ddim_step(schedule, x_t, t, t - 1, out, 1.0, noise), ancestral)
    # At t = 0 both land on x0_hat with no noise.
    zero = torch.zeros(5)
    x0_hat, _ = ddpm.model_output_to_x0_eps(schedule, x_t, zero, out)
    torch.testing.assert_close(ddpm.ancestral_step(schedule, x_t, zero, out, noise), x0_hat)
    torch.testing.assert_close(ddpm.ddim_step(schedule, x_t, zero, zero - 1, out, 1.0, noise), x0_hat)


# ----------------------------------------------------------------------------------------------------------------
# samplers on a one-image data set: the oracle is exact, so is the whole reverse process


@pytest.mark.parametrize(
    "sampler, kwargs",
    [
        (ddpm.sample_ancestral, {}),
        (ddpm.sample_ddim, {"num_steps": 50, "eta": 0.0}),
        (ddpm.sample_ddim, {"num_steps": 50, "eta": 1.0}),
    ],
    ids=["ancestral", "ddim-eta0", "ddim-eta1"],
)
@pytest.mark.parametrize("prediction_type", ["eps", "x0"])
def test_one_image_oracle_recovers_the_image_through_exact_marginals(sampler, kwargs, prediction_type):
    """Returns the image, and every visited x_t is distributed as q(x_t | image) = N(√ᾱ image, 1−ᾱ).

    N = 1000 samples of a 1×4×4 image: 16 000 standardised values per timestep; tolerance 5 SE
    (mean SE = 1/√16000, variance SE = √(2/16000)).
    """
    schedule = DiffusionSchedule.build(prediction_type=prediction_type)
    image = torch.linspace(-1, 1, 16).view(1, 1, 4, 4)
    alpha_bar = reference_alpha_bar("linear").float()
    oracle = delta_oracle(schedule, image)
    visited = []

    def recording(x, t):
        visited.append((int(t[0]), x))
        return oracle(x, t)

    n = 1000
    out = sampler(recording, schedule, (n, 1, 4, 4), generator=torch.Generator().manual_seed(0), **kwargs)
    torch.testing.assert_close(out, image.expand_as(out), rtol=0, atol=1e-4)
    values = 16 * n
    for t, x in visited[:: max(1, len(visited) // 10)]:
        standardised = (x - alpha_bar[t].sqrt() * image) / (1 - alpha_bar[t]).sqrt()
        assert abs(standardised.mean().item()) < 5 / math.sqrt(values), t
        assert abs(standardised.var().item() - 1) < 5 * math.sqrt(2 / values), t


# ----------------------------------------------------------------------------------------------------------------
# samplers on Gaussian data with the closed-form optimal predictor


@pytest.mark.parametrize(
    "sampler, kwargs, discretisation_shrink",
    [(ddpm.sample_ancestral, {}, 0.03), (ddpm.sample_ddim, {"num_steps": 200, "eta": 0.0}, 0.03)],
    ids=["ancestral-1000", "ddim-200"],
)
def test_gaussian_data_mean_and_covariance_are_reproduced(sampler, kwargs, discretisation_shrink):
    """Samples of N(m, diag(s²)), s ∈ [0.5, 1], with the exact E[ε|x_t]: mean m and covariance diag(s²).

    N = 3000 samples of 16 pixels, 5-SE tolerances: per-pixel mean ±5 s/√N; per-pixel variance ratio
    ±5√(2/N) ≈ ±13 %; their average over the 16 independent pixels ±5√(2/N)/4 ≈ ±3.2 %; correlations ±5.5/√N
    (the largest of 120 pairs). Both samplers are first-order discretisations that shrink the variance of
    s = 0.5 pixels by ≤ 3 % (β̃ variance / DDIM's Euler step, computed by propagating the 1-D Gaussian
    exactly), so the ratio window is widened by that much on the low side only.
    """
    schedule = DiffusionSchedule.build()
    n = 3000
    samples = sampler(
        gaussian_oracle("eps"), schedule, (n, 1, 4, 4), generator=torch.Generator().manual_seed(1), **kwargs
    )
    flat = samples.flatten(1).double()
    mean, std = GAUSS_MEAN.flatten().double(), GAUSS_STD.flatten().double()
    assert ((flat.mean(0) - mean).abs() < 5 * std / math.sqrt(n)).all()
    covariance = torch.cov(flat.T)
    ratio = covariance.diag() / std**2
    per_pixel, pooled = 5 * math.sqrt(2 / n), 5 * math.sqrt(2 / n) / 4
    assert (ratio > 1 - per_pixel - discretisation_shrink).all() and (ratio < 1 + per_pixel).all(), ratio
    assert 1 - pooled - discretisation_shrink < ratio.mean() < 1 + pooled, ratio.mean()
    correlation = covariance / torch.outer(covariance.diag().sqrt(), covariance.diag().sqrt())
    assert (correlation - torch.eye(16, dtype=torch.float64)).abs().max() < 5.5 / math.sqrt(n)


@pytest.mark.parametrize(
    "sampler, kwargs",
    [(ddpm.sample_ancestral, {}), (ddpm.sample_ddim, {"num_steps": 50, "eta": 1.0})],
    ids=["ancestral", "ddim"],
)
def test_x0_prediction_agrees_with_eps_prediction_given_equivalent_oracles(sampler, kwargs):
    results = []
    for prediction_type in ("eps", "x0"):
        schedule = DiffusionSchedule.build(prediction_type=prediction_type)
        results.append(
            sampler(
                gaussian_oracle(prediction_type),
                schedule,
                (64, 1, 4, 4),
                generator=torch.Generator().manual_seed(3),
                **kwargs,
            )
        )
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-3)
    assert results[0].std() > 0.3  # a real sample, not a collapsed constant


def test_ddim_eta_one_over_all_timesteps_reproduces_the_ancestral_sampler():
    schedule = DiffusionSchedule.build("cosine")
    runs = [
        ddpm.sample_ancestral(
            gaussian_oracle("eps", "cosine"), schedule, (8, 1, 4, 4), generator=torch.Generator().manual_seed(5)
        ),
        ddpm.sample_ddim(
            gaussian_oracle("eps", "cosine"),
            schedule,
            (8, 1, 4, 4),
            num_steps=T,
            eta=1.0,
            generator=torch.Generator().manual_seed(5),
        ),
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-4)


def test_restart_from_an_intermediate_time_visits_the_requested_timesteps(capsys):
    schedule = DiffusionSchedule.build()
    image = torch.full((1, 1, 2, 2), 0.25)
    oracle = delta_oracle(schedule, image)
    seen = []

    def recording(x, t):
        assert t.dtype == torch.float32 and t.shape == (x.shape[0],)
        seen.append(int(t[0]))
        return oracle(x, t)

    x_start = ddpm.q_sample(schedule, image.expand(3, 1, 2, 2), torch.full((3,), 300), torch.randn(3, 1, 2, 2))
    out = ddpm.sample_ddim(recording, schedule, x_start=x_start, t_start=300, num_steps=7, progress=True)
    assert seen == ddpm.ddim_timesteps(7, 300) and seen[0] == 300 and seen[-1] == 0 and len(set(seen)) == 7
    assert "DDIM" in capsys.readouterr().err  # the tqdm bar
    torch.testing.assert_close(out, image.expand_as(out), rtol=0, atol=1e-5)
    seen.clear()
    ddpm.sample_ancestral(recording, schedule, x_start=x_start, t_start=300)
    assert seen == list(range(300, -1, -1))


def test_generator_and_explicit_initial_noise_make_runs_reproducible():
    schedule = DiffusionSchedule.build()
    run = lambda **kw: ddpm.sample_ddim(gaussian_oracle("eps"), schedule, num_steps=20, eta=1.0, **kw)  # noqa: E731
    first = run(shape=(4, 1, 4, 4), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        run(shape=(4, 1, 4, 4), generator=torch.Generator().manual_seed(7)), first, rtol=0, atol=0
    )
    assert not torch.allclose(run(shape=(4, 1, 4, 4), generator=torch.Generator().manual_seed(8)), first)
    # The initial noise is the generator's first draw, so passing it explicitly gives the same run.
    generator = torch.Generator().manual_seed(7)
    x_T = ddpm.gaussian_noise((4, 1, 4, 4), generator=generator)
    torch.testing.assert_close(run(x_start=x_T, generator=generator), first, rtol=0, atol=0)
    # Same seed, other dtype: the noise is drawn in float32 first, so the images agree to float32 precision.
    double = run(shape=(4, 1, 4, 4), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), first, rtol=0, atol=1e-4)


def test_clip_x0_keeps_the_image_estimate_in_range():
    schedule = DiffusionSchedule.build()
    image = torch.tensor([-3.0, -0.5, 0.5, 3.0]).view(1, 1, 2, 2)
    out = ddpm.sample_ddim(delta_oracle(schedule, image), schedule, (2, 1, 2, 2), num_steps=10, clip_x0=True)
    torch.testing.assert_close(out, image.clamp(-1, 1).expand_as(out), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_low_precision_images_sample_without_overflow(dtype, kind):
    """Half-precision states: ᾱ_0 = 0.9999 rounds to 1 in float16, and 1/√ᾱ_{T-1}·|x_T| (cosine: 20 291·|x_T|)
    exceeds float16's 65 504 once |x_T| > 3.2 — so x_T spans ±4 here."""
    schedule = DiffusionSchedule.build(kind)
    image = torch.linspace(-1, 1, 16).view(1, 1, 4, 4)
    alpha_bar = reference_alpha_bar(kind)

    def oracle(x, t):
        a = alpha_bar[t.long()].view(-1, 1, 1, 1)
        return (x.double() - a.sqrt() * image) / (1 - a).sqrt()  # float64: the sampler casts it to the state's dtype

    x_T = torch.linspace(-4, 4, 32, dtype=dtype).view(2, 1, 4, 4)
    runs = [
        ddpm.sample_ddim(
            oracle, schedule, x_start=x_T, num_steps=20, eta=eta, generator=torch.Generator().manual_seed(0)
        )
        for eta in (0.0, 1.0)
    ]
    runs.append(ddpm.sample_ancestral(oracle, schedule, x_start=x_T, generator=torch.Generator().manual_seed(0)))
    for out in runs:
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), image.double().expand_as(out), rtol=0, atol=4 * torch.finfo(dtype).eps)


def test_guidance_gradient_differentiates_through_the_predictor():
    """Gaussian oracle: x0_hat = m + k(x_t − a m), k = a s²/(a²s² + b²), so ∇‖x0_hat − y‖² = 2k(x0_hat − y)."""
    torch.manual_seed(0)
    schedule = DiffusionSchedule.build()
    x_t, target = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([50.0, 700.0])
    a2 = reference_alpha_bar("linear").float()[t.long()].view(-1, 1, 1, 1)
    gain = a2.sqrt() * GAUSS_STD**2 / (a2 * GAUSS_STD**2 + 1 - a2)
    out, gradient = ddpm.guidance_gradient(
        gaussian_oracle("eps"), schedule, x_t, t, lambda x0: (x0 - target).square().flatten(1).sum(1)
    )
    x0_hat, _ = ddpm.model_output_to_x0_eps(schedule, x_t, t, out)
    torch.testing.assert_close(gradient, 2 * gain * (x0_hat - target), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# bad input


def _image(*shape):
    return torch.zeros(*shape)


SCHEDULE = DiffusionSchedule.build()
ZERO_PREDICTOR = lambda x, t: torch.zeros_like(x)  # noqa: E731
BAD_INPUTS = {
    "unknown schedule": (lambda: DiffusionSchedule.build("quadratic"), "unknown beta schedule"),
    "unknown prediction type": (lambda: DiffusionSchedule.build(prediction_type="v"), "unknown prediction_type"),
    "beta out of range": (lambda: DiffusionSchedule.from_betas(torch.tensor([0.5, 1.0])), "every beta"),
    "integer schedule dtype": (lambda: SCHEDULE.to(dtype=torch.int32), "floating point"),
    "x0 not 4-D": (lambda: ddpm.q_sample(SCHEDULE, _image(2, 4, 4), torch.zeros(2), _image(2, 4, 4)), "x0 must be"),
    "noise shape": (
        lambda: ddpm.q_sample(SCHEDULE, _image(2, 1, 4, 4), torch.zeros(2), _image(2, 1, 4, 3)),
        "noise must",
    ),
    "t above range": (
        lambda: ddpm.q_sample(SCHEDULE, _image(1, 1, 2, 2), torch.tensor([1000.0]), _image(1, 1, 2, 2)),
        "out of range",
    ),
    "t negative": (
        lambda: ddpm.q_sample(SCHEDULE, _image(1, 1, 2, 2), torch.tensor([-1]), _image(1, 1, 2, 2)),
        "out of range",
    ),
    "t fractional": (
        lambda: ddpm.q_sample(SCHEDULE, _image(1, 1, 2, 2), torch.tensor([2.5]), _image(1, 1, 2, 2)),
        "integer",
    ),
    "t per-sample shape": (
        lambda: ddpm.q_sample(SCHEDULE, _image(2, 1, 2, 2), torch.zeros(3), _image(2, 1, 2, 2)),
        "one timestep per sample",
    ),
    "loss output shape": (
        lambda: ddpm.training_loss(
            SCHEDULE, _image(2, 3, 2, 2), _image(2, 1, 2, 2), _image(2, 1, 2, 2), torch.zeros(2)
        ),
        "model_out must",
    ),
    "step output shape": (
        lambda: ddpm.ancestral_step(SCHEDULE, _image(1, 1, 2, 2), torch.zeros(1), _image(1, 1, 4, 4), None),
        "model_out must",
    ),
    "eta above one": (
        lambda: ddpm.ddim_step(
            SCHEDULE, _image(1, 1, 2, 2), torch.ones(1), torch.zeros(1), _image(1, 1, 2, 2), 1.5, None
        ),
        "eta must",
    ),
    "zero ddim steps": (
        lambda: ddpm.sample_ddim(ZERO_PREDICTOR, SCHEDULE, (1, 1, 2, 2), num_steps=0),
        "num_steps must",
    ),
    "too many ddim steps": (
        lambda: ddpm.sample_ddim(ZERO_PREDICTOR, SCHEDULE, (1, 1, 2, 2), num_steps=T + 1),
        "num_steps must",
    ),
    "shape and x_start": (
        lambda: ddpm.sample_ancestral(ZERO_PREDICTOR, SCHEDULE, (1, 1, 2, 2), x_start=_image(1, 1, 2, 2)),
        "exactly one",
    ),
    "neither shape nor x_start": (lambda: ddpm.sample_ancestral(ZERO_PREDICTOR, SCHEDULE), "exactly one"),
    "t_start without x_start": (
        lambda: ddpm.sample_ancestral(ZERO_PREDICTOR, SCHEDULE, (1, 1, 2, 2), t_start=10),
        "needs x_start",
    ),
    "t_start out of range": (
        lambda: ddpm.sample_ddim(ZERO_PREDICTOR, SCHEDULE, x_start=_image(1, 1, 2, 2), t_start=T),
        "t_start must",
    ),
    "bad shape": (lambda: ddpm.sample_ddim(ZERO_PREDICTOR, SCHEDULE, (1, 2, 2)), "shape must be four"),
    "predictor output shape": (
        lambda: ddpm.sample_ddim(lambda x, t: x[:, :, :1], SCHEDULE, (1, 1, 2, 2), num_steps=2),
        "predictor output must",
    ),
    "not a schedule": (lambda: ddpm.sample_ddim(ZERO_PREDICTOR, "linear", (1, 1, 2, 2)), "DiffusionSchedule"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_a_named_fastgen_error(name):
    call, message = BAD_INPUTS[name]
    with pytest.raises(FastgenError, match=message):
        call()
