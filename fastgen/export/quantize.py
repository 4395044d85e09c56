"""int8 bundles: static QDQ quantisation of each site's fp32 graph, calibrated on the model's own sampling inputs.

Calibration runs the family's default sampling program (the one the bundle ships) for ``N`` seeds — one image per
seed, in one batch, each image with that seed's Philox noise (what ``fastgen sample --seed S --n 1`` draws) — over
the torch call sites, and records the inputs every site is called with. Long chains (DDPM's 1000 calls) are
recorded at evenly spaced calls, at most :data:`CALLS_PER_SITE` per site, so every part of the chain is seen.

The graphs are ONNX Runtime's ``quantize_static`` in QDQ form: per-channel int8 weights, uint8 activations
(ONNX Runtime's u8×s8 CPU kernels: AVX2, and VNNI where the CPU has it), MinMax ranges. Only the convolutions and matrix
products are quantised (:data:`QUANTIZED_OPS`); normalisation, activations, residual adds and softmax stay float.
Inputs and outputs stay float32, so samplers and the C++ kit run an int8 bundle unchanged.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastgen.errors import FastgenError
from fastgen.export.onnx_export import GraphRunner, GraphValidation
from fastgen.families import CallSite
from fastgen.sampling.interpreter import Interpreter
from fastgen.sampling.noise import RowKeys, philox_source
from fastgen.sampling.program import Call, DenoiseChain, Program

QUANTIZATIONS = ("int8",)
HELD_OUT_SEEDS = 2
HELD_OUT_CALLS = 8
# Relative RMS error vs the fp32 torch module on held-out sampling inputs (16 calibration seeds). Measured: 0.007–0.017
# on the trained tiny UDPM's levels (0.066 at worst with 8 seeds), 0.022–0.025 on the paper UDPM with random weights,
# 0.05–0.15 on the tests' random-weight tiny networks, whose outputs are noise;
# a graph with a wrong or missing op errs by O(1). Random-weight chains of 1000 steps diverge (x grows 250× along
# the chain), so one static range per tensor cannot fit their early calls: export refuses them (error > 0.6).
INT8_TOLERANCE = 0.25
DEFAULT_CALIBRATION_SEEDS = 16
CALLS_PER_SITE = 32
# Convolutions and matrix products carry almost all the FLOPs. Quantising every op ORT can (adds, sigmoids,
# normalisation inputs) raised the trained tiny UDPM's relative RMS error from 0.8–3.2% to 1.2–4.1% per level, and
# from 9% to 21–80% on two random-weight levels (8 calibration seeds, bench/results/int8_cpu.md).
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class Calibration:
    """What an int8 bundle was calibrated on; the manifest's ``quantization`` record."""

    seeds: list[int]
    calls_per_site: dict[str, int]
    method: str = "MinMax"
    ops: tuple[str, ...] = QUANTIZED_OPS
    float_nodes: str = "the first and last Conv"

    def to_dict(self) -> dict[str, Any]:
        calibration = {"seeds": self.seeds, "images_per_seed": 1, "calls_per_site": self.calls_per_site,
                       "inputs": "the default sampling program's own site inputs"}
        return {"precision": "int8", "format": "QDQ", "weights": "int8 per channel", "activations": "uint8",
                "method": self.method, "ops": list(self.ops), "float": self.float_nodes, "calibration": calibration}


def check_quantize_options(quantize: str | None, calibrate: int | None, precision: str, trt: bool) -> None:
    """The option combinations :func:`fastgen.export.export_bundle` accepts, or one-line errors."""
    if quantize is None:
        if calibrate is not None:
            raise FastgenError("--calibrate sets the calibration of an int8 bundle; add --quantize int8 or drop it")
        return
    if quantize not in QUANTIZATIONS:
        raise FastgenError(f"unknown quantisation {quantize!r}; choose {', '.join(QUANTIZATIONS)}")
    if precision != "fp32":
        raise FastgenError(f"--quantize {quantize} quantises the fp32 graphs; drop --precision {precision}")
    if trt:
        # ONNX Runtime's fast CPU path wants uint8 activations with zero points and int32 biases; TensorRT takes only
        # symmetric int8 QDQ (TensorRT-RTX 1.7 refuses these graphs: "DequantizeLinear: input has type Int32"), so one
        # graph cannot serve both: int8 bundles are for ONNX Runtime (Python and the C++ kit).
        raise FastgenError(f"--quantize {quantize} makes ONNX Runtime CPU graphs (asymmetric uint8 activations), which "
                           "TensorRT does not build; drop --trt, or export fp16/fp32 engines")  # fmt: skip
    if calibrate is not None and (isinstance(calibrate, bool) or not isinstance(calibrate, int) or calibrate < 1):
        raise FastgenError(f"--calibrate takes a number of seeds ≥ 1, got {calibrate!r}")


def _site_calls(program: Program) -> dict[str, int]:
    calls: dict[str, int] = {}
    for op in program.ops:
        if isinstance(op, Call | DenoiseChain):
            calls[op.site] = calls.get(op.site, 0) + (op.timesteps.numel() if isinstance(op, DenoiseChain) else 1)
    return calls


def record_site_inputs(program: Program, call_sites: Sequence[CallSite], seeds: Sequence[int],
                       calls_per_site: int = CALLS_PER_SITE) -> dict[str, list[tuple[np.ndarray, ...]]]:  # fmt: skip
    """Run ``program`` for one image per seed over the torch ``call_sites`` and keep, per site, the inputs of at
    most ``calls_per_site`` evenly spaced calls (each a batch of ``len(seeds)``)."""
    totals = _site_calls(program)
    recorded: dict[str, list[tuple[np.ndarray, ...]]] = {site.name: [] for site in call_sites}

    def recording(site: CallSite) -> Callable[..., Tensor]:
        total = totals.get(site.name, 0)
        keep = {round(i * (total - 1) / max(calls_per_site - 1, 1)) for i in range(min(calls_per_site, total))}
        count = 0

        def call(*inputs: Tensor) -> Tensor:
            nonlocal count
            if count in keep:
                recorded[site.name].append(tuple(x.detach().float().cpu().numpy().copy() for x in inputs))
            count += 1
            return site.module(*inputs)

        return call

    sites = {site.name: recording(site) for site in call_sites}
    with torch.inference_mode():
        # One image per seed: row i is image 0 of seeds[i] (per-row keys), what `fastgen sample --seed` draws.
        Interpreter(program, len(seeds)).run(sites, philox_source(RowKeys.of([(seed, 0) for seed in seeds])))
    empty = sorted(name for name, calls in recorded.items() if not calls)
    if empty:
        raise FastgenError(f"the sampling program never calls site(s) {', '.join(empty)}; nothing to calibrate them on")
    return recorded


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over recorded feeds."""

    def __init__(self, names: Sequence[str], calls: Sequence[tuple[np.ndarray, ...]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter([dict(zip(names, call)) for call in calls])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def float_convs(graph: Path) -> list[str]:
    """The convolutions kept in float: the first (image in) and the last (prediction out). They are the cheapest
    (few channels on one side) and the most sensitive: with them float the trained tiny UDPM's worst level went from
    3.2% to 1.4% relative RMS error (8 calibration seeds)."""
    import onnx

    convs = [node.name for node in onnx.load(str(graph)).graph.node if node.op_type == "Conv"]
    return sorted({convs[0], convs[-1]}) if convs else []


def quantize_site(site: CallSite, fp32_graph: Path, out: Path, calls: Sequence[tuple[np.ndarray, ...]]) -> None:
    """Write ``fp32_graph`` statically quantised (QDQ) to ``out``, its activation ranges from ``calls``."""
    import logging

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # The quantiser logs a "consider pre-processing" warning per graph: the graphs are simplified and shape-inferred.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))

    quantize_static(
        str(fp32_graph), str(out), _Reader([spec.name for spec in site.inputs], calls), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_convs(fp32_graph),
    )  # fmt: skip


def calibration_seeds(calibrate: int | None) -> list[int]:
    return list(range(DEFAULT_CALIBRATION_SEEDS if calibrate is None else calibrate))


def quantize_graphs(program: Program, call_sites: Sequence[CallSite], graphs: Mapping[str, Path],
                    seeds: Sequence[int]) -> tuple[Calibration, dict[str, GraphValidation]]:  # fmt: skip
    """Replace each site's fp32 graph (``graphs[name]``) by its int8 quantisation calibrated on ``program`` run for
    ``seeds``; validate each on the inputs of :data:`HELD_OUT_SEEDS` other seeds (raises above :data:`INT8_TOLERANCE`)."""
    start = time.perf_counter()
    recorded = record_site_inputs(program, call_sites, seeds)
    held_out = record_site_inputs(program, call_sites, [max(seeds) + 1 + i for i in range(HELD_OUT_SEEDS)], HELD_OUT_CALLS)
    validations = {}
    for site in call_sites:
        graph = graphs[site.name]
        quantized = graph.with_name(f".{graph.stem}.int8.onnx")
        quantize_site(site, graph, quantized, recorded[site.name])
        os.replace(quantized, graph)
        validations[site.name] = validate_int8(site, graph, held_out[site.name])
        validations[site.name].seconds = time.perf_counter() - start
        if not validations[site.name].passed:
            raise FastgenError(f"int8 graph of site {site.name!r} differs from fp32 torch by {validations[site.name].max_error:.2e} "
                               f"(relative RMS on held-out sampling inputs), above {INT8_TOLERANCE:.2g}; nothing was written")  # fmt: skip
    return Calibration(list(seeds), {name: len(calls) for name, calls in recorded.items()}), validations


def validate_int8(site: CallSite, graph: Path, calls: Sequence[tuple[np.ndarray, ...]]) -> GraphValidation:
    """The int8 graph against the fp32 torch module on recorded sampling inputs: the worst call's relative RMS error."""
    runner = GraphRunner(graph)
    module = site.module.eval()
    worst = 0.0
    for call in calls:
        with torch.no_grad():
            expected = module(*(torch.from_numpy(x) for x in call)).numpy()
        worst = max(worst, relative_rms(runner({spec.name: x for spec, x in zip(site.inputs, call)}), expected))
    batch = calls[0][0].shape[0]
    return GraphValidation(f"{runner.name}, relative RMS error on {len(calls)} held-out sampling calls", INT8_TOLERANCE,
                           {batch: worst}, {batch: worst})  # fmt: skip


def relative_rms(output: np.ndarray, reference: np.ndarray) -> float:
    """‖output − reference‖₂ / ‖reference‖₂: the int8 graphs' validation measure (a max over elements is dominated by
    the one worst-rounded pixel)."""
    output, reference = np.asarray(output, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(output - reference) / max(np.linalg.norm(reference), math.ulp(1.0)))
