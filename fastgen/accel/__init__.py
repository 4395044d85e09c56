"""GPU runtime: a whole multi-level sample (network calls, fused steps, noise) in one CUDA graph per batch size.

* :class:`GraphSampler` — capture once, ``sample(seed)`` per batch (owns the graph, its generator and buffers).
* :func:`plan_for` — the capturable form of a family's sampler (UDPM, DDPM/DDIM, PDDPM pyramid, blur); runs eagerly too.
* :func:`prepare_sites` — the torch network backend: precision, channels_last, ``torch.compile``.

Importing this package needs no GPU; building a :class:`GraphSampler` does.
"""

from fastgen.accel.graph import GraphSampler, cuda_device
from fastgen.accel.plans import KERNEL_CHOICES, PLANS, NoiseSource, SamplePlan, plan_for, use_fused
from fastgen.accel.sites import PRECISIONS, TorchSite, as_sites, precision_name, prepare_sites, resolve_precision

__all__ = [
    "KERNEL_CHOICES",
    "PLANS",
    "PRECISIONS",
    "GraphSampler",
    "NoiseSource",
    "SamplePlan",
    "TorchSite",
    "as_sites",
    "cuda_device",
    "plan_for",
    "precision_name",
    "prepare_sites",
    "resolve_precision",
    "use_fused",
]
