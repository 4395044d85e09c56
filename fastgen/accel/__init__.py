"""GPU runtime: a whole sampling program (network calls, fused steps, noise) in one CUDA graph per batch size.

* :class:`GraphSampler` — capture once, ``sample(seed)`` per batch (owns the graph and its buffers).
* :class:`ProgramRunner` — a family's program bound to prepared sites, a batch size and a device (what is captured).
* :func:`prepare_sites` — the torch network backend: precision, channels_last, ``torch.compile``.

Importing this package needs no GPU; building a :class:`GraphSampler` does.
"""

from fastgen.accel.graph import GraphSampler, ProgramRunner, cuda_device
from fastgen.accel.sites import PRECISIONS, TorchSite, as_sites, precision_name, prepare_sites, resolve_precision
from fastgen.sampling.interpreter import KERNEL_CHOICES, use_fused

__all__ = [
    "KERNEL_CHOICES",
    "PRECISIONS",
    "GraphSampler",
    "ProgramRunner",
    "TorchSite",
    "as_sites",
    "cuda_device",
    "precision_name",
    "prepare_sites",
    "resolve_precision",
    "use_fused",
]
