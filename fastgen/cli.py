"""The ``fastgen`` command line: one thin verb per Python API (``fastgen --help`` lists them)."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from fastgen.errors import FastgenError

app = typer.Typer(
    name="fastgen",
    help="Train, export, sample and benchmark fast image diffusion models (UDPM, PDDPM, blur diffusion, DDPM/DDIM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
error_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """fastgen: fast image diffusion models, from training to TensorRT engines.

    Every verb is a thin layer over a Python API of the same name in the ``fastgen`` package.
    """


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables.")) -> None:
    """Show what this machine offers: torch/ONNX/ONNX Runtime versions, GPUs and their compute capability,
    which TensorRT flavour imports (tensorrt, tensorrt_rtx or none), ONNX Runtime providers, cuda-python, nvcc."""
    from fastgen.info import collect_environment

    env = collect_environment()
    if as_json:
        console.print_json(json.dumps(env.to_dict()))
        return
    table = Table(title="fastgen environment")
    for column in ("component", "version", "detail"):
        table.add_column(column)
    for component in env.components:
        version = component.version or "[red]not available[/red]"
        table.add_row(component.name, version, component.detail)
    console.print(table)
    if env.gpus:
        gpus = Table(title="CUDA devices")
        for column in ("index", "name", "compute capability", "memory (GiB)"):
            gpus.add_column(column)
        for gpu in env.gpus:
            gpus.add_row(str(gpu.index), gpu.name, gpu.compute_capability, f"{gpu.memory_gib:.1f}")
        console.print(gpus)
    else:
        console.print("CUDA devices: none visible to torch")
    console.print(f"TensorRT flavour: {', '.join(env.tensorrt_flavours) or 'none'}")
    console.print(f"ONNX Runtime providers: {', '.join(env.onnxruntime_providers) or 'none'}")


def main() -> None:
    """Console entry point: bad input becomes one line on stderr (exit 2), never a traceback."""
    try:
        app()
    except FastgenError as exc:
        error_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
