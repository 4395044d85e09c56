"""What this machine offers fastgen: library versions, GPUs, TensorRT flavour, ONNX Runtime providers, nvcc.

``collect_environment()`` is the Python API behind ``fastgen info``; every probe is best-effort and never
raises, so the report also works on a machine that has none of the optional pieces.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

import fastgen


@dataclass
class Component:
    """One probed piece of the stack: ``version`` is None when it is not importable/installed."""

    name: str
    version: str | None
    detail: str = ""


@dataclass
class GpuInfo:
    index: int
    name: str
    compute_capability: str
    memory_gib: float


@dataclass
class Environment:
    components: list[Component] = field(default_factory=list)
    gpus: list[GpuInfo] = field(default_factory=list)
    tensorrt_flavours: list[str] = field(default_factory=list)
    onnxruntime_providers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _module_version(module: str, distribution: str | None = None) -> tuple[str | None, str]:
    """Import ``module``; return (version, error text). Import errors are reported, not raised."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken install must not break the report
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    version = getattr(mod, "__version__", None)
    if version is None and distribution is not None:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version or "unknown"), ""


def _nvcc_version() -> tuple[str | None, str]:
    default_nvcc = "/usr/local/cuda/bin/nvcc"
    nvcc = shutil.which("nvcc") or (default_nvcc if os.path.exists(default_nvcc) else None)
    if nvcc is None:
        return None, "not on PATH"
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    match = re.search(r"release ([\d.]+)", out)
    return (match.group(1) if match else "unknown"), nvcc


def collect_environment() -> Environment:
    """Probe the machine. Cheap (imports only what is asked for), never raises."""
    env = Environment()
    env.components.append(Component("fastgen", fastgen.__version__))
    env.components.append(Component("python", platform.python_version(), platform.platform()))

    torch_version, torch_error = _module_version("torch")
    torch_detail = torch_error
    if torch_version is not None:
        import torch

        cuda = torch.version.cuda
        torch_detail = f"CUDA build {cuda}" if cuda else "CPU build"
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                env.gpus.append(
                    GpuInfo(index, props.name, f"{props.major}.{props.minor}", round(props.total_memory / 2**30, 1))
                )
    env.components.append(Component("torch", torch_version, torch_detail))

    for module, distribution in (("onnx", "onnx"), ("polygraphy", "polygraphy")):
        version, error = _module_version(module, distribution)
        env.components.append(Component(module, version, error))

    ort_version, ort_error = _module_version("onnxruntime", "onnxruntime")
    if ort_version is not None:
        import onnxruntime

        env.onnxruntime_providers = list(onnxruntime.get_available_providers())
    env.components.append(Component("onnxruntime", ort_version, ort_error or ", ".join(env.onnxruntime_providers)))

    for module in ("tensorrt", "tensorrt_rtx"):
        version, error = _module_version(module)
        if version is not None:
            env.tensorrt_flavours.append(module)
        env.components.append(Component(module, version, error))

    for module, distribution in (("cuda.bindings", "cuda-bindings"), ("cuda.core", "cuda-core")):
        version, error = _module_version(module, distribution)
        env.components.append(Component(f"cuda-python ({module})", version, error))

    nvcc_version, nvcc_detail = _nvcc_version()
    env.components.append(Component("nvcc", nvcc_version, nvcc_detail))
    return env
