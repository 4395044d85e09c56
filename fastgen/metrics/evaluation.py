"""Sample quality against a dataset: reference features (cached), scores of generated images, the real-data floor.

A :class:`MetricSuite` holds the reference side (a dataset's training split, its test split for the floor) and the
feature extractors the chosen metrics need; it turns chunks of generated images into features (so generation
runs in constant memory) and features into scores. :class:`EvalResult` is what ``fastgen eval`` reports.

* ``fid``, ``kid``, ``pr`` — FID, KID (± std over subsets), precision / recall (k = 3) on TF-Inception pool3;
* ``classifier`` — a domain classifier's feature Fréchet distance, class coverage, class entropy and the fraction
  of confidently classified images (labelled datasets only).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastgen.data import ImageDataset
from fastgen.errors import FastgenError
from fastgen.metrics.cache import cache_dir, content_hash
from fastgen.metrics.classifier import class_statistics, load_or_train_classifier
from fastgen.metrics.distribution import PR_NEIGHBOURS, kernel_distance, precision_recall
from fastgen.metrics.fid import FIDStatistics, frechet_distance, inception_features
from fastgen.outputs import EVAL_MARKER, JSON, MARKDOWN, NPY, write_file
from fastgen.progress import progress_bar

METRICS = ("fid", "kid", "pr", "classifier")
INCEPTION = "inception-pool3-tf"
CLASSIFIER = "classifier"
INCEPTION_METRICS = ("fid", "kid", "pr")
FID_NOTE = ("FID, KID and precision/recall use the standard TF-Inception pool3 features (8-bit quantised, TF1 bilinear "
            "resize to 299); pytorch-fid numbers are not comparable. FID is biased upwards at small n: compare rows of "
            "equal n, and KID (unbiased) across n.")  # fmt: skip
REFERENCE_SIZE = 10_000  # real training images the generated ones are compared with (a fixed random subset)
REFERENCE_SEED = 0  # the fixed random subset of a large training split that serves as the reference


@dataclass(frozen=True)
class Score:
    """A reported score: its key in :attr:`EvalResult.scores`, its label and which direction is better."""

    key: str
    label: str
    metric: str  # the --metrics name that computes it
    better: str  # "lower" or "higher"

    @property
    def heading(self) -> str:
        return f"{self.label} {'↓' if self.better == 'lower' else '↑'}"


SCORES = (
    Score("fid", "FID", "fid", "lower"),
    Score("kid", "KID ×10³", "kid", "lower"),
    Score("precision", "precision (k=3)", "pr", "higher"),
    Score("recall", "recall (k=3)", "pr", "higher"),
    Score("classifier_fd", "classifier Fréchet distance", "classifier", "lower"),
    Score("coverage", "classes covered (≥ 1/4K of samples)", "classifier", "higher"),
    Score("entropy_bits", "class entropy (bits)", "classifier", "higher"),
    Score("confident", "confidently classified (p ≥ 0.9)", "classifier", "higher"),
)


def parse_metrics(metrics: str | Sequence[str] | None, labelled: bool) -> tuple[str, ...]:
    """The metrics to compute, in :data:`METRICS` order; None: all (``classifier`` only for a ``labelled`` dataset
    with a test split, which the classifier is measured on)."""
    if metrics is None:
        return tuple(name for name in METRICS if labelled or name != "classifier")
    names = [part.strip() for part in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise FastgenError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}")
    if "classifier" in names and not labelled:
        raise FastgenError("the classifier metrics need a labelled dataset with a test split (digits, fashion-mnist); "
                           "leave classifier out of --metrics")  # fmt: skip
    return tuple(name for name in METRICS if name in names)


MIN_IMAGES = {"fid": 2, "kid": 2, "pr": PR_NEIGHBOURS + 1, "classifier": 2}
"""Fewest samples each metric can score (precision/recall: each sample needs k other samples)."""
_INCEPTION_FEATURE_BYTES = 2048 * 8  # pool3 features, float64


def feature_bytes(metrics: Sequence[str], n: int) -> int:
    """Lower bound of the host memory the features of ``n`` samples take for ``metrics`` (kept until scored)."""
    return n * _INCEPTION_FEATURE_BYTES if any(name in INCEPTION_METRICS for name in metrics) else 0


def _subset(dataset: ImageDataset, size: int | None) -> Tensor:
    """The first ``size`` images of a fixed random order of ``dataset`` (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(dataset):
        return dataset.images
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(REFERENCE_SEED))
    return dataset.images[order[:size]]


class MetricSuite:
    """Reference features of ``reference`` (≤ ``reference_size`` images; cached on disk) and of ``held_out`` (the floor)
    for ``metrics``, with the extractors that map generated images to comparable features."""

    def __init__(self, reference: ImageDataset, held_out: ImageDataset | None, metrics: Sequence[str], *,
                 reference_size: int | None = REFERENCE_SIZE, device: torch.device | str = "cpu",
                 progress: bool = False) -> None:  # fmt: skip
        self.metrics = tuple(metrics)
        self.device = torch.device(device)
        self.reference_images = _subset(reference, reference_size)
        self.reference_source = reference.info.source
        self.held_out = held_out
        self.progress = progress
        self.classifier = None
        self.extractors: dict[str, Callable[[Tensor], np.ndarray]] = {}
        if any(name in INCEPTION_METRICS for name in self.metrics):
            self.extractors[INCEPTION] = lambda images: inception_features(images, 50, self.device, progress=False)
        if "classifier" in self.metrics:
            if held_out is None:
                raise FastgenError(f"the classifier metrics need a test split to measure the classifier on; "
                                   f"{reference.info.source} has none")  # fmt: skip
            self.classifier = load_or_train_classifier(reference, held_out, device=self.device, progress=progress)
            self.extractors[CLASSIFIER] = self.classifier
        self.reference = {name: self._cached(self.reference_source, self.reference_images, name) for name in self.extractors}

    def _extractor_id(self, name: str) -> str:
        return self.classifier.name if name == CLASSIFIER and self.classifier is not None else name

    def _cached(self, source: str, images: Tensor, name: str) -> np.ndarray:
        """Features of real ``images`` by extractor ``name``, from the cache or computed (with progress) and cached."""
        extractor = self._extractor_id(name)
        key = content_hash(images, extractor)
        resolution = images.shape[-1]
        path = cache_dir("reference") / f"{source.replace(' ', '-')}-{len(images)}-{resolution}px-{extractor}-{key[:16]}.npy"
        if path.is_file():
            return np.load(path)
        features = self.features_of(images, names=[name], progress_label=f"{name} features of {source}")[name]

        def write(staging: Path) -> None:
            with open(staging, "wb") as file:
                np.save(file, features)

        write_file(path, NPY, write)
        return features

    def features_of(self, images: Tensor, *, names: Sequence[str] | None = None, progress_label: str | None = None,
                    chunk: int = 250) -> dict[str, np.ndarray]:  # fmt: skip
        """The features of ``images`` [N, C, H, W] in [-1, 1] by the extractors ``names`` (default: all)."""
        names = list(self.extractors if names is None else names)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        show = self.progress and progress_label is not None
        with progress_bar(total=len(images), desc=progress_label, disable=not show, unit="img") as bar:
            for batch in images.split(chunk):
                for name in names:
                    parts[name].append(self.extractors[name](batch))
                bar.update(len(batch))
        return {name: np.concatenate(parts[name]) for name in names}

    def scores(self, features: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, float]:
        """Every score of the chosen metrics for generated (or held-out real) ``features`` against the reference."""
        scores: dict[str, float] = {}
        if INCEPTION in features:
            real, fake = self.reference[INCEPTION], features[INCEPTION]
            if "fid" in self.metrics:
                scores["fid"] = frechet_distance(FIDStatistics.from_features(real), FIDStatistics.from_features(fake))
            if "kid" in self.metrics:
                kid = kernel_distance(real, fake, seed=seed)
                scores |= {"kid": kid.mean, "kid_std": kid.std}
            if "pr" in self.metrics:  # equal set sizes: k-NN radii shrink as a set grows
                pr = precision_recall(real[: len(fake)], fake[: len(real)])
                scores |= {"precision": pr.precision, "recall": pr.recall}
        if CLASSIFIER in features and self.classifier is not None:
            real, fake = self.reference[CLASSIFIER], features[CLASSIFIER]
            scores["classifier_fd"] = frechet_distance(FIDStatistics.from_features(real), FIDStatistics.from_features(fake))
            stats = class_statistics(self.classifier.probabilities(fake))
            scores |= {"coverage": stats.coverage, "num_classes": stats.num_classes, "entropy_bits": stats.entropy_bits,
                       "confident": stats.confident}  # fmt: skip
        return scores

    def floor(self, n: int, seed: int = 0) -> tuple[dict[str, float], int]:
        """The scores of ≤ ``n`` real held-out images (the best a model can expect at this n) and how many were used."""
        if self.held_out is None:
            return {}, 0
        images = _subset(self.held_out, n)
        source = self.held_out.info.source
        features = {name: self._cached(source, images, name) for name in self.extractors}
        return self.scores(features, seed), len(images)


@dataclass
class EvalResult:
    """What ``fastgen eval`` measured: scores of ``n`` generated images, the real-data floor, and how they were made."""

    source: str
    family: str
    backend: str
    sampler: dict[str, Any]
    n: int
    seed: int
    dataset: str  # the reference: source, split, size, resolution
    reference_size: int
    metrics: tuple[str, ...]
    scores: dict[str, float]
    floor: dict[str, float]
    floor_n: int
    classifier_accuracy: float | None
    sampling_seconds: float
    samples: Tensor | None = field(default=None, repr=False)  # the first generated images, for a preview grid

    @property
    def notes(self) -> list[str]:
        notes = []
        if any(name in INCEPTION_METRICS for name in self.metrics):
            notes.append(FID_NOTE)
        if self.classifier_accuracy is not None:
            notes.append(f"domain classifier: trained on the training split, {self.classifier_accuracy:.1%} accurate on the "
                         "test split; a class is covered when it holds ≥ 1/(4K) of the samples")  # fmt: skip
        if self.floor_n:
            notes.append(f"floor: {self.floor_n} real test-split images scored like the samples")
        return notes

    def rows(self) -> list[tuple[str, str, str]]:
        """(label, model, floor) for every computed score, formatted for a table."""
        rows = []
        for score in SCORES:
            if score.key in self.scores:
                rows.append((score.heading, _format(score.key, self.scores),
                             _format(score.key, self.floor) if score.key in self.floor else "-"))  # fmt: skip
        return rows

    def title(self) -> str:
        sampler = ", ".join(f"{key}={value}" for key, value in self.sampler.items()) or "default sampler"
        return f"{self.family} {self.source} ({self.backend}; {sampler}): {self.n} samples, seed {self.seed} vs {self.dataset}"

    def to_dict(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if key != "samples"}
        data["metrics"] = list(self.metrics)
        data["notes"] = self.notes
        return data

    def markdown(self) -> str:
        lines = [EVAL_MARKER, f"### {self.title()}", "", f"| score (↓ lower / ↑ higher is better) | model | real test split ({self.floor_n} images) |",
                 "|---|---|---|"]  # fmt: skip
        lines += [f"| {label} | {model} | {floor} |" for label, model, floor in self.rows()]
        lines += ["", f"Sampling: {self.sampling_seconds:.1f} s for {self.n} images."]
        lines += [f"{note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def write_json(self, path: str | Path) -> Path:
        return write_file(path, JSON, lambda staging: staging.write_text(json.dumps(self.to_dict(), indent=2) + "\n"))

    def write_markdown(self, path: str | Path) -> Path:
        return write_file(path, MARKDOWN, lambda staging: staging.write_text(self.markdown()))


def _format(key: str, scores: Mapping[str, float]) -> str:
    value = scores[key]
    if key == "kid":
        return f"{value * 1e3:.2f} ± {scores['kid_std'] * 1e3:.2f}"
    if key == "coverage":
        return f"{int(value)}/{int(scores['num_classes'])}"
    if key in ("precision", "recall", "confident"):
        return f"{value:.3f}"
    return f"{value:.2f}" if key != "classifier_fd" else f"{value:.3f}"
