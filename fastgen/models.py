"""A trained model as the torch backend samples it: the model a recipe describes, a checkpoint's model rebuilt
on a device, and the device names every verb takes.

Below :mod:`fastgen.api` (which re-exports these), so that the runtime, export and bench layers load models
without importing the API layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastgen.errors import FastgenError
from fastgen.families import CallSite, Family, ImageSpec, ModelConfig, Sites, build_family, family_class, module_sites
from fastgen.training import load_for_inference

MODEL_KEYS = {"family", "resolution", "channels"}


def model_config_from_recipe(sections: Mapping[str, Any]) -> ModelConfig:
    """The model a recipe describes: ``[model]`` (family, resolution, channels, networks), ``[diffusion]``, ``[loss]``."""
    model = dict(sections.get("model", {}))
    missing = sorted(MODEL_KEYS - set(model))
    if missing:
        raise FastgenError(f"recipe [model] needs {', '.join(missing)} (e.g. family = \"udpm\", resolution = 32, channels = 1)")
    family = family_class(model.pop("family"))
    image = ImageSpec(channels=model.pop("channels"), resolution=model.pop("resolution"))
    diffusion = dict(sections.get("diffusion", {}))
    networks = family.network_configs(image, diffusion, model, sections.get("loss", {}))
    return ModelConfig(family=family.name, image=image, diffusion=diffusion, networks=networks)


@dataclass
class LoadedModel:
    """A trained model ready to sample with the torch backend: its family, networks and call sites.

    ``family``, ``sites`` and ``device`` are all :func:`sample` needs, so a runtime bundle
    (``fastgen.runtime``) that has the same three samples the same way; ``data`` (the recipe's ``[data]`` table,
    what it was trained on) is what ``fastgen.api.evaluate`` compares with.
    """

    family: Family
    networks: dict[str, nn.Module]
    checkpoint: Path
    device: torch.device
    call_sites: list[CallSite] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sites(self) -> Sites:
        return module_sites(self.call_sites)

    @property
    def config(self) -> ModelConfig:
        return self.family.config


def load_model(checkpoint: str | Path, *, device: str | torch.device = "cpu", weights: str = "ema") -> LoadedModel:
    """Rebuild a checkpoint's model (``weights`` 'ema' or 'model') in eval mode on ``device``."""
    loaded = load_for_inference(checkpoint, weights)
    try:
        model_config = loaded.config["objective"]["model"]
    except (KeyError, TypeError):
        raise FastgenError(f"{loaded.path} is not a fastgen model checkpoint (its config.json has no objective.model)") from None
    family = build_family(ModelConfig.from_dict(model_config))
    device = resolve_device(device)
    networks = {"model": family.build_networks()["model"]}
    try:
        networks["model"].load_state_dict(loaded.state_dict)
    except RuntimeError as exc:
        raise FastgenError(f"{loaded.path}: weights do not fit the network its config.json describes ({str(exc).splitlines()[0]})") from None
    networks["model"].to(device).eval()
    data = dict((loaded.config.get("recipe") or {}).get("data") or {})
    return LoadedModel(family, networks, loaded.path, device, family.call_sites(networks), data)


def parse_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device, whether or not this machine has it; anything else is an error."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda") or (parsed.type == "cpu" and parsed.index):
        raise FastgenError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return parsed


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; else ``cpu``, ``cuda`` or ``cuda:N`` of a GPU torch sees."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = parse_device(device)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FastgenError(f"device {device!r} asked for but torch sees no CUDA GPU; use --device cpu")
        if (resolved.index or 0) >= count:
            raise FastgenError(f"device {device!r}: torch sees {count} CUDA GPU(s), cuda:0 … cuda:{count - 1}")
    return resolved
