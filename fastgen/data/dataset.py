"""The in-memory dataset and ``load_dataset``, the one entry point a recipe's ``[data]`` table feeds."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fastgen.data.preprocess import FITS, prepare_images
from fastgen.data.sources import RawImages, load_digits, load_fashion_mnist, load_folder, load_npz
from fastgen.errors import FastgenError

SOURCES: dict[str, Callable[..., RawImages]] = {
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "folder": load_folder,
    "npz": load_npz,
}


@dataclass(frozen=True)
class DatasetInfo:
    """Where the images came from and what was skipped while loading them."""

    source: str
    skipped_corrupt: int = 0
    corrupt_files: tuple[str, ...] = ()


@dataclass
class ImageDataset:
    """Images ``[N, C, H, W]`` float32 in [-1, 1], optional int64 class labels ``[N]``, and load info."""

    images: torch.Tensor
    labels: torch.Tensor | None
    info: DatasetInfo

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) == 0:
            shape = list(self.images.shape)
            raise FastgenError(f"a dataset needs images of shape [N, C, H, W] with N >= 1, got {shape}")
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise FastgenError(f"labels of shape {list(self.labels.shape)} do not match {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int | None:
        """Number of classes (largest label + 1), or None for an unlabelled dataset."""
        return None if self.labels is None else int(self.labels.max()) + 1


def load_dataset(name: str, resolution: int, channels: int, fit: str = "resize", **options: Any) -> ImageDataset:
    """Load a dataset into memory as ``[N, channels, resolution, resolution]`` float32 in [-1, 1].

    ``name`` and ``options``:
      - ``fashion-mnist``: ``split`` = "train" (60 000) | "test" (10 000); ``root`` (default the Debian package's
        folder, /usr/share/datasets/fashion-mnist). Labelled.
      - ``digits``: scikit-learn's 8×8 digits; ``split`` = "all" (1 797, default) | "train" (1 438) | "test" (359). Labelled.
      - ``folder``: ``path``; every PNG/JPEG below it, recursively; corrupt files are skipped, counted in
        ``info.skipped_corrupt`` and logged as a warning.
      - ``npz``: ``path``, ``key`` (default "images"; NHWC, NCHW or NHW; uint8 or float in [0, 1]),
        ``labels_key`` (optional).
    ``fit`` is "resize", "pad" or "resize_pad" (see ``prepare_images``); grey sources become RGB when
    ``channels`` is 3, colour ones grey (ITU-R 601 luma) when it is 1.
    """
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise FastgenError(f"resolution must be a positive integer, got {resolution!r}")
    if channels not in (1, 3):
        raise FastgenError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if fit not in FITS:
        raise FastgenError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    if not isinstance(name, str) or name not in SOURCES:
        raise FastgenError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}")
    loader = SOURCES[name]
    _check_options(name, loader, options)
    raw = loader(**options)
    labels = None if raw.labels is None else torch.from_numpy(raw.labels.astype("int64"))
    info = DatasetInfo(raw.description, len(raw.corrupt_files), tuple(raw.corrupt_files))
    return ImageDataset(prepare_images(raw.arrays, resolution, channels, fit), labels, info)


def has_splits(name: str) -> bool:
    """Whether dataset ``name`` has "train" and "test" splits (its loader takes ``split``): fashion-mnist, digits."""
    return name in SOURCES and "split" in inspect.signature(SOURCES[name]).parameters


def _check_options(name: str, loader: Callable[..., RawImages], options: dict[str, Any]) -> None:
    """Turn a mistyped or missing recipe option into a FastgenError instead of a TypeError from the loader."""
    parameters = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        accepted = ", ".join(parameters) or "none"
        raise FastgenError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; it accepts: {accepted} (and fit)"
        )
    wrong = sorted(option for option, value in options.items() if not isinstance(value, str | os.PathLike))
    if wrong:  # every source option is a path, a name or a key
        raise FastgenError(f"dataset {name!r} option(s) {', '.join(wrong)} must be strings (e.g. path = \"images/\")")
    required = [option for option, parameter in parameters.items() if parameter.default is parameter.empty]
    missing = [option for option in required if option not in options]
    if missing:
        raise FastgenError(f"dataset {name!r} needs the option(s) {', '.join(missing)}")
