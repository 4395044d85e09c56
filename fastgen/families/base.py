"""What every model family gives the rest of fastgen: networks, call sites, a sampler over call sites.

A family ties one process of ``fastgen.diffusion`` to networks of ``fastgen.nets`` without either knowing
the other (diffusers' model + scheduler). The unit everything downstream shares is the *call site*: one
network call of the sampler at a fixed spatial size (UDPM level 2, the DDPM denoiser at 32×32 …). A call site
is a small ``nn.Module`` whose ``forward`` takes exactly the named inputs of its ``TensorSpec``s, so it is
at once what the torch backend runs, what ``fastgen export`` writes to ONNX, and what an ONNX Runtime or
TensorRT engine replaces. Samplers only see ``sites``: a mapping from call-site name to a callable.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fastgen.errors import FastgenError
from fastgen.nets.config import NetConfig
from fastgen.nets.registry import build_network, config_from_dict
from fastgen.sampling import interpreter
from fastgen.sampling.noise import Row, seed_rows
from fastgen.sampling.program import Program
from fastgen.training.loop import Objective

Sites = Mapping[str, Callable[..., Tensor]]
"""Call-site name → callable taking the site's inputs positionally (torch modules or engine wrappers)."""


@dataclass(frozen=True)
class TensorSpec:
    """A named network input or output; ``shape`` excludes the (dynamic) batch dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    # Largest value of a per-sample scalar input (a timestep index): what validation inputs should span.
    max_value: float = 1.0


@dataclass
class CallSite:
    """One network call of a sampler at a fixed size: the unit of export and of runtime backends."""

    name: str
    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec

    def example_inputs(self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
        """Random inputs of the right shapes: images N(0, 1), scalar inputs (timesteps) uniform in [0, max_value]."""
        return tuple(
            (torch.rand((batch_size, *spec.shape), generator=generator) * spec.max_value).to(device)
            if not spec.shape
            else torch.randn((batch_size, *spec.shape), generator=generator).to(device)
            for spec in self.inputs
        )


CHANNEL_KINDS = {1: "grey", 3: "RGB"}
"""What an image of 1 or 3 channels is called in messages."""


@dataclass(frozen=True)
class ImageSpec:
    """The images a model makes: channels × resolution × resolution, values in [-1, 1]."""

    channels: int
    resolution: int

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise FastgenError(f"image channels must be 1 or 3, got {self.channels!r}")
        if not isinstance(self.resolution, int) or self.resolution < 4:
            raise FastgenError(f"image resolution must be an integer ≥ 4, got {self.resolution!r}")


@dataclass
class ModelConfig:
    """Everything that rebuilds a trained model: stored as ``config.json`` beside the weights.

    ``diffusion`` holds the family's process settings, ``networks`` one network config per named network.
    """

    family: str
    image: ImageSpec
    diffusion: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, NetConfig] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "image": dataclasses.asdict(self.image),
            "diffusion": dict(self.diffusion),
            "networks": {name: config.to_dict() for name, config in self.networks.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        try:
            return cls(
                family=data["family"],
                image=ImageSpec(**data["image"]),
                diffusion=dict(data.get("diffusion", {})),
                networks={name: config_from_dict(config) for name, config in data.get("networks", {}).items()},
            )
        except FastgenError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a part of the wrong JSON type
            raise FastgenError(f"model config is incomplete or malformed ({exc}); it needs family, image, diffusion, networks") from exc


class Family(ABC):
    """A model family: its process settings, its networks' configs, its call sites and its sampler."""

    name: ClassVar[str]
    sampler_options: ClassVar[tuple[str, ...]] = ()
    samplers: ClassVar[dict[str, dict[str, Any]]] = {"sample": {}}
    """The family's named samplers (name → sampler options), as benchmarks and reports list them."""
    speed_baseline: ClassVar[tuple[str, str] | None] = None
    """(family, named sampler) whose images/s bench reports set this family's against, or None."""

    def __init__(self, config: ModelConfig) -> None:
        if config.family != self.name:
            raise FastgenError(f"config is for family {config.family!r}, not {self.name!r}")
        self.config = config
        self.image = config.image
        # The program of the default sampler options when one was stored (a bundle's): run as it is, not rebuilt.
        self.default_program: Program | None = None

    @classmethod
    @abstractmethod
    def network_configs(cls, image: ImageSpec, diffusion: Mapping[str, Any], model: Mapping[str, Any],
                        loss: Mapping[str, Any]) -> dict[str, NetConfig]:
        """Network configs from a recipe's ``[model]`` table (``network = {preset = …, <UNetConfig fields>}`` …) and ``[loss]``."""

    @abstractmethod
    def objective(self, networks: dict[str, nn.Module], loss: Mapping[str, Any]) -> Objective:
        """The training objective (``fastgen.training`` protocol) over fresh networks, from a recipe's ``[loss]``."""

    def build_networks(self) -> dict[str, nn.Module]:
        """Fresh networks for every named config (weights are loaded by the caller)."""
        return {name: build_network(config) for name, config in self.config.networks.items()}

    @abstractmethod
    def call_sites(self, networks: Mapping[str, nn.Module]) -> list[CallSite]:
        """The network calls of one sample, each at its fixed size, over the given (trained) networks."""

    @abstractmethod
    def program(self, **options: Any) -> Program:
        """The sampling program of this model with the sampler ``options`` (the family's ``sampler_options``)."""

    def sample(self, sites: Sites, batch_size: int, *, seed: int | None = None, first_image: int = 0,
               **arguments: Any) -> Tensor:  # fmt: skip
        """Images [B, C, H, W] in [-1, 1] from the call sites with the noise of ``seed`` (export/PROGRAM.md's
        contract; None: a fresh seed), starting at image ``first_image`` of the seed's sequence (a later chunk of a
        larger sample); ``arguments`` as :meth:`sample_rows`."""
        seed = interpreter.random_seed() if seed is None else seed
        return self.sample_rows(sites, seed_rows(seed, batch_size, first_image), **arguments)

    def sample_rows(self, sites: Sites, rows: Sequence[Row], *, device: torch.device | str = "cpu",
                    progress: bool = False, draws: interpreter.Draws | None = None, **options: Any) -> Tensor:  # fmt: skip
        """One image per (seed, image index) row, each that seed's image whatever else shares the batch: the program
        of ``options`` run eagerly; ``draws``: explicit noise for some of its draws."""
        return interpreter.sample_rows(self.sampling_program(**options), sites, rows, draws=draws, device=device,
                                       progress=progress)  # fmt: skip

    def sampling_program(self, **options: Any) -> Program:
        """The program that samples with ``options``: the stored one (a bundle's) for the defaults, else built."""
        return self.default_program if self.default_program is not None and not options else self.program(**options)

    @abstractmethod
    def process_constants(self) -> dict[str, Any]:
        """The schedule constants a runtime outside Python needs (JSON-able), for the export manifest."""

    def checkpoint_config(self, loss: Mapping[str, Any]) -> dict[str, Any]:
        """What an objective records in every checkpoint: the model config (enough to sample) and the loss."""
        return {"family": self.name, "model": self.config.to_dict(), "loss": dict(loss)}

    def check_sampler_options(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.sampler_options))
        if unknown:
            known = ", ".join(self.sampler_options) or "none"
            raise FastgenError(f"{self.name} sampler has no option {', '.join(unknown)}; its options: {known}")


def noise_labels(t: Tensor, num_steps: int, network: nn.Module) -> Tensor:
    """The network's noise label for timestep index ``t`` (EDM's c_noise): the scale its embedding expects.

    Positional embeddings are built for DDPM's 0..1000 timestep range; Fourier features (random frequencies
    of scale ~16) for labels of order one, so they get t/T.
    """
    embedding = getattr(getattr(network, "config", None), "noise_embedding", "positional")
    scale = 1.0 / num_steps if embedding == "fourier" else 1000.0 / num_steps
    return t.float() * scale


def module_sites(sites: list[CallSite]) -> dict[str, nn.Module]:
    """The torch backend: each call site's own module."""
    return {site.name: site.module for site in sites}


def check_keys(section: str, table: Mapping[str, Any], known: set[str]) -> None:
    """A recipe table may only hold ``known`` keys: a typo is an error that names it, not a silent default."""
    unknown = sorted(set(table) - known)
    if unknown:
        raise FastgenError(f"unknown {section} keys {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}")
