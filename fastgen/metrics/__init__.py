"""Image metrics: the perceptual training loss and FID.

Backbone weights load when a loss or feature extractor is first used, never at import.
"""

from fastgen.metrics.fid import (
    FIDStatistics,
    compute_statistics,
    fid_between,
    frechet_distance,
    inception_features,
)
from fastgen.metrics.perceptual import PerceptualLoss

__all__ = [
    "FIDStatistics",
    "PerceptualLoss",
    "compute_statistics",
    "fid_between",
    "frechet_distance",
    "inception_features",
]
