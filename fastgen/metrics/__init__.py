"""Image metrics: the perceptual training loss, FID, full-reference PSNR/SSIM, KID, k-NN precision/recall, a domain
classifier's class statistics, and :class:`MetricSuite` / :class:`EvalResult` behind ``fastgen eval``.

Backbone weights load when a loss or feature extractor is first used, never at import.
"""

from fastgen.metrics.classifier import ClassStatistics, class_statistics
from fastgen.metrics.distribution import KID, PrecisionRecall, kernel_distance, precision_recall
from fastgen.metrics.evaluation import METRICS, EvalResult, MetricSuite
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
    "KID",
    "METRICS",
    "ClassStatistics",
    "EvalResult",
    "FIDStatistics",
    "MetricSuite",
    "PerceptualLoss",
    "PrecisionRecall",
    "class_statistics",
    "compute_statistics",
    "fid_between",
    "frechet_distance",
    "inception_features",
    "kernel_distance",
    "precision_recall",
    "psnr",
    "ssim",
]
