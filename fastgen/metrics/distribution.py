"""Distances between two sets of feature vectors (real and generated): KID and k-NN precision / recall.

Both work on any features [N, D] (Inception pool3, a domain classifier's penultimate layer …); FID is
:func:`fastgen.metrics.fid.frechet_distance` on the same features' statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastgen.errors import FastgenError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3
# Rows of a pairwise-distance block: bounds memory at ~8 MB × the other set's size / 1000.
_DISTANCE_ROWS = 1024


def _features(features: np.ndarray, what: str, least: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < least:
        raise FastgenError(f"{what} needs features [N ≥ {least}, D], got shape {features.shape}")
    return features


def _same_dimension(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise FastgenError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")


@dataclass(frozen=True)
class KID:
    """Kernel Inception Distance: the mean and standard deviation of the unbiased MMD² over random subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int


def kernel_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                    seed: int = 0) -> KID:  # fmt: skip
    """KID (Bińkowski et al. 2018): unbiased MMD² with the kernel k(x, y) = (xᵀy / D + 1)³.

    Each of ``subsets`` draws m = min(``subset_size``, N_real, N_fake) vectors of each set without replacement;
    the MMD² estimate of a subset leaves the diagonal out of the within-set terms, so its expectation is the
    population MMD² (it can be slightly negative when the sets match).
    """
    real, fake = _features(real, "KID", 2), _features(fake, "KID", 2)
    _same_dimension(real, fake)
    if subsets < 1 or subset_size < 2:
        raise FastgenError(f"KID needs ≥ 1 subset of ≥ 2 vectors, got {subsets} subsets of {subset_size}")
    m = min(subset_size, len(real), len(fake))
    dimension = real.shape[1]
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for index in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        within = (x @ x.T / dimension + 1) ** 3 + (y @ y.T / dimension + 1) ** 3
        across = (x @ y.T / dimension + 1) ** 3
        estimates[index] = (within.sum() - np.trace(within)) / (m * (m - 1)) - 2 * across.mean()
    return KID(float(estimates.mean()), float(estimates.std()), subsets, m)


def _kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each vector to its k-th nearest other vector of the same set."""
    radii = np.empty(len(features))
    for start in range(0, len(features), _DISTANCE_ROWS):
        block = _distances(features[start : start + _DISTANCE_ROWS], features)
        radii[start : start + len(block)] = np.partition(block, k, axis=1)[:, k]  # column 0 is the vector itself
    return radii


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(squared.clip(min=0))  # rounding makes a vector's distance to itself slightly negative


def _fraction_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of ``points`` inside at least one ball (``centres``, ``radii``), boundary included."""
    inside = 0
    for start in range(0, len(points), _DISTANCE_ROWS):
        block = _distances(points[start : start + _DISTANCE_ROWS], centres)
        inside += int(((block - radii[None, :]) <= 0).any(axis=1).sum())
    return inside / len(points)


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision (generated samples on the real manifold) and recall (real samples on the generated one)."""

    precision: float
    recall: float
    k: int


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = PR_NEIGHBOURS) -> PrecisionRecall:
    """Kynkäänniemi et al. 2019: each set's manifold is the union of balls around its vectors with radius the
    distance to the k-th nearest neighbour in that set; precision = fraction of ``fake`` inside the real manifold,
    recall = fraction of ``real`` inside the fake one. Compare sets of equal size: radii shrink as a set grows."""
    real, fake = _features(real, "precision/recall", k + 1), _features(fake, "precision/recall", k + 1)
    _same_dimension(real, fake)
    if k < 1:
        raise FastgenError(f"precision/recall needs k ≥ 1 neighbours, got {k}")
    precision = _fraction_inside(fake, real, _kth_neighbour_radii(real, k))
    recall = _fraction_inside(real, fake, _kth_neighbour_radii(fake, k))
    return PrecisionRecall(precision, recall, k)
