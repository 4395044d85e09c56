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
                   trt: bool = False, flavour: str = "auto", opt_level: int = 3, timing_cache: Path | None = None,
                   compute_capability: Sequence[str] = (), check: bool = False, force: bool = False, weights: str = "ema",
                   console: Console | None = None) -> ExportReport:  # fmt: skip
    """Export ``checkpoint`` to the bundle ``out`` with a progress bar; print the per-graph (and Polygraphy) tables."""
    console = console or Console()
    report = export_bundle(
        checkpoint, out, weights=weights, precision=precision, batch=parse_batch(batch), opset=opset, trt=trt, flavour=flavour,
        optimization_level=opt_level, timing_cache=timing_cache, compute_capabilities=list(compute_capability) or None,
        check=check, overwrite=force, progress=True,
    )  # fmt: skip
    console.print(report.table())
    if report.checks:
        console.print(report.check_table())
    console.print(f"bundle: {report.bundle} ({report.seconds:.1f} s)")
    return report
