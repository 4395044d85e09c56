"""FLOP counts of networks with ``torch.utils.flop_counter`` (2 FLOPs per multiply-accumulate; papers quote MACs),
and op counts (what bounds a small batch's latency on a GPU: roughly one kernel per op).

Build the network under ``torch.device("meta")`` to count a large one without memory or compute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch.utils._python_dispatch import TorchDispatchMode
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


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        # Views only relabel memory; _unsafe_view is one too, though its schema does not say so.
        if not func.is_view and func.overloadpacket.__name__ != "_unsafe_view":
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Counter[str]:
    """ATen ops of one call ``fn(*args, **kwargs)`` by name (``convolution``, ``native_group_norm`` …), views
    excluded, counted without autograd. On a GPU each is about one kernel (a convolution may be two)."""
    with torch.no_grad(), _OpCounter() as counter:
        fn(*args, **kwargs)
    return counter.ops


def flops_per_image(net: HasExampleInputs, resolution: int) -> int:
    """FLOPs of one forward call on a single ``resolution``×``resolution`` input."""
    return count_flops(net, *net.example_inputs(resolution, batch_size=1))


def level_flops_per_image(nets: LevelNetworks, image_resolution: int) -> list[int]:
    """FLOPs per image of UDPM levels 1..L producing ``image_resolution`` images (inputs image/γ^l)."""
    resolutions = nets.config.input_resolutions(image_resolution)
    return [flops_per_image(net, res) for net, res in zip(nets.per_level(), resolutions, strict=True)]
