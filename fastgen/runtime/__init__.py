"""Sample from a bundle: ``load_bundle(dir, backend=…)`` gives what :func:`fastgen.api.sample` needs.

The family and its sampler are rebuilt from the manifest alone (no checkpoint); the call sites are the
bundle's graphs or engines, opened by a backend (:mod:`fastgen.runtime.backends`). ``backend='torch'`` is
the bundle's source checkpoint through :func:`fastgen.api.load_model`, for comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fastgen.api import LoadedModel, load_model
from fastgen.errors import FastgenError
from fastgen.export.manifest import MANIFEST_FILE, Manifest, read_manifest
from fastgen.families import Family, ModelConfig, build_family
from fastgen.runtime.backends import BACKENDS, Backend, BundleSite, check_site_inputs

BACKEND_NAMES = (*BACKENDS, "torch")


@dataclass
class Bundle:
    """A loaded bundle: ``family``, ``sites`` and ``device`` are what :func:`fastgen.api.sample` uses."""

    directory: Path
    manifest: Manifest
    family: Family
    sites: dict[str, BundleSite]
    device: torch.device
    backend: str


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a bundle directory (has a manifest), as opposed to a checkpoint or run directory."""
    return (Path(path) / MANIFEST_FILE).is_file()


def load_bundle(directory: str | Path, *, backend: str = "onnxruntime", device: str | torch.device = "cpu",
                verify: bool = True) -> Bundle | LoadedModel:  # fmt: skip
    """Load a bundle for sampling; ``verify`` checks every file's SHA-256 against the manifest first.

    ``backend``: ``onnxruntime`` (CPU, or CUDA with onnxruntime-gpu), ``tensorrt`` (the bundle's engines, CUDA only)
    or ``torch`` (the source checkpoint recorded in the manifest; returns that :class:`fastgen.api.LoadedModel`).
    """
    if backend not in BACKEND_NAMES:
        raise FastgenError(f"unknown runtime backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
    directory = Path(directory)
    manifest = read_manifest(directory, verify=verify)
    device = torch.device(device)
    if backend == "torch":
        checkpoint = Path(manifest.source.get("checkpoint", ""))
        if not checkpoint.is_dir():
            raise FastgenError(f"bundle {directory} was exported from {checkpoint}, which is not here; the torch backend needs "
                               "that checkpoint: sample it directly, or use backend onnxruntime/tensorrt")  # fmt: skip
        return load_model(checkpoint, device=device, weights=manifest.source.get("weights", "ema"))
    family = build_family(ModelConfig.from_dict(manifest.model))
    opener: Backend = BACKENDS[backend](device)
    sites = {record.name: BundleSite(record, opener.open(directory, record), opener.batch_range(record)) for record in manifest.sites}
    return Bundle(directory, manifest, family, sites, device, backend)


def load_for_sampling(path: str | Path, *, backend: str | None = None, device: str | torch.device = "cpu",
                      weights: str = "ema") -> Bundle | LoadedModel:  # fmt: skip
    """What ``fastgen sample PATH`` samples: a bundle (``backend``, default onnxruntime) or a checkpoint/run directory."""
    if is_bundle(path):
        return load_bundle(path, backend=backend or "onnxruntime", device=device)
    if backend not in (None, "torch"):
        raise FastgenError(f"{path} is a checkpoint, which samples with torch; --backend {backend} needs a bundle (fastgen export)")
    return load_model(path, device=device, weights=weights)


__all__ = ["BACKEND_NAMES", "Bundle", "BundleSite", "check_site_inputs", "is_bundle", "load_bundle", "load_for_sampling"]
