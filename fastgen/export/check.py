"""``--check``: Polygraphy's comparator runs every graph of a bundle on each runtime and compares to torch.

Runners, each against the torch call-site module at the bundle's precision on the same inputs:
ONNX Runtime (Polygraphy's own runner), and the TensorRT engine where it can run on this machine (right
flavour and version, a GPU it targets). A runner that cannot run here gets a row that says why.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fastgen.export.manifest import EngineRecord
from fastgen.export.onnx_export import Precision, relative_error, site_module
from fastgen.export.tensorrt import (
    TensorRTEngine,
    cuda_capability,
    engine_problem,
    installed_version,
)
from fastgen.families import CallSite, TensorSpec


@dataclass(frozen=True)
class CheckRow:
    """One runner on one graph: its error vs torch (max over the batch sizes) and Polygraphy's verdict."""

    site: str
    runner: str
    batch_sizes: tuple[int, ...]
    max_error: float | None  # None: did not run (see ``note``)
    tolerance: float
    passed: bool | None
    note: str = ""


def _callable_runner(name: str, fn: Callable[..., Tensor], inputs: tuple[TensorSpec, ...], output: str,
                     device: torch.device) -> object:  # fmt: skip
    """A Polygraphy runner over any site callable taking torch tensors (the torch module, a TensorRT engine)."""
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class CallableRunner(BaseRunner):
        def __init__(self) -> None:
            super().__init__(name=name)

        def activate_impl(self) -> None:
            pass

        def deactivate_impl(self) -> None:
            pass

        def get_input_metadata_impl(self) -> TensorMetadata:
            metadata = TensorMetadata()
            for spec in inputs:
                metadata.add(spec.name, np.float32, (-1, *spec.shape))
            return metadata

        def infer_impl(self, feed_dict: dict) -> OrderedDict:
            tensors = [torch.from_numpy(np.ascontiguousarray(feed_dict[spec.name])).to(device) for spec in inputs]
            start = time.perf_counter()
            with torch.no_grad():
                result = fn(*tensors)
            self.inference_time = time.perf_counter() - start
            return OrderedDict([(output, result.float().cpu().numpy())])

    return CallableRunner()


def polygraphy_check(site: CallSite, onnx_path: Path, engine: EngineRecord | None, bundle_dir: Path, precision: Precision,
                     batch_sizes: tuple[int, ...], seed: int = 0) -> list[CheckRow]:  # fmt: skip
    """Compare ONNX Runtime (and the engine, where it runs here) with torch on ``site``; one row per runner."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator
    from polygraphy.comparator.compare import SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    generator = torch.Generator().manual_seed(seed)
    feeds = [{spec.name: x.numpy() for spec, x in zip(site.inputs, site.example_inputs(batch, generator=generator))}
             for batch in batch_sizes]  # fmt: skip
    output = site.output.name
    reference = _callable_runner("torch", site_module(site, precision), site.inputs, output, torch.device("cpu"))
    runners: list[object] = [reference]
    skipped: list[CheckRow] = []
    if precision.dtype == torch.bfloat16:
        skipped.append(CheckRow(site.name, "onnxruntime", batch_sizes, None, precision.tolerance, None,
                             "skipped: ONNX Runtime's CPU provider has no bfloat16 kernels"))  # fmt: skip
    else:
        runners.append(OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"]), name="onnxruntime"))
    if engine is not None:
        label = f"{engine.flavour} {engine.version}"
        problem = engine_problem(engine, installed_version(engine.flavour), cuda_capability())
        if problem:
            note = f"skipped: {problem.split(';')[0]}"
            skipped.append(CheckRow(site.name, label, batch_sizes, None, precision.tolerance, None, note))
        else:
            loaded = TensorRTEngine(bundle_dir / engine.file, engine).load("cuda")
            runners.append(_callable_runner(label, loaded, site.inputs, output, torch.device("cuda")))
    if len(runners) == 1:
        return skipped
    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        results = Comparator.run(runners, data_loader=feeds)
        # Elementwise |a − b| ≤ tolerance · max|torch| with rtol 0: relative_error's criterion, with the smallest
        # max|torch| over the inputs as the scale so that Polygraphy is never the looser of the two.
        scale = min(float(np.abs(iteration[output]).max()) for iteration in results[reference.name])
        compare = SimpleCompareFunc(atol=precision.tolerance * max(scale, 1e-30), rtol=0.0, check_error_stat="elemwise")
        accuracy = Comparator.compare_accuracy(results, compare_func=compare, comparisons=[(0, i) for i in range(1, len(runners))])
    rows = []
    for runner in runners[1:]:
        errors = [relative_error(ours[output], ref[output]) for ours, ref in zip(results[runner.name], results[reference.name])]
        pair = (reference.name, runner.name)
        passed = all(bool(iteration[output]) for iteration in accuracy[0][pair])
        rows.append(CheckRow(site.name, runner.name, batch_sizes, max(errors), precision.tolerance, passed))
    return rows + skipped
