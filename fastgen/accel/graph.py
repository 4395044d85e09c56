"""One CUDA graph per batch size for a whole sample: every network call, reverse step and noise draw.

Noise is torch's counter-based Philox on a private CUDA generator registered with the graph: torch keeps the
generator's seed and offset in device buffers that each replay reads and then advances, so a replay is a new
sample, and reseeding before a replay makes it reproducible. (The fused kernels' own in-kernel Philox takes its
seed and offset as launch arguments, which a graph would freeze; the kernels read the graph's noise tensors.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fastgen.accel.plans import SamplePlan, plan_for
from fastgen.accel.sites import as_sites, prepare_sites, resolve_precision
from fastgen.errors import FastgenError
from fastgen.families import Family


def cuda_device(device: torch.device | str) -> torch.device:
    """``device`` as a CUDA device with its index, or a FastgenError saying why there is none."""
    device = torch.device(device)
    if device.type != "cuda":
        raise FastgenError(f"CUDA graphs run on a CUDA device, got {device}")
    if not torch.cuda.is_available():
        raise FastgenError("CUDA graphs need a CUDA GPU and a CUDA build of torch; torch.cuda.is_available() is False here")
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


class GraphSampler:
    """A family's sampler captured once for ``batch_size`` images and replayed per sample.

    ``sites_or_networks``: the family's networks (as :func:`fastgen.api.load_model` gives them) or ready call
    sites. Torch modules run in ``precision`` (``fp32``/``bf16``/``fp16``; channels_last by default for 16-bit),
    optionally through ``torch.compile``; other sites (ONNX Runtime, TensorRT) run as given. ``kernels``:
    ``auto`` (fused where available), ``fused`` or ``reference``. ``options``: the family's sampler options.
    ``max_calls`` captures only the first network calls of a long chain, for timing (:class:`SamplePlan`).

    With the reference steps in fp32, ``sample(seed)`` equals ``family.sample(sites, batch_size,
    generator=torch.Generator("cuda").manual_seed(seed), device="cuda", **options)``; the fused steps agree to
    float32 rounding.
    """

    def __init__(
        self,
        family: Family,
        sites_or_networks: Mapping[str, Any],
        batch_size: int,
        *,
        precision: str | torch.dtype = "fp32",
        channels_last: bool | None = None,
        compile: bool = False,
        kernels: str = "auto",
        device: torch.device | str = "cuda",
        warmup: int = 2,
        max_calls: int | None = None,
        **options: Any,
    ) -> None:
        self.device = cuda_device(device)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            # Warm-up compiles (torch.compile, NVRTC), loads kernels and fills caches: none of that may be captured.
            raise FastgenError(f"warmup must be a positive integer (runs before capture), got {warmup!r}")
        self.family = family
        self.precision = resolve_precision(precision)
        self.plan: SamplePlan = plan_for(family, batch_size, self.device, kernels=kernels, max_calls=max_calls, **options)
        if not self.plan.capturable:
            raise FastgenError(f"this {family.name} sampler is capturable only with the fused kernels, which are "
                               f"{'off' if kernels == 'reference' else 'unavailable here'} (kernels={kernels!r})")
        sites = as_sites(family, sites_or_networks)
        self.sites = prepare_sites(sites, self.device, self.precision, channels_last=channels_last, compile=compile)
        self._generator = torch.Generator(self.device)
        self._graph = torch.cuda.CUDAGraph()
        self.output = self._capture(warmup)

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def nfe(self) -> int:
        """Network calls of one full sample."""
        return self.plan.nfe

    @property
    def calls(self) -> int:
        """Network calls in the graph (``nfe`` unless ``max_calls`` cut it)."""
        return self.plan.calls

    @property
    def fused(self) -> bool:
        """Whether the graph runs the fused step kernels (else the torch reference steps)."""
        return self.plan.fused

    def _noise(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self._generator, device=self.device, dtype=torch.float32)

    def _capture(self, warmup: int) -> Tensor:
        """Warm up on a side stream, then capture one sample; returns its (static) output buffer."""
        with torch.cuda.device(self.device), torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self.plan.run(self.sites, self._noise)
            torch.cuda.current_stream().wait_stream(side)
            self._graph.register_generator_state(self._generator)
            try:
                with torch.cuda.graph(self._graph):
                    return self.plan.run(self.sites, self._noise)
            except RuntimeError as error:
                raise FastgenError(f"the {self.family.name} sampler could not be captured in a CUDA graph: {error}") from error

    def replay(self, seed: int | None = None) -> Tensor:
        """Run the graph once and return its static output buffer (overwritten by the next replay).

        ``seed`` reseeds the noise first (same seed, same images); ``None`` continues the noise stream.
        """
        if seed is not None:
            self._generator.manual_seed(seed)
        self._graph.replay()
        return self.output

    def sample(self, seed: int | None = None) -> Tensor:
        """``batch_size`` images [B, C, H, W] (float32, a copy the next replay leaves alone)."""
        return self.replay(seed).clone()
