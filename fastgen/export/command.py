"""What ``fastgen export`` does, behind a thin Typer command: parse the option strings, export, print the tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from fastgen.errors import FastgenError
from fastgen.export.bundle import ExportReport, export_bundle


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1,8,32"`` → (min, opt, max); a single ``"8"`` means exactly that batch size."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise FastgenError(f"--batch takes MIN,OPT,MAX (e.g. 1,8,32) or one size, got {text!r}")
    return values  # type: ignore[return-value]  # three ints, checked above


def export_command(checkpoint: Path, out: Path, *, precision: str = "fp32", batch: str = "1,8,32", opset: int | None = None,
                   trt: bool = False, flavour: str | None = None, opt_level: int | None = None, timing_cache: Path | None = None,
                   compute_capability: Sequence[str] = (), check: bool = False, force: bool = False, weights: str = "ema",
                   simplify: bool = True, quantize: str | None = None, calibrate: int | None = None,
                   console: Console | None = None) -> ExportReport:  # fmt: skip
    """Export ``checkpoint`` to the bundle ``out`` with a progress bar; print the per-graph (and Polygraphy) tables.
    TensorRT options (None/empty: the defaults of :func:`export_bundle`) are an error without ``trt``."""
    engine_options = {"flavour": flavour, "optimization_level": opt_level, "timing_cache": timing_cache,
                      "compute_capabilities": list(compute_capability) or None}
    given = {name: value for name, value in engine_options.items() if value is not None}
    if given and not trt:
        names = {"flavour": "--flavour", "optimization_level": "--opt-level", "timing_cache": "--timing-cache",
                 "compute_capabilities": "--compute-capability"}
        raise FastgenError(f"{', '.join(names[name] for name in given)} only apply to TensorRT engines; add --trt or drop them")
    console = console or Console()
    report = export_bundle(checkpoint, out, weights=weights, precision=precision, batch=parse_batch(batch), opset=opset,
                           trt=trt, check=check, simplify=simplify, quantize=quantize, calibrate=calibrate,
                           overwrite=force, progress=True, **given)  # fmt: skip
    console.print(report.table())
    if report.checks:
        console.print(report.check_table())
    console.print(f"bundle: {report.bundle} ({report.seconds:.1f} s)", markup=False, highlight=False)
    return report
