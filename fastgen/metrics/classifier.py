"""A small domain classifier for labelled datasets (digits, Fashion-MNIST): features and class metrics.

The classifier is trained once, seeded, on a dataset's *training* split exactly as a model of that resolution,
channel count and fit sees it (so generated images go in as they come out, no resizing), and cached on disk under
the content hash of the training and test images, the architecture and the training settings. Its held-out
accuracy on the test split is recorded with it.

What it gives a set of images: penultimate-layer features (for a Fréchet distance, like FID's Inception pool3) and
class probabilities, from which :func:`class_statistics` measures mode collapse (class coverage, histogram entropy)
and recognisability (the fraction of images classified with confidence ≥ 0.9).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastgen.data import ImageDataset
from fastgen.errors import FastgenError
from fastgen.metrics.cache import cache_dir, content_hash
from fastgen.outputs import TORCH_FILE, write_file
from fastgen.progress import progress_bar

CONFIDENT = 0.9  # a sample counts as recognisable when the classifier gives one class at least this probability
# A class is covered when it holds ≥ 1/(COVERAGE_SHARE·K) of the samples: a quarter of its fair share.
COVERAGE_SHARE = 4


WORKING_RESOLUTION = 8  # larger inputs are brought down to this by cheap strided convs (digits' native size)


@dataclass(frozen=True)
class ClassifierSettings:
    """Architecture and training of the domain classifier: part of its cache key."""

    width: int = 32
    steps: int = 500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def _conv(inputs: int, outputs: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1), nn.BatchNorm2d(outputs), nn.ReLU()]


class DomainClassifier(nn.Module):
    """Strided convs down to 8×8, then conv, stride-2 conv to 4×4, conv, global average pool (the features), linear.

    The cost barely grows with the input size: a 16×16 digit (8×8 upsampled) or a 32×32 garment is first reduced
    by stride-2 convs, which is where little is lost and most compute would otherwise go.
    """

    def __init__(self, channels: int, resolution: int, num_classes: int, width: int) -> None:
        super().__init__()
        if resolution < WORKING_RESOLUTION:
            raise FastgenError(f"the domain classifier needs images of at least {WORKING_RESOLUTION}×{WORKING_RESOLUTION} "
                               f"pixels, got {resolution}")  # fmt: skip
        layers: list[nn.Module] = []
        while resolution > WORKING_RESOLUTION:
            layers += _conv(channels, width, stride=2)
            channels, resolution = width, -(-resolution // 2)
        layers += _conv(channels, width) + _conv(width, 2 * width, stride=2) + _conv(2 * width, 2 * width)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, num_classes)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate features [N, 2·width] of images in [-1, 1]."""
        return self.body(images).mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


@dataclass(frozen=True)
class ClassStatistics:
    """How generated images spread over the K classes of a classifier."""

    coverage: int  # classes holding ≥ 1/(4K) of the samples
    num_classes: int
    entropy_bits: float  # of the histogram of argmax classes; log2(K) when uniform
    confident: float  # fraction of samples whose top class probability is ≥ 0.9


def class_statistics(probabilities: np.ndarray) -> ClassStatistics:
    """Coverage, histogram entropy and confident fraction of class ``probabilities`` [N, K] (rows sum to 1)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) == 0:
        raise FastgenError(f"class statistics need probabilities [N ≥ 1, K], got shape {probabilities.shape}")
    count, num_classes = probabilities.shape
    histogram = np.bincount(probabilities.argmax(axis=1), minlength=num_classes) / count
    nonzero = histogram[histogram > 0]
    return ClassStatistics(
        coverage=int((histogram >= 1 / (COVERAGE_SHARE * num_classes)).sum()),
        num_classes=num_classes,
        entropy_bits=max(0.0, float(-(nonzero * np.log2(nonzero)).sum())),  # one class alone would give -0.0
        confident=float((probabilities.max(axis=1) >= CONFIDENT).mean()),
    )


class TrainedClassifier:
    """A trained :class:`DomainClassifier` (eval mode) with its held-out accuracy; calls map images to features."""

    def __init__(self, network: DomainClassifier, accuracy: float, key: str, device: torch.device) -> None:
        self.network = network.to(device).eval()
        self.accuracy = accuracy
        self.device = device
        self.name = f"classifier-{key[:16]}"  # names its reference features in the cache

    @torch.inference_mode()
    def __call__(self, images: Tensor, batch_size: int = 512) -> np.ndarray:
        """Features [N, D] (float64) of images [N, C, H, W] in [-1, 1]."""
        return np.concatenate([self.network.features(batch.to(self.device, torch.float32)).double().cpu().numpy()
                               for batch in images.split(batch_size)])  # fmt: skip

    @torch.inference_mode()
    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities [N, K] from features given by a call."""
        logits = self.network.head(torch.from_numpy(features).to(self.device, torch.float32))
        return logits.softmax(dim=1).double().cpu().numpy()


def _check_labelled(dataset: ImageDataset, what: str) -> int:
    if dataset.labels is None:
        raise FastgenError(f"classifier metrics need a labelled dataset; the {what} split of {dataset.info.source} has no labels")
    return int(dataset.labels.max()) + 1


def load_or_train_classifier(train: ImageDataset, test: ImageDataset, *, settings: ClassifierSettings = ClassifierSettings(),
                             device: torch.device | str = "cpu", progress: bool = False) -> TrainedClassifier:  # fmt: skip
    """The classifier of ``train`` (held-out accuracy on ``test``), from the cache or trained now and cached."""
    num_classes = max(_check_labelled(train, "training"), _check_labelled(test, "test"))
    channels, resolution = train.images.shape[1], train.images.shape[-1]
    key = content_hash(train.images, train.labels, test.images, test.labels, asdict(settings))
    path = cache_dir("classifiers") / f"{train.info.source.split()[0]}-{resolution}px-{key[:16]}.pt"
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the caller's RNG
        torch.manual_seed(settings.seed)
        network = DomainClassifier(channels, resolution, num_classes, settings.width)
    device = torch.device(device)
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(stored["state_dict"])
        return TrainedClassifier(network, float(stored["accuracy"]), key, device)
    _train(network, train, settings, device, progress)
    classifier = TrainedClassifier(network, 0.0, key, device)
    predicted = classifier.probabilities(classifier(test.images)).argmax(axis=1)
    classifier.accuracy = float((predicted == test.labels.numpy()).mean())
    state = {name: value.cpu() for name, value in network.state_dict().items()}
    write_file(path, TORCH_FILE, lambda staging: torch.save({"state_dict": state, "accuracy": classifier.accuracy}, staging))
    return classifier


def _train(network: DomainClassifier, data: ImageDataset, settings: ClassifierSettings, device: torch.device,
           progress: bool) -> None:  # fmt: skip
    """Adam with a cosine learning rate over seeded shuffled batches, 1-pixel random shifts as augmentation."""
    generator = torch.Generator().manual_seed(settings.seed)
    network.to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    order = torch.empty(0, dtype=torch.int64)
    for _ in progress_bar(range(settings.steps), desc="training the domain classifier", disable=not progress):
        if len(order) < settings.batch_size:
            order = torch.cat([order, torch.randperm(len(data), generator=generator)])
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        images = _shift(data.images[batch], generator).to(device)
        loss = F.cross_entropy(network(images), data.labels[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    network.eval()


def _shift(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image moved by up to one pixel in x and y (border replicated): cheap robustness to imprecise strokes."""
    dy, dx = torch.randint(-1, 2, (2,), generator=generator).tolist()
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    height, width = images.shape[-2:]
    return padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
