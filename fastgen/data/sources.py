"""Image sources: each loader decodes one kind of dataset into NHWC arrays, before any preprocessing.

Every loader's keyword parameters are the options a recipe's ``[data]`` table may set for that source.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fastgen.errors import FastgenError

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow modes that hold one grey channel; everything else (palette, RGBA, CMYK, …) is decoded as RGB.
_GREY_MODES = ("1", "L", "LA", "La")
# Pillow modes of grey images with more than 8 bits per pixel (16-bit PNGs: "I;16…", or "I" in older Pillows): read
# as float in [0, 1]. Converting them to "L" would clip every value above 255 to white.
_DEEP_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_DEEP_GREY_MAX = 65535.0
_IDX_UINT8 = 0x08
DIGITS_SPLITS = ("all", "train", "test")
DIGITS_TEST_EVERY = 5  # every 5th digit of each class is held out: a 20% test split


@dataclass
class RawImages:
    """Decoded images: NHWC arrays (uint8, or float32 in [0, 1]) whose sizes may differ between arrays."""

    arrays: list[np.ndarray]
    labels: np.ndarray | None
    description: str
    corrupt_files: list[str] = field(default_factory=list)


def load_fashion_mnist(split: str = "train", root: str | os.PathLike[str] = FASHION_MNIST_DIR) -> RawImages:
    """Fashion-MNIST from the Debian package: 60 000 (train) or 10 000 (test) 28×28 grey images, labels 0–9."""
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise FastgenError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    folder = Path(root)
    images_file = folder / f"{prefixes[split]}-images-idx3-ubyte.gz"
    labels_file = folder / f"{prefixes[split]}-labels-idx1-ubyte.gz"
    for file in (images_file, labels_file):
        if not file.is_file():
            raise FastgenError(
                f"Fashion-MNIST is not installed: {file} is missing; install it with "
                f"`apt-get install {FASHION_MNIST_PACKAGE}` (Debian/Ubuntu, as root)"
            )
    images = _read_idx(images_file, ndim=3)
    labels = _read_idx(labels_file, ndim=1)
    if len(images) != len(labels):
        raise FastgenError(
            f"Fashion-MNIST files disagree: {len(images)} images but {len(labels)} labels in {folder}; "
            f"reinstall {FASHION_MNIST_PACKAGE}"
        )
    return RawImages([images[..., np.newaxis]], labels, f"fashion-mnist {split}")


def _read_idx(file: Path, ndim: int) -> np.ndarray:
    """A gzipped IDX file of uint8 values: magic 0x0000, type 0x08, ndim, then big-endian uint32 sizes."""
    try:
        with gzip.open(file, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as error:
        raise FastgenError(f"cannot read {file} ({error}); reinstall {FASHION_MNIST_PACKAGE}") from error
    magic, header = bytes((0, 0, _IDX_UINT8, ndim)), 4 + 4 * ndim
    sizes = np.frombuffer(data[4:header], ">u4").tolist() if data.startswith(magic) and len(data) >= header else None
    if sizes is None or len(data) != header + math.prod(sizes):
        raise FastgenError(f"{file} is not a valid {ndim}-D uint8 IDX file; reinstall {FASHION_MNIST_PACKAGE}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(sizes)


def load_digits(split: str = "all") -> RawImages:
    """scikit-learn's 1 797 8×8 grey handwritten digits (values 0–16), labels 0–9: a tiny set for tests.

    ``split``: "all" (default), or "test" (every ``DIGITS_TEST_EVERY``-th image of each class: 355) and "train" (the
    other 1 442): a fixed split, stratified by class and interleaved so both span the same writers.
    """
    if split not in DIGITS_SPLITS:
        raise FastgenError(f"digits split must be one of {', '.join(map(repr, DIGITS_SPLITS))}, got {split!r}")
    try:
        # Imported here: scikit-learn is an optional extra and slow to import, and only this source needs it.
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        message = "the 'digits' dataset needs scikit-learn; install it with `pip install scikit-learn`"
        raise FastgenError(message) from error
    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    labels = digits.target
    if split != "all":
        rank_in_class = np.zeros(len(labels), dtype=np.int64)
        for label in np.unique(labels):
            members = labels == label
            rank_in_class[members] = np.arange(members.sum())
        is_test = rank_in_class % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
        keep = is_test if split == "test" else ~is_test
        images, labels = images[keep], labels[keep]
    return RawImages([images], labels, "digits" if split == "all" else f"digits {split}")


def load_folder(path: str | os.PathLike[str]) -> RawImages:
    """Every PNG/JPEG under ``path`` (recursive, sorted by path); undecodable ones are skipped and counted."""
    root = Path(path)
    files = image_files_under(root)
    arrays, corrupt, first_problem = [], [], ""
    for file in files:
        try:
            arrays.append(decode_image(file))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            corrupt.append(str(file))
            first_problem = first_problem or f"{file}: {error}"
    if not arrays:
        raise FastgenError(f"all {len(files)} image files under {root} are unreadable (first: {first_problem})")
    if corrupt:
        log.warning("skipped %d corrupt image file(s) under %s (first: %s)", len(corrupt), root, first_problem)
    return RawImages(arrays, None, f"folder {root}", corrupt)


def image_files_under(root: Path) -> list[Path]:
    """Every PNG/JPEG file under the folder ``root``, recursively, sorted by path (at least one)."""
    if not root.is_dir():
        raise FastgenError(f"image folder {root} does not exist or is not a directory")
    # Sorted so the dataset order, and therefore every seeded shuffle, is the same on every filesystem.
    files = sorted(file for file in root.rglob("*") if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file())
    if not files:
        raise FastgenError(f"no PNG/JPEG images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return files


def _is_grey(image: Image.Image) -> bool:
    """A grey mode, or a palette image whose colours are all grey (how some tools store grey PNGs)."""
    if image.mode in _GREY_MODES:
        return True
    if image.mode not in ("P", "PA"):
        return False
    used = [colour for count, colour in image.convert("RGB").getcolors(maxcolors=256) or []]
    return bool(used) and all(r == g == b for r, g, b in used)


def decode_image(file: Path) -> np.ndarray:
    """One image as a ``[1, H, W, C]`` array, C = 1 for grey images and 3 otherwise: uint8, or float32 in [0, 1]
    for 16-bit grey images."""
    with Image.open(file) as image:
        # Cameras store JPEGs sideways plus an EXIF rotation tag; apply it so photos stand upright.
        upright = ImageOps.exif_transpose(image)
        if upright.mode in _DEEP_GREY_MODES:
            pixels = np.clip(np.asarray(upright, dtype=np.float32) / _DEEP_GREY_MAX, 0, 1)
        else:
            pixels = np.asarray(upright.convert("L" if _is_grey(upright) else "RGB"))
    return pixels.reshape(1, pixels.shape[0], pixels.shape[1], -1)


def load_npz(path: str | os.PathLike[str], key: str = "images", labels_key: str | None = None) -> RawImages:
    """Images (and optionally integer labels) from a ``numpy.savez`` archive.

    The ``key`` array may be NHWC, NCHW (1 or 3 channels; a trailing axis of size 1 or 3 means NHWC) or NHW
    (grey); dtype uint8 (0–255) or float (values in [0, 1]). ``labels_key`` names a 1-D integer array with one
    label per image.
    """
    file = Path(path)
    names = [key] if labels_key is None else [key, labels_key]
    arrays = _read_npz(file, names)
    images = _as_nhwc(arrays[key], f"{file}[{key!r}]")
    labels = None if labels_key is None else arrays[labels_key]
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu"):
        raise FastgenError(
            f"labels {file}[{labels_key!r}] must be a 1-D integer array with one label per image ({len(images)}), "
            f"got shape {list(labels.shape)} of {labels.dtype}"
        )
    return RawImages([images], labels, f"npz {file}[{key!r}]")


def _read_npz(file: Path, names: list[str]) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise FastgenError(f"npz file {file} does not exist")
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise FastgenError(f"cannot read {file} as a .npz archive ({error}); write it with numpy.savez") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FastgenError(
            f"{file} holds a single .npy array, not a .npz archive; write it with numpy.savez(path, images=...)"
        )
    with archive:
        missing = [name for name in names if name not in archive.files]
        if missing:
            raise FastgenError(
                f"{file} has no array named {missing[0]!r}; it holds {sorted(archive.files)}: "
                "set key/labels_key to one of them"
            )
        try:
            return {name: archive[name] for name in names}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise FastgenError(f"{file} is damaged ({error}); write it again with numpy.savez") from error


def _as_nhwc(images: np.ndarray, what: str) -> np.ndarray:
    """Check dtype, value range and layout of an array of images; return it NHWC."""
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or len(images) == 0:
        raise FastgenError(f"{what} must hold at least one image as NHWC, NCHW or NHW, got shape {list(images.shape)}")
    if images.shape[-1] not in (1, 3):
        if images.shape[1] not in (1, 3):
            raise FastgenError(f"{what} has shape {list(images.shape)}: no channel axis of size 1 or 3 (NHWC or NCHW)")
        images = images.transpose(0, 2, 3, 1)
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind != "f":
        raise FastgenError(f"{what} is {images.dtype}; images must be uint8 (0–255) or float (0–1)")
    low, high = float(images.min()), float(images.max())
    if not 0 <= low <= high <= 1:  # also false for NaN
        raise FastgenError(f"{what} holds floats in [{low}, {high}]; float images must lie in [0, 1]")
    return images.astype(np.float32, copy=False)
