"""TensorRT engines of bundle graphs: one class builds, checks, loads and runs an engine, for both flavours.

The two flavours share one API family and one code path here:

- ``tensorrt`` (10.x / 11.x): builds on, and for, the GPU it runs on; a timing cache (one file per TensorRT
  version and GPU in the user cache dir) makes rebuilds fast.
- ``tensorrt_rtx`` (TensorRT for RTX): builds ahead of time without a GPU for a list of compute
  capabilities and compiles kernels just in time on the user's GPU. Its timing-cache API has no effect
  on the engine and forces a GPU query, so it is not used.

Networks are strongly typed: an engine computes in the precision of its ONNX graph (fp16/bf16 graphs are
exported as such), never in precisions the builder picks.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from fastgen.errors import FastgenError
from fastgen.export.manifest import BatchRange, EngineRecord

FLAVOURS = ("tensorrt", "tensorrt_rtx")
INSTALL_HINT = {"tensorrt": "pip install tensorrt-cu12 (or -cu13)", "tensorrt_rtx": "pip install tensorrt-rtx-cu13"}
# TensorRT-RTX's portable default (Ampere … Blackwell), set explicitly so the manifest records exactly what was built.
RTX_COMPUTE_CAPABILITIES = ("8.0", "8.6", "8.9", "12.0", "12.1")
RTX_TIMING_CACHE_NOTE = "not used: TensorRT-RTX ignores it and it would need a GPU at build time"


def import_tensorrt(flavour: str = "auto") -> ModuleType:
    """The TensorRT module of ``flavour``; ``auto`` takes full TensorRT when it imports, else TensorRT-RTX."""
    if flavour not in (*FLAVOURS, "auto"):
        raise FastgenError(f"unknown TensorRT flavour {flavour!r}; choose auto, {', '.join(FLAVOURS)}")
    errors = []
    for name in FLAVOURS if flavour == "auto" else (flavour,):
        try:
            return importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 — the PyPI `tensorrt` stub packages fail in many ways, not only ImportError
            errors.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    hint = " or ".join(INSTALL_HINT[name] for name in (FLAVOURS if flavour == "auto" else (flavour,)))
    raise FastgenError(f"TensorRT is not importable ({'; '.join(errors)}); {hint}, or export without --trt")


def flavour_of(trt: ModuleType) -> str:
    return trt.__name__.split(".")[0]


def installed_version(flavour: str) -> str | None:
    """The version of ``flavour`` that imports here, or None."""
    try:
        return str(import_tensorrt(flavour).__version__)
    except FastgenError:
        return None


def cuda_capability(device: torch.device | None = None) -> str | None:
    """The compute capability ("9.0") of a CUDA device as torch sees it, or None without one."""
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}.{minor}"


def engine_problem(record: EngineRecord, installed: str | None, capability: str | None) -> str | None:
    """Why an engine cannot run here (None if it can): its TensorRT version and GPU must match this machine's."""
    flavour = record.flavour
    if installed is None:
        return (f"engine {record.file} was built with {flavour} {record.version}, which is not installed: "
                f"{INSTALL_HINT.get(flavour, 'install it')}=={record.version}, or use backend='onnxruntime'")  # fmt: skip
    if installed != record.version:
        return (f"engine {record.file} was built with {flavour} {record.version} but {installed} is installed; engines "
                "only load in the version that built them: re-export with `fastgen export --trt` here, or install that version")  # fmt: skip
    if capability is None:
        return f"engine {record.file} needs a CUDA GPU and torch sees none; use backend='onnxruntime' or run on a GPU machine"
    if capability not in record.compute_capabilities:
        return (f"engine {record.file} targets compute capability {', '.join(record.compute_capabilities)} but this GPU is "
                f"{capability}; re-export with `fastgen export --trt` for this GPU, or use backend='onnxruntime'")  # fmt: skip
    return None


def default_timing_cache(trt: ModuleType, capability: str) -> Path:
    """One timing cache per TensorRT version and GPU, shared by every build: ``$FASTGEN_CACHE_DIR`` or ~/.cache/fastgen."""
    root = Path(os.environ.get("FASTGEN_CACHE_DIR") or Path.home() / ".cache" / "fastgen")
    return root / f"{flavour_of(trt)}-{trt.__version__}-sm{capability.replace('.', '')}.timing-cache"


def _logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps errors for our exception messages instead of printing its own lines."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR) and "Thread context has not been set" not in msg:
                self.errors.append(msg)

        def summary(self) -> str:
            # Builder errors can be pages of compiler IR: the first lines say what failed.
            return "; ".join(error[:300] for error in self.errors[:3]) or "no error message"

    return Logger()


def _set_targets(trt: ModuleType, config: Any, compute_capabilities: Sequence[str] | None) -> tuple[str, ...]:
    """TensorRT-RTX: the listed compute capabilities, ahead of time. Full TensorRT: the GPU it builds on."""
    if flavour_of(trt) == "tensorrt_rtx":
        targets = tuple(compute_capabilities or RTX_COMPUTE_CAPABILITIES)
        config.num_compute_capabilities = len(targets)
        for index, capability in enumerate(targets):
            member = getattr(trt.ComputeCapability, f"SM{capability.replace('.', '')}", None)
            if member is None or not config.set_compute_capability(member, index):
                raise FastgenError(f"tensorrt_rtx {trt.__version__} cannot target compute capability {capability}")
        return targets
    current = cuda_capability()
    if current is None:
        raise FastgenError("full TensorRT builds engines on a CUDA GPU and torch sees none; use the tensorrt_rtx flavour")
    if compute_capabilities and tuple(compute_capabilities) != (current,):
        raise FastgenError(f"full TensorRT builds for the GPU it runs on ({current}), not {', '.join(compute_capabilities)}")
    return (current,)


def _torch_dtype(trt: ModuleType, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.bool: torch.bool}  # fmt: skip
    return table[dtype]


class TensorRTEngine:
    """One engine file: ``build`` it from an ONNX graph, ``load`` it on a GPU, call it with CUDA torch tensors.

    Calling binds the inputs' own memory and a fresh output tensor (torch's caching allocator makes that
    cheap), so an output stays valid after the next call.
    """

    def __init__(self, path: Path, record: EngineRecord | None = None) -> None:
        self.path = Path(path)
        self.record = record
        self.device: torch.device | None = None
        self._engine: Any = None
        self._context: Any = None
        self._inputs: list[str] = []
        self._output = ""
        self._dtypes: dict[str, torch.dtype] = {}

    def build(self, onnx_path: Path, *, profile: BatchRange, flavour: str = "auto", optimization_level: int = 3,
              timing_cache: Path | None = None, compute_capabilities: Sequence[str] | None = None) -> EngineRecord:  # fmt: skip
        """Build the engine of ``onnx_path`` for batch sizes ``profile`` and write it to ``self.path``."""
        if not 0 <= optimization_level <= 5:
            raise FastgenError(f"builder optimisation level must be 0 … 5, got {optimization_level}")
        trt = import_tensorrt(flavour)
        rtx = flavour_of(trt) == "tensorrt_rtx"
        start = time.perf_counter()
        logger = _logger(trt)
        builder = trt.Builder(logger)
        if builder is None:
            raise FastgenError(f"{flavour_of(trt)} could not create a builder ({logger.summary()}); "
                               "full TensorRT builds on a GPU, TensorRT-RTX builds anywhere")  # fmt: skip
        # Strongly typed: TensorRT 10 needs the flag; later versions are strongly typed always and may lack it.
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise FastgenError(f"{flavour_of(trt)} cannot parse {onnx_path.name}: {'; '.join(errors) or 'unknown error'}")
        config = builder.create_builder_config()
        config.builder_optimization_level = optimization_level
        optimisation_profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            optimisation_profile.set_shape(tensor.name, (profile.min, *rest), (profile.opt, *rest), (profile.max, *rest))
        config.add_optimization_profile(optimisation_profile)
        targets = _set_targets(trt, config, compute_capabilities)
        cache_path = None if rtx else Path(timing_cache) if timing_cache else default_timing_cache(trt, targets[0])
        if cache_path is not None:
            cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise FastgenError(f"{flavour_of(trt)} failed to build {onnx_path.name}: {logger.summary()}")
        self.path.write_bytes(bytes(serialized))
        if cache_path is not None:
            _write_atomically(cache_path, bytes(config.get_timing_cache().serialize()))
        self.record = EngineRecord(
            file=self.path.name, flavour=flavour_of(trt), version=str(trt.__version__), compute_capabilities=list(targets),
            profile=profile, optimization_level=optimization_level, build_seconds=round(time.perf_counter() - start, 3),
            timing_cache=str(cache_path) if cache_path else RTX_TIMING_CACHE_NOTE,
        )  # fmt: skip
        return self.record

    def load(self, device: torch.device | str = "cuda") -> TensorRTEngine:
        """Check that the engine fits this machine (TensorRT version, GPU), deserialize it, make its context."""
        if self.record is None:
            raise FastgenError(f"engine {self.path} has no manifest record; load it through its bundle")
        device = torch.device(device)
        if device.type != "cuda":
            raise FastgenError(f"TensorRT engines run on CUDA devices, not {device}; use backend='onnxruntime' for {device}")
        problem = engine_problem(self.record, installed_version(self.record.flavour), cuda_capability(device))
        if problem:
            raise FastgenError(problem)
        trt = import_tensorrt(self.record.flavour)
        logger = _logger(trt)
        runtime = trt.Runtime(logger)
        data = self.path.read_bytes()
        if hasattr(runtime, "get_engine_validity"):  # TensorRT-RTX: checks the header against this GPU, driver and CUDA
            validity, diagnostics = runtime.get_engine_validity(data)
            if validity == trt.EngineValidity.INVALID:
                raise FastgenError(f"engine {self.record.file} is invalid on this machine (diagnostics flags {diagnostics}: "
                                   "version, compute capability, CUDA driver/runtime); "
                                   "re-export it with `fastgen export --trt`")  # fmt: skip
        with torch.cuda.device(device):
            self._engine = runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise FastgenError(f"{self.record.flavour} cannot load {self.record.file} ({logger.summary()}); re-export it")
            self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._output = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._dtypes = {n: _torch_dtype(trt, self._engine.get_tensor_dtype(n)) for n in names}
        self.device = device
        return self

    def __call__(self, *inputs: Tensor) -> Tensor:
        """Run on the current CUDA stream; inputs in the engine's input order, batch within its profile."""
        if self._context is None:
            raise FastgenError(f"engine {self.path.name} is not loaded; call load() first")
        bound = [x.to(self.device, self._dtypes[name]).contiguous() for name, x in zip(self._inputs, inputs)]
        for name, x in zip(self._inputs, bound):
            self._context.set_input_shape(name, tuple(x.shape))
            self._context.set_tensor_address(name, x.data_ptr())
        output = torch.empty(tuple(self._context.get_tensor_shape(self._output)), dtype=self._dtypes[self._output], device=self.device)
        self._context.set_tensor_address(self._output, output.data_ptr())
        if not self._context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise FastgenError(f"TensorRT failed to run {self.path.name}")
        return output


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
