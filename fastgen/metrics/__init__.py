"""Image metrics: the perceptual training loss, FID, and full-reference PSNR/SSIM.

Backbone weights load when a loss or feature extractor is first used, never at import.
"""

from fastgen.metrics.fid import (
    FIDStatistics,
    compute_statistics,
    fid_between,
    frechet_distance,
    inception_features,
)
from fastgen.metrics.fidelity import psnr, ssim
from fastgen.metrics.perceptual import PerceptualLoss

__all__ = [
    "FIDStatistics",
    "PerceptualLoss",
    "compute_statistics",
    "fid_between",
    "frechet_distance",
    "inception_features",
    "psnr",
    "ssim",
]
