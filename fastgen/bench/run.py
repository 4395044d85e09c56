"""``run_bench``: GFLOPs per image, latency and images/s per family, sampler, backend and batch size.

Networks are built from presets with random weights (speed and FLOPs do not depend on the weights), or loaded
from a checkpoint. Backends: ``torch`` (the family's sampler over eager or compiled torch networks), ``graph`` (the
whole sample in one CUDA graph, :class:`fastgen.accel.GraphSampler`), and ``onnxruntime`` / ``tensorrt`` (the same
sampler over the networks exported to ONNX graphs / TensorRT engines, as ``fastgen sample BUNDLE`` runs them).
Rows are printed as a table, and written as JSON and a PNG plot when paths are given.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from fastgen.accel import KERNEL_CHOICES, precision_name, prepare_sites, resolve_precision
from fastgen.bench import measure
from fastgen.bench.report import ROW_KEYS, print_table, write_json, write_plot
from fastgen.errors import FastgenError
from fastgen.export import BatchRange, Manifest, read_manifest
from fastgen.export.tensorrt import FLAVOURS, INSTALL_HINT, installed_version
from fastgen.families import FAMILIES, CallSite, Family, ModelConfig, Sites, build_family, module_sites
from fastgen.memory import check_fits, sampler_bytes
from fastgen.models import load_model, model_config_from_recipe, resolve_device
from fastgen.nets.registry import build_network
from fastgen.outputs import JSON, PNG, PROFILES, check_output
from fastgen.progress import task_progress
from fastgen.runtime import exported_sites, is_bundle, open_sites
from fastgen.runtime.backends import OnnxRuntimeBackend

BACKENDS = ("torch", "graph", "onnxruntime", "tensorrt")
EXPORTED_BACKENDS = ("onnxruntime", "tensorrt")  # run the networks' exported graphs / engines
PRESETS = ("tiny", "small", "paper")
PRESET_CHANNELS = 3  # presets bench RGB images


@dataclass(frozen=True)
class Defaults:
    """What an option left at None means on a device: a CPU run must finish in under a minute."""

    batches: tuple[int, ...]
    backends: tuple[str, ...]
    preset: str
    repeats: int
    warmup: int
    max_calls: int


CPU_DEFAULTS = Defaults(batches=(1, 8), backends=("torch",), preset="tiny", repeats=3, warmup=1, max_calls=4)
GPU_DEFAULTS = Defaults(batches=(1, 64, 256), backends=("torch", "graph"), preset="paper", repeats=5, warmup=2, max_calls=20)


def default_families() -> tuple[str, ...]:
    """Every registered family, in the registry's (the papers') order."""
    return tuple(FAMILIES)


def samplers(family: Family, ddim_steps: int | None) -> list[tuple[str, dict[str, Any]]]:
    """(row name, sampler options) of each sampler benched for ``family``: its named samplers, and DDIM with
    ``ddim_steps`` where the family has a DDIM sampler."""
    cases = list(family.samplers.items())
    if ddim_steps is not None and "steps" in family.sampler_options:
        cases.append((f"ddim-{ddim_steps}", {"sampler": "ddim", "steps": ddim_steps}))
    return cases


def preset_family(name: str, res: int, preset: str, channels: int = PRESET_CHANNELS) -> Family:
    """``name``'s family at ``res`` with a preset network; ``paper`` means ANCHORS.md's 64×64 NCSN++ for every family."""
    if preset not in PRESETS:
        raise FastgenError(f"unknown bench preset {preset!r}; choose one of {', '.join(PRESETS)}")
    # UDPM's paper preset is its level network; the other families' is the same net as a full-size denoiser.
    network = "paper_denoiser" if preset == "paper" and name != "udpm" else preset
    model = {"family": name, "resolution": res, "channels": channels, "network": {"preset": network}}
    return build_family(model_config_from_recipe({"model": model}))


def device_name(device: torch.device) -> str:
    """What a row's ``device`` says: the GPU's name, or the CPU's architecture and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({platform.machine()}, {threads} thread{'' if threads == 1 else 's'})"


def _positive(name: str, value: object, lowest: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise FastgenError(f"{name} must be an integer ≥ {lowest}, got {value!r}")
    return value


def run_bench(
    res: int | None = None,
    batches: Sequence[int] | None = None,
    backends: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    preset: str | None = None,
    precision: str | None = None,
    repeats: int | None = None,
    warmup: int | None = None,
    json_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    *,
    device: str = "auto",
    max_calls: int | None = None,
    ddim_steps: int | None = 50,
    channels_last: bool | None = None,
    compile: bool = False,
    kernels: str = "auto",
    checkpoint: str | Path | None = None,
    profile_dir: str | Path | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Bench every family × sampler × backend × batch; returns the rows (keys :data:`ROW_KEYS`).

    Options left at None take the device's :class:`Defaults` (CPU: batches 1, 8, torch backend, tiny preset;
    GPU: batches 1, 64, 256, torch and graph backends, the paper's networks). ``res`` defaults to 64.
    ``max_calls``: samplers with more network calls are timed ``scaled`` or ``summed``, see
    :mod:`fastgen.bench.measure`. ``ddim_steps``: DDPM's DDIM row (None: none). ``checkpoint``: bench that
    trained model instead of presets (its family and resolution; ``families``, ``res``, ``preset`` must be None),
    or an exported bundle's own graphs/engines (backends onnxruntime/tensorrt; default tensorrt on a GPU when it
    has engines, else onnxruntime). ``precision`` defaults to fp32, and to the bundle's for a bundle.
    ``profile_dir``: also profile one eager sample per family × sampler × batch (its first ``max_calls`` calls) with
    ``torch.profiler`` and write each op table there (:func:`fastgen.bench.measure.profile_eager`).
    """
    # Before any work: a bad output path must not cost a whole bench.
    for path, kind in ((json_path, JSON), (plot_path, PNG), (profile_dir, PROFILES)):
        if path is not None:
            check_output(path, kind, inputs=[checkpoint] if checkpoint is not None else [])
    device = resolve_device(device)
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    batches = tuple(defaults.batches if batches is None else batches)
    if not batches:
        raise FastgenError("give at least one batch size")
    for batch in batches:
        _positive("batch size", batch)
    if res is not None:  # before the families are built: a schedule at a huge resolution is itself huge
        check_fits(sampler_bytes(PRESET_CHANNELS, res, max(batches)), device, f"benching batch {max(batches)} at {res}×{res}",
                   "use a smaller --res or smaller batches")  # fmt: skip
    models = _models(checkpoint, families, res, preset, defaults.preset)
    bundle = models[0].bundle
    if backends is None:
        backends = defaults.backends if bundle is None else (_bundle_backend(bundle, device),)
    backends = tuple(backends)
    repeats = _positive("repeats", defaults.repeats if repeats is None else repeats)
    warmup = _positive("warmup", defaults.warmup if warmup is None else warmup, lowest=0)
    max_calls = _positive("max_calls", defaults.max_calls if max_calls is None else max_calls)
    if ddim_steps is not None:
        _positive("ddim_steps", ddim_steps)
    for backend in backends:
        if backend not in BACKENDS:
            raise FastgenError(f"unknown bench backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if "graph" in backends and device.type != "cuda":
        raise FastgenError(f"the graph backend captures CUDA graphs and needs a CUDA device; this bench runs on {device}")
    if kernels not in KERNEL_CHOICES:
        raise FastgenError(f"unknown kernels choice {kernels!r}; choose one of {', '.join(KERNEL_CHOICES)}")
    if kernels != KERNEL_CHOICES[0] and "graph" not in backends:
        raise FastgenError(f"kernels={kernels!r} only applies to the graph backend; add it to the backends or drop the option")
    if (compile or channels_last is not None) and not {"torch", "graph"} & set(backends):
        raise FastgenError("compile and channels_last apply to torch networks (backends torch, graph), not to "
                           f"{', '.join(backends)}; drop them")  # fmt: skip
    dtype = resolve_precision(precision or "fp32")
    if bundle is not None:
        dtype = _check_bundle(bundle, backends, batches, precision, profile_dir)
    label = bundle.manifest.precision if bundle is not None else precision_name(dtype)  # a bundle's own: int8 too
    _check_exported_backends(backends, device, dtype)
    if profile_dir is not None:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)

    console = console or Console()
    name = device_name(device)
    timer = measure.Timer(device, warmup, repeats)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with task_progress(console, disable=not progress) as bar:
        task = bar.add_task("bench", total=sum(len(samplers(model.family, ddim_steps)) for model in models)
                            * len(backends) * len(batches))  # fmt: skip
        for family, networks in _networks(models):
            call_sites = family.call_sites(networks)  # a bundle's: random weights, for counting calls and FLOPs
            flops = {site.name: measure.flops_per_call(site) for site in call_sites}  # per site, whatever the sampler
            torch_sites: Sites = {}
            if bundle is None:
                torch_sites = prepare_sites(module_sites(call_sites), device, dtype, channels_last=channels_last,
                                            compile=compile)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="fastgen-bench-") as scratch:
                sites = {"torch": torch_sites, "graph": torch_sites}
                for backend in (backend for backend in backends if backend in EXPORTED_BACKENDS):
                    if bundle is not None:
                        sites[backend] = open_sites(bundle.directory, bundle.manifest.sites, backend, device)
                        continue
                    bar.update(task, description=f"{family.name} · exporting the networks for {backend}")
                    folder = Path(scratch) / backend
                    folder.mkdir()
                    sites[backend] = exported_sites(call_sites, folder, backend=backend, precision=precision_name(dtype),
                                                    device=device, batch=BatchRange(min(batches), max(batches), max(batches)))  # fmt: skip
                for sampler, options in samplers(family, ddim_steps):
                    work = measure.Workload(measure.count_calls(family, call_sites, **options), flops)
                    for backend in backends:
                        skip = _graph_skip(family, sampler, work, max_calls) if backend == "graph" else None
                        if skip is not None:
                            notes.append(skip)
                            bar.advance(task, len(batches))
                            continue
                        for batch in batches:
                            bar.update(task, description=f"{family.name} {sampler} · {backend} · batch {batch}")
                            timing = _time(backend, timer, family, sites[backend], call_sites, work, batch, max_calls,
                                           dtype, kernels, options, notes)  # fmt: skip
                            latency = timing.latency_ms
                            values = (family.name, sampler + timing.note, backend, label,
                                      family.image.resolution, batch, work.nfe, work.gflops_per_image, latency,
                                      batch / latency * 1e3, name)  # fmt: skip
                            rows.append(dict(zip(ROW_KEYS, values, strict=True)))
                            bar.advance(task)
                    if profile_dir is not None:
                        for batch in batches:
                            file_name = measure.profile_file_name(family.name, sampler, precision_name(dtype), batch)
                            measure.profile_eager(family, torch_sites, batch, device, max_calls,
                                                  Path(profile_dir) / file_name, **options)  # fmt: skip

    source = str(checkpoint) if checkpoint is not None else f"preset {preset or defaults.preset} (random weights)"
    size = models[0].family.image.resolution
    title = f"fastgen bench · {name} · {label} · {source} · {size}×{size}"
    print_table(rows, console, title)
    for note in dict.fromkeys(notes):
        console.print(note)
    if any("(scaled" in row["sampler"] for row in rows):
        console.print("(scaled: k calls): the chain's first k calls and their steps, timed, × nfe / k")
    if any("(summed)" in row["sampler"] for row in rows):
        console.print("(summed): the sampler timed with cached network outputs + calls × the time of one real call")
    if profile_dir is not None:
        console.print(f"profiles (eager samples, torch.profiler op tables): {profile_dir}")
    if json_path is not None:
        console.print(f"JSON: {write_json(rows, json_path)}")
    if plot_path is not None:
        console.print(f"plot: {write_plot(rows, plot_path, title)}")
    return rows


def _time(backend: str, timer: measure.Timer, family: Family, sites: Sites, call_sites: list[CallSite],
          work: measure.Workload, batch: int, max_calls: int, dtype: torch.dtype, kernels: str, options: dict[str, Any],
          notes: list[str]) -> measure.Timing:  # fmt: skip
    """One row's timing on ``backend`` (``sites``: that backend's); a graph notes which steps it ran."""
    if backend != "graph":  # the family's own sampler, whatever runs the networks
        return measure.time_eager(timer, family, sites, call_sites, work, batch, max_calls, **options)
    timing, fused = measure.time_graph(timer, family, sites, work, batch, max_calls, precision=dtype, kernels=kernels,
                                       **options)  # fmt: skip
    notes.append(f"graph · {family.name}: {'fused step kernels' if fused else 'torch reference steps'}")
    torch.cuda.empty_cache()  # the graph and its private memory pool are gone: give the memory back
    return timing


def _check_exported_backends(backends: tuple[str, ...], device: torch.device, dtype: torch.dtype) -> None:
    """Fail before any export or timing when an exported backend cannot run here."""
    if "onnxruntime" in backends:
        if device.type == "cpu" and dtype == torch.bfloat16:
            raise FastgenError("onnxruntime's CPU provider has no bfloat16 kernels: bench onnxruntime with --precision fp32 or fp16")
        OnnxRuntimeBackend(device)  # says so when this onnxruntime lacks the device's provider
    if "tensorrt" in backends:
        if device.type != "cuda":
            raise FastgenError(f"the tensorrt backend runs TensorRT engines on a CUDA GPU; this bench runs on {device}")
        if not any(installed_version(flavour) for flavour in FLAVOURS):
            raise FastgenError(f"the tensorrt backend needs TensorRT: {' or '.join(INSTALL_HINT.values())}")


def _graph_skip(family: Family, sampler: str, work: measure.Workload, max_calls: int) -> str | None:
    """Why the graph backend does not bench this sampler, or None when it does."""
    if not work.single_site and work.nfe > max_calls:
        # A cut graph of a multi-site sampler is not a fixed fraction of its sample, so it cannot be scaled.
        return (f"graph · {family.name} {sampler}: {work.nfe} calls over several call sites, more than max_calls = "
                f"{max_calls}; not benched (--max-calls {work.nfe} captures the whole sample)")
    return None


@dataclass(frozen=True)
class _BenchedBundle:
    directory: Path
    manifest: Manifest


@dataclass(frozen=True)
class _Model:
    """A family to bench with its trained networks, or None: a preset's (random weights); or an exported bundle."""

    family: Family
    networks: dict[str, nn.Module] | None = None
    bundle: _BenchedBundle | None = None


def _models(checkpoint: str | Path | None, families: Sequence[str] | None, res: int | None, preset: str | None,
            default_preset: str) -> list[_Model]:  # fmt: skip
    """Every family to bench, validated up front (a bad option fails before any timing); networks come later."""
    if checkpoint is not None:
        if (families, res, preset) != (None, None, None):
            raise FastgenError(
                "a checkpoint fixes the family, resolution and networks: leave families, res and preset unset"
            )
        if is_bundle(checkpoint):
            manifest = read_manifest(checkpoint)
            family = build_family(ModelConfig.from_dict(manifest.model))
            return [_Model(family, bundle=_BenchedBundle(Path(checkpoint), manifest))]
        model = load_model(checkpoint)
        return [_Model(model.family, model.networks)]
    res = 64 if res is None else _positive("res", res, lowest=4)
    families = default_families() if families is None else tuple(families)
    if not families:
        raise FastgenError("give at least one family")
    if len(set(families)) != len(families):
        raise FastgenError(f"families {', '.join(families)} name one more than once; give each family once")
    unknown = [name for name in families if name not in FAMILIES]
    if unknown:
        raise FastgenError(f"unknown model family {', '.join(map(repr, unknown))}; known: {', '.join(FAMILIES)}")
    return [_Model(preset_family(name, res, preset or default_preset)) for name in families]


def _bundle_backend(bundle: _BenchedBundle, device: torch.device) -> str:
    """What a bundle is benched on by default: its engines on a GPU, if it has them; else its ONNX graphs."""
    engines = all(site.engine is not None for site in bundle.manifest.sites)
    return "tensorrt" if device.type == "cuda" and engines else "onnxruntime"


def _check_bundle(bundle: _BenchedBundle, backends: tuple[str, ...], batches: tuple[int, ...], precision: str | None,
                  profile_dir: str | Path | None) -> torch.dtype:  # fmt: skip
    """The bundle's precision, after checking that these options can bench it."""
    where = f"bundle {bundle.directory}"
    others = [backend for backend in backends if backend not in EXPORTED_BACKENDS]
    if others:
        raise FastgenError(f"{where} runs on {' or '.join(EXPORTED_BACKENDS)}, not {', '.join(others)}; bench the "
                           "checkpoint it was exported from for torch/graph rows")  # fmt: skip
    if precision is not None and precision != bundle.manifest.precision:
        raise FastgenError(f"{where} is {bundle.manifest.precision}; leave --precision unset or re-export it as {precision}")
    if profile_dir is not None:
        raise FastgenError(f"--profile records torch op tables and {where} has no torch networks; profile its checkpoint")
    if "tensorrt" in backends:
        outside = [batch for batch in batches if batch not in bundle.manifest.batch]
        profile = bundle.manifest.batch
        if outside:
            raise FastgenError(f"batch {', '.join(map(str, outside))} is outside the engine profile {profile.min} … {profile.max} "
                               f"of {where}; bench batches within it, or re-export with --batch MIN,OPT,MAX")  # fmt: skip
    # int8 graphs take and return float32 (QDQ inside), so the sampler's state is float32.
    return torch.float32 if bundle.manifest.precision == "int8" else resolve_precision(bundle.manifest.precision)


def _networks(models: list[_Model]) -> Iterator[tuple[Family, dict[str, nn.Module]]]:
    """Each family with its sampling network (random weights, seed 0, unless given), built one family at a time."""
    for model in models:
        family, networks = model.family, model.networks
        if networks is None:
            with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's RNG left as it was
                torch.manual_seed(0)
                networks = {"model": build_network(family.config.networks["model"])}
        yield family, {name: network.eval() for name, network in networks.items()}
