"""FLOP counts of networks with ``torch.utils.flop_counter`` (2 FLOPs per multiply-accumulate; papers quote MACs).

Build the network under ``torch.device("meta")`` to count a large one without memory or compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch.utils.flop_counter import FlopCounterMode

from fastgen.nets.levels import LevelNetworks


class HasExampleInputs(Protocol):
    """A network that can make its own zero inputs at a resolution (all fastgen networks can)."""

    def __call__(self, *args: Any) -> Any: ...

    def example_inputs(self, resolution: int, batch_size: int = 1) -> tuple[Any, ...]: ...


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call ``fn(*args, **kwargs)`` (whole batch), counted without autograd."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def flops_per_image(net: HasExampleInputs, resolution: int) -> int:
    """FLOPs of one forward call on a single ``resolution``×``resolution`` input."""
    return count_flops(net, *net.example_inputs(resolution, batch_size=1))


def level_flops_per_image(nets: LevelNetworks, image_resolution: int) -> list[int]:
    """FLOPs per image of UDPM levels 1..L producing ``image_resolution`` images (inputs image/γ^l)."""
    resolutions = nets.config.input_resolutions(image_resolution)
    return [flops_per_image(net, res) for net, res in zip(nets.per_level(), resolutions, strict=True)]
