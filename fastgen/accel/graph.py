"""One CUDA graph per batch size for a whole sample: the sampling program's interpretation, captured.

:class:`ProgramRunner` binds a family's program to prepared call sites, a batch size and a device, with the noise
seed held in a device tensor; :class:`GraphSampler` captures one :meth:`ProgramRunner.run` in a CUDA graph. The
noise is the program's Philox contract computed by tensor ops that read per-row key tensors, so a replay after
:meth:`GraphSampler.replay` writes a new seed (or new (seed, image index) rows) into them is that seed's sample — the same images as the eager
``family.sample(..., seed=seed)`` (bit for bit with the reference steps in fp32; to float32 rounding with the
fused kernels, which read the graph's noise tensors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from fastgen.accel.sites import as_sites, prepare_sites, resolve_precision
from fastgen.errors import FastgenError
from fastgen.families import Family
from fastgen.sampling.interpreter import Interpreter, random_seed, use_fused
from fastgen.sampling.noise import Row, RowKeys, philox_source, seed_rows


def cuda_device(device: torch.device | str) -> torch.device:
    """``device`` as a CUDA device with its index, or a FastgenError saying why there is none."""
    device = torch.device(device)
    if device.type != "cuda":
        raise FastgenError(f"CUDA graphs run on a CUDA device, got {device}")
    if not torch.cuda.is_available():
        raise FastgenError("CUDA graphs need a CUDA GPU and a CUDA build of torch; torch.cuda.is_available() is False here")
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


class ProgramRunner:
    """``family``'s program for ``options`` bound to ``batch_size``, ``device`` and prepared sites: what a graph captures.

    ``sites_or_networks``: the family's networks (as :func:`fastgen.models.load_model` gives them) or ready call
    sites. Torch modules run in ``precision`` (``fp32``/``bf16``/``fp16``; channels_last by default for 16-bit),
    optionally through ``torch.compile``; other sites (ONNX Runtime, TensorRT) run as given. ``kernels``:
    ``auto`` (fused where available), ``fused`` or ``reference``. ``max_calls`` runs only the first network calls
    of a long chain, for timing.
    """

    def __init__(self, family: Family, sites_or_networks: Mapping[str, Any], batch_size: int, *,
                 precision: str | torch.dtype = "fp32", channels_last: bool | None = None, compile: bool = False,
                 kernels: str = "auto", device: torch.device | str = "cpu", max_calls: int | None = None,
                 **options: Any) -> None:  # fmt: skip
        self.device = torch.device(device)
        self.family = family
        self.precision = resolve_precision(precision)
        if max_calls is not None and (isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1):
            raise FastgenError(f"max_calls must be a positive integer or None, got {max_calls!r}")
        self.interpreter = Interpreter(family.sampling_program(**options), batch_size, self.device,
                                       fused=use_fused(kernels, self.device))  # fmt: skip
        sites = as_sites(family, sites_or_networks)
        self.sites = prepare_sites(sites, self.device, self.precision, channels_last=channels_last, compile=compile)
        self.max_calls = max_calls
        self._keys = RowKeys(batch_size, self.device)

    @property
    def batch_size(self) -> int:
        return self.interpreter.batch_size

    @property
    def nfe(self) -> int:
        """Network calls of one full sample."""
        return self.interpreter.nfe

    @property
    def calls(self) -> int:
        """Network calls of one run (``nfe`` unless ``max_calls`` cuts it)."""
        return self.nfe if self.max_calls is None else min(self.nfe, self.max_calls)

    @property
    def fused(self) -> bool:
        """Whether the step ops run the fused kernels (else the torch reference steps)."""
        return self.interpreter.fused

    def reseed(self, seed: int | None) -> None:
        """Rows 0 … B-1 of ``seed`` (None: a fresh one) into the noise keys the runs read."""
        self.set_rows(seed_rows(random_seed() if seed is None else seed, self.batch_size))

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Per-row (seed, image index) keys into the noise keys the runs read: row r becomes that seed's image."""
        self._keys.fill(rows)

    def run(self) -> Tensor:
        """One sample [B, C, H, W] with the current rows (no host copies, no reads back: capturable)."""
        return self.interpreter.run(self.sites, philox_source(self._keys), max_calls=self.max_calls)


class GraphSampler(ProgramRunner):
    """A family's program captured once in a CUDA graph for ``batch_size`` images and replayed per sample.

    Arguments as :class:`ProgramRunner`; ``warmup`` runs before the capture compile (torch.compile, NVRTC), load
    kernels and fill caches. ``sample(seed)`` equals ``family.sample(sites, batch_size, seed=seed, device="cuda",
    **options)`` with the reference steps in fp32; the fused steps agree to float32 rounding.
    """

    def __init__(self, family: Family, sites_or_networks: Mapping[str, Any], batch_size: int, *,
                 device: torch.device | str = "cuda", warmup: int = 2, **arguments: Any) -> None:  # fmt: skip
        device = cuda_device(device)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            # Warm-up compiles (torch.compile, NVRTC), loads kernels and fills caches: none of that may be captured.
            raise FastgenError(f"warmup must be a positive integer (runs before capture), got {warmup!r}")
        super().__init__(family, sites_or_networks, batch_size, device=device, **arguments)
        self._graph = torch.cuda.CUDAGraph()
        self.output = self._capture(warmup)

    def _capture(self, warmup: int) -> Tensor:
        """Warm up on a side stream, then capture one sample; returns its (static) output buffer."""
        with torch.cuda.device(self.device), torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self.run()
            torch.cuda.current_stream().wait_stream(side)
            try:
                with torch.cuda.graph(self._graph):
                    return self.run()
            except RuntimeError as error:
                raise FastgenError(
                    f"the {self.family.name} sampler could not be captured in a CUDA graph: {error}") from error

    def replay(self, seed: int | None = None, *, rows: Sequence[Row] | None = None) -> Tensor:
        """Run the graph once with ``seed`` (None: a fresh one) or per-row (seed, image index) ``rows`` and return its
        static output buffer (overwritten by the next replay)."""
        if rows is None:
            self.reseed(seed)
        elif seed is not None:
            raise FastgenError("give a seed or rows, not both")
        else:
            self.set_rows(rows)
        self._graph.replay()
        return self.output

    def sample(self, seed: int | None = None, *, rows: Sequence[Row] | None = None) -> Tensor:
        """``batch_size`` images [B, C, H, W] (float32, a copy the next replay leaves alone)."""
        return self.replay(seed, rows=rows).clone()
