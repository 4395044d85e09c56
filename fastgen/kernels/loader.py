"""Run-time compilation of fastgen's .cu kernels with NVRTC (through cuda.core) and launching on torch's stream.

The sources ship inside the package and are compiled on first use for the architecture of the GPU at hand
(a cubin, ``sm_XY``), then cached per (source text, architecture, options) for the life of the process.
Compiling needs only NVRTC, not a GPU, so the compile path is testable on CPU machines; launching needs a
GPU, cuda-python and a CUDA build of torch. cuda.core is imported lazily: ``import fastgen.kernels`` works
everywhere, and a missing piece raises a :class:`~fastgen.errors.FastgenError` that says what to install.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from fastgen.errors import FastgenError

KERNEL_DIR = Path(__file__).resolve().parent
SOURCES: tuple[str, ...] = ("udpm_posterior.cu", "udpm_matheron.cu", "blur_step.cu", "ddpm_step.cu")
HEADERS: tuple[str, ...] = ("portable.cuh", "common.cuh", "philox.cuh", "spectral.cuh", "steps.cuh")
CXX_STANDARD = "c++17"
THREADS_PER_BLOCK = 256  # every kernel is declared __launch_bounds__(256)
# One full wave (2048 resident threads per SM on sm_80 … sm_90); the kernels' grid-stride loops do the rest.
_BLOCKS_PER_SM = 2048 // THREADS_PER_BLOCK

_INSTALL_HINT = "install cuda-python and cuda-core (pip install 'cuda-python>=12.6' 'cuda-core>=1.0', or fastgen[gpu])"


def cuda_core() -> ModuleType:
    """The ``cuda.core`` module, or a FastgenError saying how to get it."""
    try:
        import cuda.core as core  # noqa: PLR0402 - this form raises ImportError for a blocked cuda.core too
    except ImportError as error:
        raise FastgenError(f"fastgen's CUDA kernels need cuda.core ({error}); {_INSTALL_HINT}") from None
    # Releases before 1.0 kept Program and launch under cuda.core.experimental, with other signatures.
    if not hasattr(core, "Program"):
        raise FastgenError(f"cuda.core is too old for fastgen's kernels; {_INSTALL_HINT}")
    return core


def source_text(source: str) -> str:
    """The text of one of :data:`SOURCES`."""
    if source not in SOURCES:
        raise FastgenError(f"unknown kernel source {source!r}; the sources are {', '.join(SOURCES)}")
    return (KERNEL_DIR / source).read_text()


def _sources_digest(source: str) -> str:
    # The headers are part of every source's meaning: edit one and every cached module is stale.
    text = source_text(source) + "".join((KERNEL_DIR / header).read_text() for header in HEADERS)
    return hashlib.sha256(text.encode()).hexdigest()


def compile_source(source: str, arch: str) -> Any:
    """Compile ``source`` (one of :data:`SOURCES`) for ``arch`` (``"sm_90"``) to a cubin ``ObjectCode``.

    Needs NVRTC (the nvidia-cuda-nvrtc wheel or a CUDA toolkit) but no GPU. Cached per
    (source text, arch, options); a compile error raises cuda.core's NVRTCError with the compiler log.
    """
    return _compile(source, _sources_digest(source), arch, CXX_STANDARD)


@functools.cache
def _compile(source: str, digest: str, arch: str, std: str) -> Any:
    core = cuda_core()
    options = core.ProgramOptions(arch=arch, std=std, include_path=str(KERNEL_DIR), name=source)
    return core.Program(source_text(source), "c++", options).compile("cubin")


def _cuda_device(device: torch.device) -> int:
    if device.type != "cuda":
        raise FastgenError(f"fastgen's fused kernels run on CUDA tensors, got tensors on {device}")
    if not torch.cuda.is_available():
        raise FastgenError("fastgen's fused kernels need a CUDA GPU and a CUDA build of torch; none is available here")
    return torch.cuda.current_device() if device.index is None else device.index


@functools.cache
def _kernel(source: str, name: str, device_index: int) -> tuple[Any, int]:
    """The loaded kernel and the launch grid cap for one device."""
    core = cuda_core()
    device = core.Device(device_index)
    device.set_current()  # torch runs on the primary context, which this makes current for cuda.core too
    major, minor = device.compute_capability
    kernel = compile_source(source, f"sm_{major}{minor}").get_kernel(name)
    return kernel, torch.cuda.get_device_properties(device_index).multi_processor_count * _BLOCKS_PER_SM


def launch(source: str, name: str, work_items: int, args: tuple[Any, ...], device: torch.device) -> None:
    """Launch ``name`` from ``source`` over ``work_items`` threads' worth of work on torch's current stream.

    ``args`` are the kernel's arguments in order: Python ints for device pointers, NumPy scalars for
    values (cuda.core maps a Python int to a pointer-sized argument).
    """
    index = _cuda_device(device)
    core = cuda_core()
    kernel, max_blocks = _kernel(source, name, index)
    core.Device(index).set_current()
    blocks = max(1, min(math.ceil(work_items / THREADS_PER_BLOCK), max_blocks))
    config = core.LaunchConfig(grid=blocks, block=THREADS_PER_BLOCK)
    # torch.cuda.Stream implements __cuda_stream__, so the launch joins torch's stream order (and CUDA graphs).
    core.launch(torch.cuda.current_stream(index), config, kernel, *args)
