"""Seeded, exactly resumable batch iteration over an in-memory dataset."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from fastgen.data.dataset import ImageDataset
from fastgen.errors import FastgenError

Batch = tuple[torch.Tensor, torch.Tensor | None]


FINGERPRINT_IMAGES = 256
"""Images (evenly spaced) whose bytes a data fingerprint hashes: cheap for any dataset size, and any edit of a real
dataset (another dataset, other preprocessing, another folder) changes them."""


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """What a run records about its data so that a resume can tell it is the same: source, size and a content hash."""
    images = getattr(dataset, "images", None)
    digest = hashlib.sha256(f"{len(dataset)}".encode())
    if isinstance(images, torch.Tensor):
        chosen = images[torch.linspace(0, len(images) - 1, min(len(images), FINGERPRINT_IMAGES)).long()]
        digest.update(f"{chosen.dtype}{tuple(images.shape)}".encode())
        digest.update(chosen.detach().cpu().contiguous().numpy().tobytes())
    info = getattr(dataset, "info", None)
    return {"source": str(getattr(info, "source", type(dataset).__name__)), "images": len(dataset), "sha256": digest.hexdigest()}


class BatchIterator(Iterator[Batch]):
    """Endless stream of ``(images, labels or None)`` batches, epoch after epoch.

    Epoch ``e`` visits the dataset in the order ``permutation(e)``, which depends only on ``(seed, e)``, so the
    stream is fully described by (epoch, batches already taken in it): ``state_dict()`` saves exactly that and
    ``load_state_dict()`` continues with the very batches an uninterrupted run would have produced.
    The last batch of an epoch is smaller when ``batch_size`` does not divide the dataset, unless ``drop_last``.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int = 0, drop_last: bool = False) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise FastgenError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise FastgenError(f"seed must be a non-negative integer, got {seed!r}")
        if drop_last and batch_size > len(dataset):
            raise FastgenError(
                f"batch_size {batch_size} is larger than the dataset ({len(dataset)} images) with drop_last, "
                "so no batch would ever come; lower batch_size or set drop_last=false"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.position = 0  # batches already taken in the current epoch
        self.fingerprint = data_fingerprint(dataset)
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, its permutation), computed once per epoch

    @property
    def batches_per_epoch(self) -> int:
        """How many batches make one epoch."""
        count, remainder = divmod(len(self.dataset), self.batch_size)
        return count + (remainder > 0 and not self.drop_last)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The dataset order of ``epoch``: a function of (seed, epoch) alone."""
        return torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset)))

    def __next__(self) -> Batch:
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, self.permutation(self.epoch))
        start = self.position * self.batch_size
        indices = self._order[1][start : start + self.batch_size]
        self.position += 1
        if self.position == self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        labels = self.dataset.labels
        return self.dataset.images[indices], None if labels is None else labels[indices]

    def state_dict(self) -> dict[str, int | bool]:
        """Plain dict (JSON- and torch.save-friendly) from which ``load_state_dict`` resumes exactly."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "dataset_size": len(self.dataset),
            "drop_last": self.drop_last,
            "data": self.fingerprint,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; the seed, batch size, dataset size and drop_last must match this iterator's."""
        expected = self.state_dict()
        if set(state) - {"data"} != set(expected) - {"data"}:  # states of an older fastgen have no fingerprint
            raise FastgenError(f"not a BatchIterator state: keys {sorted(state)}, expected {sorted(expected)}")
        saved = state.get("data", self.fingerprint)
        if not isinstance(saved, dict) or saved.get("sha256") != self.fingerprint["sha256"]:
            was = f"{saved.get('source')!r}, {saved.get('images')} images" if isinstance(saved, dict) else repr(saved)
            raise FastgenError(f"the run was trained on other data ({was}; now {self.fingerprint['source']!r}, "
                               f"{self.fingerprint['images']} images, different content); resume with the same data, "
                               "or pass --allow-new-data to continue on this data")  # fmt: skip
        settings = ("seed", "batch_size", "dataset_size", "drop_last")
        different = {key: (state[key], expected[key]) for key in settings if state[key] != expected[key]}
        if different:
            described = ", ".join(f"{key} {saved!r} (now {current!r})" for key, (saved, current) in different.items())
            raise FastgenError(
                f"cannot resume the batch iterator: the checkpoint was made with {described}; "
                "resume with the same data settings to see the same batches"
            )
        epoch, position = state["epoch"], state["position"]
        valid_epoch = isinstance(epoch, int) and epoch >= 0
        if not (valid_epoch and isinstance(position, int) and 0 <= position < self.batches_per_epoch):
            raise FastgenError(f"invalid batch iterator position: epoch {epoch!r}, batch {position!r}")
        self.epoch, self.position = epoch, position
