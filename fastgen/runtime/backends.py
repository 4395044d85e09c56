"""Runtime backends: each turns one site of a bundle (its manifest record + file) into a callable on torch tensors.

A backend is small on purpose: ``open`` a site, and say which batch sizes it accepts. Everything shared —
checking the inputs against the site's specs — lives in :class:`BundleSite`, so every backend rejects the
same bad calls with the same message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from fastgen.errors import FastgenError
from fastgen.export.manifest import BatchRange, SiteRecord
from fastgen.export.tensorrt import TensorRTEngine


class Backend(ABC):
    """Opens the sites of a bundle on one device."""

    name: ClassVar[str]

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @abstractmethod
    def open(self, bundle_dir: Path, site: SiteRecord) -> Callable[..., Tensor]:
        """A callable running ``site``: inputs in spec order on ``self.device``, output on ``self.device``."""

    def batch_range(self, site: SiteRecord) -> BatchRange | None:
        """The batch sizes ``site`` accepts here (None: any)."""
        return None


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with its CPU provider, or its CUDA provider for CUDA devices (tensors go through host memory)."""

    name = "onnxruntime"

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        import onnxruntime as ort

        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise FastgenError("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); "
                                   "use device cpu or backend tensorrt")
            self.providers: list = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        elif device.type == "cpu":
            self.providers = ["CPUExecutionProvider"]
        else:
            raise FastgenError(f"onnxruntime backend runs on cpu or cuda, not {device}")

    def open(self, bundle_dir: Path, site: SiteRecord) -> Callable[..., Tensor]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.device.type == "cpu":
            options.intra_op_num_threads = torch.get_num_threads()  # one thread setting for torch and ORT (--threads)
        try:
            session = ort.InferenceSession(str(bundle_dir / site.file), options, providers=self.providers)
        # ORT raises plain Exceptions, e.g. for bf16 graphs: the CPU provider has no bfloat16 kernels.
        except Exception as exc:  # noqa: BLE001
            raise FastgenError(f"onnxruntime cannot run {site.file} ({str(exc).splitlines()[0][:160]}); for bf16 bundles use "
                               "backend tensorrt on a GPU, or re-export with precision fp32/fp16")  # fmt: skip
        _check_graph_signature(bundle_dir, site, session)
        names = [spec.name for spec in site.inputs]
        device = self.device

        def run(*inputs: Tensor) -> Tensor:
            feeds = {name: x.detach().cpu().numpy() for name, x in zip(names, inputs)}
            return torch.from_numpy(session.run(None, feeds)[0]).to(device)

        return run


# TensorSpec dtype → the element type ONNX Runtime reports for a graph input.
_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "bfloat16": "tensor(bfloat16)",
              "int64": "tensor(int64)", "int32": "tensor(int32)"}  # fmt: skip


def _check_graph_signature(bundle_dir: Path, site: SiteRecord, session: Any) -> None:
    """The graph takes the inputs its manifest record names (names, element types, shapes after the batch axis)."""
    actual = [(arg.name, arg.type, list(arg.shape[1:])) for arg in session.get_inputs()]
    wanted = [(spec.name, _ORT_TYPES.get(spec.dtype, spec.dtype), list(spec.shape)) for spec in site.inputs]
    if actual != wanted:
        raise FastgenError(f"bundle {bundle_dir}: graph {site.file} takes {actual}, but its manifest says {wanted}; "
                           "the graph was replaced: re-export the bundle")  # fmt: skip


class TensorRTBackend(Backend):
    """The bundle's TensorRT engines (either flavour), run on torch's current CUDA stream."""

    name = "tensorrt"

    def open(self, bundle_dir: Path, site: SiteRecord) -> Callable[..., Tensor]:
        if site.engine is None:
            raise FastgenError(f"bundle {bundle_dir} has no TensorRT engine for {site.name}; re-export it with --trt")
        return TensorRTEngine(bundle_dir / site.engine.file, site.engine).load(self.device)

    def batch_range(self, site: SiteRecord) -> BatchRange | None:
        return site.engine.profile if site.engine else None


BACKENDS: dict[str, type[Backend]] = {backend.name: backend for backend in (OnnxRuntimeBackend, TensorRTBackend)}


def check_site_inputs(site: SiteRecord, inputs: Sequence[Tensor], batch_range: BatchRange | None) -> None:
    """Inputs must match the site's specs (shapes after the batch dim) and share a batch size within ``batch_range``."""
    if len(inputs) != len(site.inputs):
        names = ", ".join(spec.name for spec in site.inputs)
        raise FastgenError(f"site {site.name} takes {len(site.inputs)} inputs ({names}), got {len(inputs)}")
    batch = inputs[0].shape[0] if inputs[0].ndim else None
    for spec, x in zip(site.inputs, inputs):
        if x.ndim != len(spec.shape) + 1 or tuple(x.shape[1:]) != tuple(spec.shape) or x.shape[0] != batch:
            raise FastgenError(f"site {site.name} input {spec.name} must be [batch, {', '.join(map(str, spec.shape))}] with one "
                               f"batch size for all inputs, got {tuple(x.shape)}")  # fmt: skip
    if batch_range is not None and batch not in batch_range:
        raise FastgenError(f"batch {batch} is outside the engine profile {batch_range.min} … {batch_range.max} of site {site.name}; "
                           "sample in batches within it, or re-export with --batch MIN,OPT,MAX covering it")  # fmt: skip


class BundleSite:
    """One site of a loaded bundle: checks the inputs, casts them to the graph's input dtypes, runs the backend."""

    def __init__(self, record: SiteRecord, run: Callable[..., Tensor], batch_range: BatchRange | None) -> None:
        self.record = record
        self.batch_range = batch_range
        self._run = run
        self._dtypes = [getattr(torch, spec.dtype) for spec in record.inputs]

    def __call__(self, *inputs: Tensor) -> Tensor:
        check_site_inputs(self.record, inputs, self.batch_range)
        # Samplers pass timesteps as whatever dtype they keep them in; graphs take the spec's dtype.
        return self._run(*(x.to(dtype) for x, dtype in zip(inputs, self._dtypes)))
