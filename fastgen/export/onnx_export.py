"""One call site → one ONNX graph (dynamic batch, named inputs/outputs, constants folded), and its validation.

Reduced precision is decided here, in the graph: TensorRT builds strongly typed networks, so an fp16/bf16
bundle is an fp16/bf16 graph. Its inputs and outputs stay float32 (casts inside the graph) so that samplers
and the C++ kit always exchange float32 tensors whatever the precision.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from fastgen.errors import FastgenError
from fastgen.families import CallSite
from fastgen.nets.precision import to_precision

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 17
# The TorchScript exporter writes opsets up to 20; higher ones go through ONNX's version converter.
TORCHSCRIPT_MAX_OPSET = 20
BATCH_AXIS = "batch"


@dataclass(frozen=True)
class Precision:
    """A graph precision and the tolerance its validation uses.

    ``tolerance`` bounds max|graph − torch| / max|torch| against the torch module run at the same precision.
    fp32 has the required 1e-4. fp16 and bf16 get about 20 unit roundoffs of the format (u = 2⁻¹¹ and
    2⁻⁸): two correct implementations of a deep network round and accumulate in different orders, which on the
    tiny presets measured 1.3e-3–2.3e-3 (fp16) and 3.2e-2 (bf16) — 3–8 u. A wrong graph (a missing op, a
    mis-bound weight) errs by O(1), far above either.
    """

    name: str
    dtype: torch.dtype
    tolerance: float
    min_opset: int = MIN_OPSET


PRECISIONS = {
    "fp32": Precision("fp32", torch.float32, 1e-4),
    "fp16": Precision("fp16", torch.float16, 1e-2),
    # ONNX's Conv accepts bfloat16 from opset 22 on (float32_modules keeps the FIR resampling filters float32).
    "bf16": Precision("bf16", torch.bfloat16, 8e-2, min_opset=22),
}


def precision(name: str) -> Precision:
    if not isinstance(name, str) or name not in PRECISIONS:
        raise FastgenError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


class ReducedPrecision(nn.Module):
    """A call-site module computing in fp16/bf16 with float32 inputs and output.

    Per-sample scalar inputs stay float32 (timesteps reach ~1000, where fp16 has a step of 0.5), and so do the
    submodules of :func:`fastgen.nets.precision.float32_modules`: their inputs are cast up and their outputs cast down around them.
    """

    def __init__(self, module: nn.Module, precision: Precision) -> None:
        super().__init__()
        self.module = to_precision(copy.deepcopy(module), precision.dtype)
        self.dtype = precision.dtype

    def forward(self, *inputs: Tensor) -> Tensor:
        cast = (x.to(self.dtype) if x.ndim > 1 else x for x in inputs)
        return self.module(*cast).float()


def site_module(site: CallSite, precision: Precision) -> nn.Module:
    """The module whose graph is exported (and which validation compares against) at ``precision``."""
    module = site.module if precision.dtype == torch.float32 else ReducedPrecision(site.module, precision)
    return module.eval()


def check_opset(opset: int, precision: Precision) -> None:
    """``opset`` from the precision's least to the newest this onnx package knows (its version converter's limit)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not precision.min_opset <= opset <= newest:
        raise FastgenError(f"{precision.name} graphs need an ONNX opset from {precision.min_opset} to {newest} (the newest "
                           f"onnx {onnx.__version__} knows), got {opset!r}")  # fmt: skip


def export_site(site: CallSite, path: Path, precision: Precision, opset: int, *, simplify: bool = True) -> None:
    """Write ``site`` at ``precision`` as an ONNX graph: inputs/output named by its specs, dim 0 dynamic;
    ``simplify``: constants folded and static shapes resolved (:func:`simplify_graph`)."""
    check_opset(opset, precision)
    import onnx

    module = site_module(site, precision)
    names = [spec.name for spec in site.inputs]
    generator = torch.Generator().manual_seed(0)
    # Traced with batch 2: a batch of 1 lets the tracer treat the batch dim as a broadcastable constant.
    example = site.example_inputs(2, generator=generator)
    with warnings.catch_warnings(), torch.no_grad():
        # The networks check static shapes in Python; the tracer warns that those checks become constants.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")  # the exporter's own internals
        torch.onnx.export(
            module, example, str(path), input_names=names, output_names=[site.output.name],
            dynamic_axes={name: {0: BATCH_AXIS} for name in [*names, site.output.name]},
            opset_version=min(opset, TORCHSCRIPT_MAX_OPSET), do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    model = onnx.load(str(path))
    if opset > TORCHSCRIPT_MAX_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, opset)
        onnx.save(model, str(path))
    if simplify:
        model = simplify_graph(path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise FastgenError(f"exported graph of site {site.name!r} fails onnx.checker: {str(exc).splitlines()[0]}") from None
    graph_inputs = [i.name for i in model.graph.input]
    if graph_inputs != names:
        # The exporter drops inputs the graph does not use; a runtime feeding them by name would then fail.
        raise FastgenError(f"site {site.name!r}: graph inputs {graph_inputs} differ from the call site's {names}; "
                           "every call-site input must be used by its module")  # fmt: skip


def simplifier() -> str:
    """The tool :func:`simplify_graph` uses, with its version (recorded in the manifest)."""
    import onnxslim

    return f"onnxslim {onnxslim.__version__}"


def simplify_graph(path: Path) -> onnx.ModelProto:
    """Rewrite the graph at ``path`` with onnxslim: constants folded, shapes inferred, Shape/Identity/Reshape chains of
    static dimensions replaced by constants, dead and duplicate nodes removed (the batch axis stays symbolic).

    Batch-1 latency on ONNX Runtime follows the node count (issue 23): the TorchScript exporter leaves a
    GroupNorm's shape arithmetic and Identity copies of shared weights as nodes. GroupNormalization (opset 21) is
    not used: TensorRT-RTX builds it, but ONNX Runtime's CPU provider has no kernel for it and expands its function
    body into 29 nodes, measured 1.7–2.2× slower than the exporter's InstanceNormalization form (bench/groupnorm_cpu.py).
    """
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load(str(path)))
    onnx.save(model, str(path))
    return model


def relative_error(output: np.ndarray | Tensor, reference: np.ndarray | Tensor) -> float:
    """max|output − reference| / max|reference|: relative to the output's scale, not per element (outputs cross 0)."""
    output, reference = np.asarray(output, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.abs(output - reference).max() / max(np.abs(reference).max(), np.finfo(np.float32).tiny))


class GraphRunner:
    """Runs an ONNX graph on CPU: ONNX Runtime, or ONNX's reference evaluator where ORT has no kernels (bf16)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        try:
            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.name = "onnxruntime"
        # ORT raises plain Exceptions; its CPU provider rejects e.g. bfloat16 Gemm/Conv when creating the session.
        except Exception:  # noqa: BLE001
            import onnx
            from onnx.reference import ReferenceEvaluator

            self._session = ReferenceEvaluator(onnx.load(str(path)))
            self.name = "onnx.reference (onnxruntime has no CPU kernels for this graph)"

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)


@dataclass
class GraphValidation:
    """The measured errors of one graph: per batch size, vs the module at its precision and vs float32."""

    runner: str
    tolerance: float
    errors: dict[int, float] = field(default_factory=dict)
    errors_vs_fp32: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def max_error(self) -> float:
        return max(self.errors.values())

    @property
    def passed(self) -> bool:
        return self.max_error <= self.tolerance


def validate_site(site: CallSite, path: Path, precision: Precision, batch_sizes: tuple[int, ...], seed: int = 0) -> GraphValidation:
    """Run the graph and the torch module on the same random inputs at each batch size and measure the error."""
    start = time.perf_counter()
    runner = GraphRunner(path)
    module = site_module(site, precision)
    reference_fp32 = site.module.eval()
    generator = torch.Generator().manual_seed(seed)
    result = GraphValidation(runner.name, precision.tolerance)
    for batch in batch_sizes:
        inputs = site.example_inputs(batch, generator=generator)
        with torch.no_grad():
            expected = module(*inputs)
            expected_fp32 = reference_fp32(*inputs) if module is not reference_fp32 else expected
        output = runner({spec.name: x.numpy() for spec, x in zip(site.inputs, inputs)})
        if output.shape != tuple(expected.shape):
            raise FastgenError(f"site {site.name!r}: graph output shape {output.shape} at batch {batch}, "
                               f"torch gives {tuple(expected.shape)}")
        result.errors[batch] = relative_error(output, expected)
        result.errors_vs_fp32[batch] = relative_error(output, expected_fp32)
    result.seconds = time.perf_counter() - start
    return result
