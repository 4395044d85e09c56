"""PDDPM: coordinate encoding, multi-scale batches, pyramidal and super-resolution sampling."""

import math

import pytest
import torch
import torch.nn.functional as F

from fastgen.diffusion import ddpm, pddpm
from fastgen.diffusion.ddpm import DiffusionSchedule
from fastgen.diffusion.schedules import make_betas
from fastgen.errors import FastgenError

L = pddpm.NUM_FREQUENCIES
ALPHA_BAR = torch.cumprod(1 - make_betas("linear", 1000), dim=0).float()  # from the definition, not the tables



def scene(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """A continuous two-channel image f(i, j); sampling it at a level's pixel centres is that level's image."""
    return torch.stack([0.8 * torch.sin(2 * math.pi * i) * torch.cos(math.pi * j), i - j], dim=1)


def scene_at(size: int, batch: int = 1) -> torch.Tensor:
    grid = pddpm.coordinate_grid(batch, size, size)
    return scene(grid[:, 0], grid[:, 1])


def scene_oracle(calls: list):
    """Exact ε-predictor for the one-scene data set at *every* resolution.

    It reads the pixel coordinates back from the k = 0 sin/cos channels (γ = atan2(sin πγ, cos πγ)/π), so the
    image it denoises towards exists only if the sampler handed it the right coordinates for the level.
    """

    def predictor(x_with_coords: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x_with_coords.shape[1] == 2 + 4 * L
        x, encoding = x_with_coords[:, :2], x_with_coords[:, 2:]
        calls.append((x.shape[-1], int(t[0]), x))
        i = torch.atan2(encoding[:, 0], encoding[:, 1]) / math.pi
        j = torch.atan2(encoding[:, 2 * L], encoding[:, 2 * L + 1]) / math.pi
        a = ALPHA_BAR[t.long()].view(-1, 1, 1, 1)
        return (x - a.sqrt() * scene(i, j)) / (1 - a).sqrt()

    return predictor


PRIOR_STD = 0.5


def gaussian_prior_predictor(x_with_coords: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact ε for i.i.d. N(0, 0.5²) pixels (resolution-free, so it ignores the coordinates)."""
    x = x_with_coords[:, :1]
    a2 = ALPHA_BAR[t.long()].view(-1, 1, 1, 1)
    return (1 - a2).sqrt() * x / (a2 * PRIOR_STD**2 + 1 - a2)


# ----------------------------------------------------------------------------------------------------------------
# coordinates


def test_coordinate_encoding_layout_range_and_values():
    encoding = pddpm.coordinate_encoding(2, 8, 16)
    assert encoding.shape == (2, 4 * L, 8, 16)
    assert encoding.abs().max() <= 1
    grid = pddpm.coordinate_grid(2, 8, 16)
    assert grid.shape == (2, 2, 8, 16) and grid.min() > 0 and grid.max() < 1
    # float32 angles reach 2^5·π ≈ 100, whose rounding (ulp ≈ 8e-6) bounds the agreement.
    for row, col in [(0, 0), (7, 15), (3, 10)]:
        i, j = (row + 0.5) / 8, (col + 0.5) / 16
        for k in range(L):
            for offset, gamma in ((0, i), (2 * L, j)):  # i's 2L channels, then j's
                angle = 2**k * math.pi * gamma
                assert encoding[1, offset + 2 * k, row, col].item() == pytest.approx(math.sin(angle), abs=2e-5)
                assert encoding[1, offset + 2 * k + 1, row, col].item() == pytest.approx(math.cos(angle), abs=2e-5)
    image = torch.randn(2, 3, 8, 16)
    joined = pddpm.with_coordinates(image)
    assert torch.equal(joined[:, :3], image) and torch.equal(joined[:, 3:], encoding)


def test_coordinates_resized_with_the_image_equal_the_coordinates_built_at_that_size():
    full = pddpm.coordinate_grid(1, 32, 32)
    half = F.interpolate(full, scale_factor=0.5, mode="bilinear", align_corners=False)
    quarter = F.interpolate(half, scale_factor=0.5, mode="bilinear", align_corners=False)
    torch.testing.assert_close(half, pddpm.coordinate_grid(1, 16, 16))
    torch.testing.assert_close(quarter, pddpm.coordinate_grid(1, 8, 8))
    # D by a factor 4 is the same two bilinear halvings, for images as for coordinates.
    image = torch.randn(2, 3, 32, 32)
    halved_twice = F.interpolate(
        F.interpolate(image, scale_factor=0.5, mode="bilinear"), scale_factor=0.5, mode="bilinear"
    )
    torch.testing.assert_close(pddpm.downsample(image, 4), halved_twice)
    torch.testing.assert_close(pddpm.downsample(full, 4), quarter)
    # U^{×2} interpolates linearly: it reproduces the finer grid inside, but clamps the border half-pixel —
    # the reason the samplers build each level's coordinates instead of upsampling them.
    upsampled = pddpm.upsample(half)
    torch.testing.assert_close(upsampled[..., 1:-1, 1:-1], full[..., 1:-1, 1:-1])
    assert not torch.allclose(upsampled[:, 0, 0], full[:, 0, 0])


def test_multiscale_batch_resizes_image_and_coordinates_together():
    x0 = torch.randn(3, 2, 32, 32)
    resolutions = [8, 16, 32]
    first = [pddpm.multiscale_batch(x0, resolutions, generator=torch.Generator().manual_seed(s)) for s in range(12)]
    again = [pddpm.multiscale_batch(x0, resolutions, generator=torch.Generator().manual_seed(s)) for s in range(12)]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))  # seeded: reproducible
    assert {image.shape[-1] for image, _ in first} == set(resolutions)  # every level gets drawn
    for image, encoding in first:
        size = image.shape[-1]
        assert image.shape == (3, 2, size, size) and encoding.shape == (3, 4 * L, size, size)
        reference = x0
        while reference.shape[-1] > size:
            reference = F.interpolate(reference, scale_factor=0.5, mode="bilinear", align_corners=False)
        torch.testing.assert_close(image, reference)
        torch.testing.assert_close(encoding, pddpm.coordinate_encoding(3, size, size))


# ----------------------------------------------------------------------------------------------------------------
# pyramidal generation


def test_pyramidal_sampler_with_a_one_scene_oracle_returns_the_scene_at_every_level():
    """Levels equal the scene; step counts follow T_f / Δt_s·T_s; each restart is q(x_t | upsampled level).

    The restart check standardises the first state of each finer level, (x − √ᾱ·U(prev))/√(1−ᾱ), over
    B·C·H·W ≥ 32 768 values: mean within 5/√n and variance within 5√(2/n) of N(0, 1) (5 SE).
    """
    schedule = DiffusionSchedule.build()
    calls = []
    resolutions = [4, 8, 16]
    batch = 256
    levels = pddpm.sample_pyramidal(
        scene_oracle(calls),
        schedule,
        resolutions,
        batch,
        channels=2,
        coarse_steps=50,
        fine_steps=20,
        renoise_fraction=0.3,
        generator=torch.Generator().manual_seed(0),
        return_levels=True,
    )
    assert [level.shape[-1] for level in levels] == resolutions
    for level in levels:
        torch.testing.assert_close(level, scene_at(level.shape[-1], batch), rtol=0, atol=1e-4)
    t_start, fine = round(0.3 * 999), round(0.3 * 20)
    assert [(size, t) for size, t, _ in calls] == (
        [(4, t) for t in ddpm.ddim_timesteps(50, 999)]
        + [(8, t) for t in ddpm.ddim_timesteps(fine, t_start)]
        + [(16, t) for t in ddpm.ddim_timesteps(fine, t_start)]
    )
    a = ALPHA_BAR[t_start]
    for previous, (_, _, first_state) in zip(levels[:2], [calls[50], calls[50 + fine]], strict=True):
        upsampled = F.interpolate(previous, scale_factor=2, mode="bilinear", align_corners=False)
        standardised = (first_state - a.sqrt() * upsampled) / (1 - a).sqrt()
        n = standardised.numel()
        assert abs(standardised.mean().item()) < 5 / math.sqrt(n)
        assert abs(standardised.var().item() - 1) < 5 * math.sqrt(2 / n)


def test_pyramidal_sampler_is_reproducible_from_a_seed_or_explicit_noise():
    schedule = DiffusionSchedule.build()
    kwargs = dict(coarse_steps=10, fine_steps=10, renoise_fraction=0.5)
    first = pddpm.sample_pyramidal(
        gaussian_prior_predictor, schedule, [4, 8], 2, 1, generator=torch.Generator().manual_seed(4), **kwargs
    )
    generator = torch.Generator().manual_seed(4)
    x_T = ddpm.gaussian_noise((2, 1, 4, 4), generator=generator)
    again = pddpm.sample_pyramidal(
        gaussian_prior_predictor, schedule, [4, 8], x_start=x_T, generator=generator, **kwargs
    )
    assert first.shape == (2, 1, 8, 8) and first.std() > 0.1
    torch.testing.assert_close(again, first, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# super-resolution


def test_super_resolution_with_a_one_scene_oracle_returns_the_scene():
    schedule = DiffusionSchedule.build()
    measurement = pddpm.downsample(scene_at(16, batch=4), 4)
    calls = []
    out = pddpm.sample_super_resolution(
        scene_oracle(calls),
        schedule,
        measurement,
        [4, 8, 16],
        guidance_scale=2.0,
        fine_steps=10,
        renoise_fraction=0.4,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out, scene_at(16, batch=4), rtol=0, atol=1e-4)
    assert {size for size, _, _ in calls} == {8, 16}  # no reverse process at the measurement's resolution


def test_consistency_gradient_step_reduces_the_measurement_residual():
    """One eq.-10 step on x_t lowers ‖ȳ − D x0_hat(x_t)‖; its gradient is 2k·Dᵀ(D x0_hat − ȳ) for the linear prior.

    D is the 4×4 block mean, so Dᵀ spreads each residual uniformly with weight 1/16; k = dx0_hat/dx_t.
    """
    torch.manual_seed(0)
    schedule = DiffusionSchedule.build()
    measurement = PRIOR_STD * torch.randn(2, 1, 4, 4)
    x_t = torch.randn(2, 1, 16, 16)
    t = torch.tensor([100.0, 100.0])
    predictor = lambda x, t: gaussian_prior_predictor(pddpm.with_coordinates(x), t)  # noqa: E731

    def residual(x: torch.Tensor) -> torch.Tensor:
        x0_hat, _ = ddpm.model_output_to_x0_eps(schedule, x, t, predictor(x, t))
        return pddpm.consistency_loss(x0_hat, measurement)

    _, gradient = ddpm.guidance_gradient(
        predictor, schedule, x_t, t, lambda x0_hat: pddpm.consistency_loss(x0_hat, measurement)
    )
    a2 = ALPHA_BAR[100]
    gain = a2.sqrt() * PRIOR_STD**2 / (a2 * PRIOR_STD**2 + 1 - a2)
    x0_hat, _ = ddpm.model_output_to_x0_eps(schedule, x_t, t, predictor(x_t, t))
    spread = (
        torch.repeat_interleave(torch.repeat_interleave(pddpm.downsample(x0_hat, 4) - measurement, 4, 2), 4, 3) / 16
    )
    torch.testing.assert_close(gradient, 2 * gain * spread, rtol=1e-4, atol=1e-6)
    before = residual(x_t)
    after = residual(x_t - 6.0 * gradient)
    assert (after < 0.5 * before).all(), (before, after)


def test_super_resolution_guidance_pulls_the_result_onto_the_measurement():
    """Same seed with and without guidance: the guided result is far more consistent with ȳ."""
    schedule = DiffusionSchedule.build()
    truth = PRIOR_STD * torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    measurement = pddpm.downsample(truth, 4)
    residuals = []
    for scale in (0.0, 2.0):
        out = pddpm.sample_super_resolution(
            gaussian_prior_predictor,
            schedule,
            measurement,
            [4, 8, 16],
            guidance_scale=scale,
            fine_steps=20,
            renoise_fraction=0.5,
            generator=torch.Generator().manual_seed(1),
        )
        residuals.append(pddpm.consistency_loss(out, measurement).mean())
    assert residuals[1] < 0.5 * residuals[0], residuals


# ----------------------------------------------------------------------------------------------------------------
# bad input

SCHEDULE = DiffusionSchedule.build()
PYRAMID = dict(predictor=gaussian_prior_predictor, schedule=SCHEDULE, batch_size=1, channels=1)
LR = torch.zeros(1, 1, 4, 4)
BAD_INPUTS = {
    "not successive x2": (lambda: pddpm.sample_pyramidal(resolutions=[8, 12], **PYRAMID), "successive"),
    "descending": (lambda: pddpm.sample_pyramidal(resolutions=[16, 8], **PYRAMID), "successive"),
    "empty resolutions": (lambda: pddpm.sample_pyramidal(resolutions=[], **PYRAMID), "non-empty"),
    "fractional resolution": (lambda: pddpm.sample_pyramidal(resolutions=[8.0], **PYRAMID), "positive integers"),
    "T_s > T_f": (
        lambda: pddpm.sample_pyramidal(resolutions=[4, 8], coarse_steps=50, fine_steps=100, **PYRAMID),
        r"T_s\) = 100 must not exceed coarse_steps \(T_f\) = 50",
    ),
    "T_f > T": (lambda: pddpm.sample_pyramidal(resolutions=[4], coarse_steps=1001, **PYRAMID), r"coarse_steps \(T_f\)"),
    "T_s > T": (lambda: pddpm.sample_pyramidal(resolutions=[4], fine_steps=1001, **PYRAMID), r"fine_steps \(T_s\)"),
    "dt_s zero": (lambda: pddpm.sample_pyramidal(resolutions=[4], renoise_fraction=0.0, **PYRAMID), "renoise_fraction"),
    "dt_s above one": (
        lambda: pddpm.sample_pyramidal(resolutions=[4], renoise_fraction=1.5, **PYRAMID),
        "renoise_fraction",
    ),
    "no restart steps": (
        lambda: pddpm.sample_pyramidal(resolutions=[4], fine_steps=2, renoise_fraction=0.1, **PYRAMID),
        "rounds to 0",
    ),
    "x_start off the coarsest level": (
        lambda: pddpm.sample_pyramidal(gaussian_prior_predictor, SCHEDULE, [4, 8], x_start=torch.zeros(1, 1, 8, 8)),
        "coarsest resolution",
    ),
    "no batch size": (lambda: pddpm.sample_pyramidal(gaussian_prior_predictor, SCHEDULE, [4]), "exactly one"),
    "batch size and x_start": (
        lambda: pddpm.sample_pyramidal(resolutions=[4], x_start=torch.zeros(1, 1, 4, 4), **PYRAMID),
        "exactly one",
    ),
    "zero channels": (
        lambda: pddpm.sample_pyramidal(gaussian_prior_predictor, SCHEDULE, [4], batch_size=2, channels=0),
        "positive integers",
    ),
    "x0 not divisible": (lambda: pddpm.multiscale_batch(torch.zeros(1, 1, 24, 24), [8, 16]), "divisible"),
    "x0 not square": (lambda: pddpm.multiscale_batch(torch.zeros(1, 1, 32, 16), [8, 16]), "square"),
    "measurement size": (
        lambda: pddpm.sample_super_resolution(gaussian_prior_predictor, SCHEDULE, LR, [8, 16]),
        "measurement must be 8x8",
    ),
    "single SR level": (
        lambda: pddpm.sample_super_resolution(gaussian_prior_predictor, SCHEDULE, LR, [4]),
        "two resolutions",
    ),
    "negative guidance": (
        lambda: pddpm.sample_super_resolution(gaussian_prior_predictor, SCHEDULE, LR, [4, 8], guidance_scale=-1.0),
        r"guidance \(λ\) must be ≥ 0",
    ),
    "non-integer SR factor": (lambda: pddpm.consistency_loss(torch.zeros(1, 1, 10, 10), LR), "integer factor"),
    "grid channels": (lambda: pddpm.encode_coordinates(torch.zeros(1, 3, 4, 4)), r"\[B, 2, H, W\]"),
    "zero frequencies": (lambda: pddpm.encode_coordinates(torch.zeros(1, 2, 4, 4), 0), "num_frequencies"),
    "zero height": (lambda: pddpm.coordinate_grid(1, 0, 4), "height"),
    "downsample factor": (lambda: pddpm.downsample(torch.zeros(1, 1, 6, 6), 4), "factor"),
    "encoding size": (
        lambda: pddpm.with_coordinates(torch.zeros(1, 1, 4, 4), pddpm.coordinate_encoding(1, 8, 8)),
        "coordinate encoding",
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_a_named_fastgen_error(name):
    call, message = BAD_INPUTS[name]
    with pytest.raises(FastgenError, match=message):
        call()
