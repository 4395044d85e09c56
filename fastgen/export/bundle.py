"""``export_bundle``: checkpoint → bundle directory (ONNX graphs, optional TensorRT engines, manifest.json).

The bundle is built in a hidden sibling directory and renamed into place at the end, so a failure (a graph
that does not validate, an engine that does not build, Ctrl-C) leaves no half-written bundle behind.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

import fastgen
from fastgen.errors import FastgenError
from fastgen.export.check import CheckRow, polygraphy_check
from fastgen.export.manifest import (
    BatchRange,
    EngineRecord,
    Manifest,
    SiteRecord,
    write_manifest,
)
from fastgen.export.onnx_export import (
    GraphValidation,
    Precision,
    check_opset,
    export_site,
    simplifier,
    validate_site,
)
from fastgen.export.onnx_export import precision as precision_of
from fastgen.export.quantize import calibration_seeds, check_quantize_options, quantize_graphs
from fastgen.export.tensorrt import TensorRTEngine, import_tensorrt
from fastgen.families import CallSite
from fastgen.models import LoadedModel, load_model
from fastgen.outputs import BUNDLE, TIMING_CACHE, check_output
from fastgen.progress import task_progress

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class SiteReport:
    """What export did with one call site: its graph, the measured errors, its engine."""

    name: str
    file: str
    size: int
    validation: GraphValidation
    engine: EngineRecord | None = None
    engine_size: int | None = None


@dataclass
class ExportReport:
    """The result of :func:`export_bundle`: where the bundle is and what was measured and built."""

    bundle: Path
    family: str
    precision: str
    sites: list[SiteReport] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> Table:
        """One row per graph: size, relative error vs torch per batch size, tolerance, engine size and build time."""
        table = Table(title=f"bundle {self.bundle} ({self.family}, {self.precision})")
        for column in ("site", "graph", "rel. error (batch: error)", "vs fp32", "tolerance", "engine"):
            table.add_column(column)
        for site in self.sites:
            v = site.validation
            errors = ", ".join(f"{b}: {e:.1e}" for b, e in v.errors.items())
            vs_fp32 = ", ".join(f"{e:.1e}" for e in v.errors_vs_fp32.values())
            engine = "-"
            if site.engine is not None and site.engine_size is not None:
                engine = f"{site.engine_size / 2**20:.1f} MiB, {site.engine.build_seconds:.1f} s"
            table.add_row(site.name, f"{site.size / 2**10:.0f} KiB", errors, vs_fp32, f"{v.tolerance:.2g}", engine)
        notes = [f"graphs run by {self.sites[0].validation.runner}" if self.sites else ""]
        engine = next((site.engine for site in self.sites if site.engine), None)
        if engine is not None:
            notes.append(f"engines: {engine.flavour} {engine.version}, compute capability {', '.join(engine.compute_capabilities)}, "
                         f"batch {engine.profile.min}…{engine.profile.max}")  # fmt: skip
        table.caption = "; ".join(notes)
        return table

    def check_table(self) -> Table:
        """Polygraphy's comparison: one row per graph and runner."""
        table = Table(title="polygraphy comparator vs torch")
        for column in ("site", "runner", "batch sizes", "max rel. error", "tolerance", "result"):
            table.add_column(column)
        for row in self.checks:
            error = "-" if row.max_error is None else f"{row.max_error:.2e}"
            result = row.note if row.passed is None else ("pass" if row.passed else "FAIL")
            table.add_row(row.site, row.runner, ", ".join(map(str, row.batch_sizes)), error, f"{row.tolerance:.0e}", result)
        return table


def export_bundle(
    checkpoint: str | Path | LoadedModel,
    out_dir: str | Path,
    *,
    weights: str = "ema",
    precision: str = "fp32",
    batch: tuple[int, int, int] = (1, 8, 32),
    opset: int | None = None,
    trt: bool = False,
    flavour: str = "auto",
    optimization_level: int = 3,
    timing_cache: str | Path | None = None,
    compute_capabilities: Sequence[str] | None = None,
    check: bool = False,
    simplify: bool = True,
    quantize: str | None = None,
    calibrate: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ExportReport:
    """Export every call site of ``checkpoint`` (a path, or a CPU ``LoadedModel``) into the bundle ``out_dir``.

    Each graph is validated against its torch module on random inputs at batch sizes ``batch`` min and opt; an
    error above the precision's tolerance fails the export. ``opset`` defaults to the least the precision allows
    (17; 22 for bf16). ``trt`` builds one engine per graph (``flavour`` auto | tensorrt | tensorrt_rtx) for batch
    sizes min … max; ``check`` adds Polygraphy's comparison. ``simplify`` folds constants and static shapes
    (:func:`fastgen.export.onnx_export.simplify_graph`). ``quantize="int8"`` replaces each graph by its static QDQ
    quantisation, calibrated on the sampling program's own site inputs for ``calibrate`` seeds
    (:mod:`fastgen.export.quantize`) and validated on other seeds' inputs. On any failure nothing is written.
    """
    start = time.perf_counter()
    spec = precision_of(precision)
    if len(batch) != 3:
        raise FastgenError(f"batch must be (min, opt, max), got {tuple(batch)}")
    profile = BatchRange(*batch)
    opset = spec.min_opset if opset is None else opset
    check_opset(opset, spec)
    check_quantize_options(quantize, calibrate, spec.name, trt)
    if quantize is not None and check:
        raise FastgenError("--check compares graphs with torch at float tolerances; an int8 bundle is validated on held-out "
                           "sampling inputs at export: drop --check")  # fmt: skip
    sources = [] if isinstance(checkpoint, LoadedModel) else [checkpoint]
    out = check_output(out_dir, BUNDLE, overwrite=overwrite, inputs=sources)
    if trt:
        import_tensorrt(flavour)  # fail before minutes of export when TensorRT is missing
        if timing_cache is not None:
            check_output(timing_cache, TIMING_CACHE, inputs=sources)
    model = checkpoint if isinstance(checkpoint, LoadedModel) else load_model(checkpoint, device="cpu", weights=weights)
    if model.device.type != "cpu":
        raise FastgenError(f"export traces and validates on the CPU; load the model with device='cpu' (it is on {model.device})")
    for site in model.call_sites:
        if not _SAFE_NAME.fullmatch(site.name):
            raise FastgenError(f"call site name {site.name!r} cannot be a file name; family {model.family.name} must rename it")
    engine_options = None
    if trt:
        engine_options = {"profile": profile, "flavour": flavour, "optimization_level": optimization_level,
                          "compute_capabilities": compute_capabilities, "timing_cache": Path(timing_cache) if timing_cache else None}
    report = ExportReport(out, model.family.name, quantize or spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_stagings(out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with task_progress(disable=not progress) as bar:
            task = bar.add_task("export", total=len(model.call_sites))
            for site in model.call_sites:
                def stage(what: str, name: str = site.name) -> None:
                    bar.update(task, description=f"{name}: {what}")

                site_report, rows = _export_site(site, staging, spec, opset, tuple(sorted({profile.min, profile.opt})),
                                                 engine_options, check, simplify, stage)  # fmt: skip
                report.sites.append(site_report)
                report.checks += rows
                bar.advance(task)
            quantization = None
            if quantize is not None:
                bar.update(task, description="int8: recording the sampling program's site inputs")
                graphs = {done.name: staging / done.file for done in report.sites}
                calibration, validations = quantize_graphs(model.family.program(), model.call_sites, graphs,
                                                           calibration_seeds(calibrate))  # fmt: skip
                for done in report.sites:
                    done.validation, done.size = validations[done.name], graphs[done.name].stat().st_size
                quantization = calibration.to_dict()
        failed = [f"{row.site}/{row.runner}" for row in report.checks if row.passed is False]
        if failed:
            raise FastgenError(f"polygraphy comparison failed for {', '.join(failed)} (tolerance {spec.tolerance:.0e}); "
                               "nothing was written")
        manifest = Manifest(
            family=model.family.name, model=model.family.config.to_dict(), constants=model.family.process_constants(),
            precision=quantize or spec.name, batch=profile, quantization=quantization,
            sites=[SiteRecord(site.name, done.file, list(site.inputs), site.output, done.engine)
                   for site, done in zip(model.call_sites, report.sites)],
            source={"checkpoint": str(Path(model.checkpoint).resolve()), "weights": weights, "data": model.data},
            onnx={"opset": opset, "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}", "dynamic_axis": "batch",
                  "simplified": simplifier() if simplify else None},
            fastgen_version=fastgen.__version__,
        )  # fmt: skip
        (staging / manifest.program).write_text(model.family.program().to_json())
        write_manifest(staging, manifest)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - start
    return report


def _export_site(site: CallSite, staging: Path, spec: Precision, opset: int, batch_sizes: tuple[int, ...],
                 engine_options: dict[str, Any] | None, check: bool, simplify: bool,
                 stage: Callable[[str], None]) -> tuple[SiteReport, list[CheckRow]]:  # fmt: skip
    """One site into ``staging``: graph, validation (raises above tolerance), engine, Polygraphy rows."""
    onnx_path = staging / f"{site.name}.onnx"
    stage("ONNX export")
    export_site(site, onnx_path, spec, opset, simplify=simplify)
    stage("validation vs torch")
    validation = validate_site(site, onnx_path, spec, batch_sizes)
    if not validation.passed:
        raise FastgenError(f"graph of site {site.name!r} differs from torch by {validation.max_error:.2e} (relative), above the "
                           f"{spec.name} tolerance {spec.tolerance:.0e}; nothing was written")  # fmt: skip
    report = SiteReport(site.name, onnx_path.name, onnx_path.stat().st_size, validation)
    if engine_options is not None:
        stage("TensorRT engine build")
        plan = staging / f"{site.name}.plan"
        report.engine = TensorRTEngine(plan).build(onnx_path, **engine_options)
        report.engine_size = plan.stat().st_size
    if not check:
        return report, []
    stage("polygraphy comparison")
    return report, polygraphy_check(site, onnx_path, report.engine, staging, spec, batch_sizes)


def _remove_abandoned_stagings(out: Path) -> None:
    """Delete the staging folders (``.NAME.partial-PID-XXXXXXXX``) of exports to ``out`` whose process is gone:
    killed exports. Ones without a process id are an older fastgen's, abandoned too."""
    for staging in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):
        owner = staging.name.rsplit(".partial-", 1)[1].split("-")
        if len(owner) != 2 or not owner[0].isdigit() or not _process_alive(int(owner[0])):
            shutil.rmtree(staging, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished bundle to ``out``; an existing ``out`` (overwrite) is swapped out first, then removed."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
