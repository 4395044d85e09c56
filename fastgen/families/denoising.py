"""What the timestep-conditioned families (DDPM, PDDPM, blur) share: the denoiser call site and its objective."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fastgen.families.base import CallSite, TensorSpec, noise_labels
from fastgen.training.distributed import Batch


class TimestepDenoiser(nn.Module):
    """``forward(x, t)``: the network at timestep index ``t`` [B], returning its ε (or x0) prediction.

    ``extra_inputs`` are constant channels appended to x (PDDPM's coordinate encoding at this call site's
    size): they live inside the module, so an exported graph keeps only ``x`` and ``t`` as inputs.
    """

    def __init__(self, net: nn.Module, num_steps: int, extra_inputs: Tensor | None = None) -> None:
        super().__init__()
        self.net = net
        self.num_steps = num_steps
        self.register_buffer("extra_inputs", extra_inputs if extra_inputs is not None else torch.empty(0), persistent=False)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.extra_inputs.numel():
            x = torch.cat([x, self.extra_inputs.to(x.dtype).expand(x.shape[0], -1, -1, -1)], dim=1)
        return self.net(x, noise_labels(t, self.num_steps, self.net))


def denoiser_site(name: str, net: nn.Module, channels: int, resolution: int, num_steps: int,
                  extra_inputs: Tensor | None = None) -> CallSite:  # fmt: skip
    """A ``TimestepDenoiser`` call site: inputs ``x`` [C, R, R] and ``t`` [], output ``out`` [C, R, R]."""
    image = (channels, resolution, resolution)
    return CallSite(
        name=name,
        module=TimestepDenoiser(net, num_steps, extra_inputs),
        inputs=(TensorSpec("x", image), TensorSpec("t", (), max_value=num_steps - 1)),
        output=TensorSpec("out", image),
    )


def device_copies(schedule: Any) -> Callable[[torch.device], Any]:
    """``copy_on(device)``: the schedule's tables on ``device``, moved once per device, not once per training step."""
    copies: dict[torch.device, Any] = {}

    def copy_on(device: torch.device) -> Any:
        if device not in copies:
            copies[device] = schedule.to(device)
        return copies[device]

    return copy_on


def images_of(batch: Batch) -> Tensor:
    """The images of a batch that may carry labels."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class DenoisingObjective:
    """Ho et al.'s L_simple: regress the family's target at a uniformly drawn timestep.

    ``corrupt(x0, t, noise) -> x_t`` and ``target(x0, noise)`` come from the family's process;
    ``training_view(x0, generator) -> (x0, extra_channels | None)`` lets a family change what a batch
    looks like (PDDPM: a random resolution and its coordinate channels).
    """

    def __init__(
        self,
        model: nn.Module,
        num_steps: int,
        corrupt: Callable[[Tensor, Tensor, Tensor], Tensor],
        target: Callable[[Tensor, Tensor], Tensor],
        config: Mapping[str, Any],
        training_view: Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor | None]] | None = None,
    ) -> None:
        self.networks = {"model": model}
        self.num_steps = num_steps
        self.corrupt = corrupt
        self.target = target
        self.training_view = training_view
        self._config = dict(config)

    def config(self) -> dict[str, Any]:
        return self._config

    def loss(self, group: str, nets: Mapping[str, nn.Module], batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        x0 = images_of(batch)
        extra = None
        if self.training_view is not None:
            x0, extra = self.training_view(x0, generator)
        t = torch.randint(self.num_steps, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        x_t = self.corrupt(x0, t, noise)
        net_input = x_t if extra is None else torch.cat([x_t, extra.to(x_t.dtype)], dim=1)
        model = nets["model"]
        out = model(net_input, noise_labels(t, self.num_steps, _unwrapped(model)))
        loss = (out.float() - self.target(x0, noise).float()).square().mean()
        return loss, {"mse": loss.detach()}


def _unwrapped(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (its config says how to scale noise labels)."""
    return getattr(module, "module", module)
