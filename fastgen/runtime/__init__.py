"""Sample from a bundle: ``load_bundle(dir, backend=…)`` gives what :func:`fastgen.api.sample` needs.

The family is rebuilt from the manifest alone (no checkpoint) and samples the bundle's program for the default
sampler options (rebuilding others from the model config); the call sites are the bundle's graphs or engines, opened by a backend (:mod:`fastgen.runtime.backends`). ``backend='torch'`` is
the bundle's source checkpoint through :func:`fastgen.models.load_model`, for comparisons. :func:`exported_sites`
gives networks that were never bundled the same sites (``fastgen bench --backend onnxruntime|tensorrt``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fastgen.errors import FastgenError
from fastgen.export.manifest import MANIFEST_FILE, BatchRange, Manifest, SiteRecord, read_manifest, read_program
from fastgen.export.onnx_export import export_site
from fastgen.export.onnx_export import precision as precision_of
from fastgen.export.tensorrt import TensorRTEngine, cuda_capability
from fastgen.families import CallSite, Family, ModelConfig, TensorSpec, build_family
from fastgen.integrity import contained_file
from fastgen.models import LoadedModel, load_model, parse_device
from fastgen.runtime.backends import BACKENDS, Backend, BundleSite, check_site_inputs
from fastgen.sampling.program import Call, DenoiseChain, Program

BACKEND_NAMES = (*BACKENDS, "torch")


@dataclass
class Bundle:
    """A loaded bundle: ``family``, ``sites`` and ``device`` are what :func:`fastgen.api.sample` uses."""

    directory: Path
    manifest: Manifest
    family: Family
    sites: dict[str, BundleSite]
    device: torch.device
    backend: str

    @property
    def data(self) -> dict:
        """The ``[data]`` table of the recipe the model was trained with (empty for bundles exported before it was kept)."""
        return dict(self.manifest.source.get("data") or {})


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a bundle directory (has a manifest), as opposed to a checkpoint or run directory."""
    return (Path(path) / MANIFEST_FILE).is_file()


def load_bundle(directory: str | Path, *, backend: str = "onnxruntime", device: str | torch.device = "cpu",
                verify: bool = True) -> Bundle | LoadedModel:  # fmt: skip
    """Load a bundle for sampling; ``verify`` checks every file's SHA-256 against the manifest first.

    ``backend``: ``onnxruntime`` (CPU, or CUDA with onnxruntime-gpu), ``tensorrt`` (the bundle's engines, CUDA only)
    or ``torch`` (the source checkpoint recorded in the manifest; returns that :class:`fastgen.models.LoadedModel`).
    """
    if backend not in BACKEND_NAMES:
        raise FastgenError(f"unknown runtime backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
    directory = Path(directory)
    manifest = read_manifest(directory, verify=verify)
    device = parse_device(device)  # whether it is here: the backend says, with what it needs (engines, providers)
    if backend == "torch":
        checkpoint = Path(manifest.source.get("checkpoint", ""))
        if not checkpoint.is_dir():
            raise FastgenError(f"bundle {directory} was exported from {checkpoint}, which is not here; the torch backend needs "
                               "that checkpoint: sample it directly, or use backend onnxruntime/tensorrt")  # fmt: skip
        return load_model(checkpoint, device=device, weights=manifest.source.get("weights", "ema"))
    family = build_family(ModelConfig.from_dict(manifest.model))
    check_bundle_sites(directory, manifest, family)
    family.default_program = check_program(directory, manifest, family, read_program(directory, manifest))
    return Bundle(directory, manifest, family, open_sites(directory, manifest.sites, backend, device), device, backend)


def check_bundle_sites(directory: Path, manifest: Manifest, family: Family) -> None:
    """The manifest's sites are exactly the family's call sites (names, inputs, output), and no graph reaches for a
    file the manifest does not list (ONNX external data): a bundle is only what its manifest hashes."""
    with torch.device("meta"):  # the call sites' specs without allocating weights
        expected = {site.name: site for site in family.call_sites(family.build_networks())}
    records = {record.name: record for record in manifest.sites}
    if records.keys() != expected.keys():
        raise FastgenError(f"bundle {directory} has sites {', '.join(records) or 'none'}, but its {family.name} sampler calls "
                           f"{', '.join(expected)}; re-export the bundle")  # fmt: skip
    for name, record in records.items():
        site = expected[name]
        if list(record.inputs) != list(site.inputs) or record.output != site.output:
            raise FastgenError(f"bundle {directory}: site {name}'s inputs/output in the manifest ({_specs(record.inputs)} → "
                               f"{_specs([record.output])}) are not what the {family.name} sampler passes "
                               f"({_specs(site.inputs)} → {_specs([site.output])}); re-export the bundle")  # fmt: skip
        for location in sorted(_external_data(contained_file(directory, record.file, f"bundle {directory}"))):
            if location not in manifest.files:
                raise FastgenError(f"bundle {directory}: {record.file} loads external data from {location!r}, which the "
                                   "manifest does not list; it will not be loaded: re-export the bundle")  # fmt: skip


def check_program(directory: Path, manifest: Manifest, family: Family, program: Program) -> Program:
    """``program`` agrees with the manifest it came with: it makes the images the manifest declares, its buffers are no
    larger than those images, and every network call is one of the manifest's sites with that site's input and output
    shapes (a chain: at most T steps, timesteps in [0, T - 1], T from the site's timestep input)."""
    where = f"bundle {directory}: its program"
    image = (family.image.channels, family.image.resolution, family.image.resolution)
    if program.buffers[program.output] != image:
        raise FastgenError(f"{where} makes images of shape {list(program.buffers[program.output])}, but the manifest declares "
                           f"{list(image)}; re-export the bundle")  # fmt: skip
    for name, shape in program.buffers.items():
        if math.prod(shape) > math.prod(image):
            raise FastgenError(f"{where}'s buffer {name!r} {list(shape)} is larger than the {list(image)} images it makes; "
                               "re-export the bundle")  # fmt: skip
    records = {record.name: record for record in manifest.sites}
    for index, op in enumerate(program.ops):
        if not isinstance(op, Call | DenoiseChain):
            continue
        place = f"{where}'s op {index} ({op.kind})"
        record = records.get(op.site)
        if record is None:
            raise FastgenError(f"{place} calls site {op.site!r}, which the manifest does not list; re-export the bundle")
        timestep = isinstance(op, DenoiseChain)
        given = [(program.buffers[op.x], "float32"), *([((), "float32")] if timestep else [])]
        taken = [(tuple(spec.shape), spec.dtype) for spec in record.inputs]
        made = (tuple(record.output.shape), record.output.dtype)
        if given != taken or made != (program.buffers[op.out], "float32"):
            def shown(specs: list[tuple[tuple[int, ...], str]]) -> str:
                return ", ".join(f"{dtype}[{', '.join(map(str, shape))}]" for shape, dtype in specs)

            raise FastgenError(f"{place} passes site {op.site} {shown(given)} → {shown([(program.buffers[op.out], 'float32')])}, "
                               f"but the manifest's site takes {shown(taken)} → {shown([made])}; re-export the bundle")  # fmt: skip
        if timestep:
            steps = int(record.inputs[1].max_value) + 1
            timesteps = op.timesteps
            if timesteps.numel() > steps or not bool(((timesteps >= 0) & (timesteps < steps) & (timesteps == timesteps.round())).all()):
                raise FastgenError(f"{place} runs {timesteps.numel()} steps; a {steps}-step model takes at most {steps} "
                                   f"integer timesteps in [0, {steps - 1}]: re-export the bundle")  # fmt: skip
    return program


def _specs(specs: Iterable[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {spec.dtype}[{', '.join(map(str, spec.shape))}]" for spec in specs)


def _external_data(graph: Path) -> set[str]:
    """The files an ONNX graph's tensors keep their data in (none for fastgen's own graphs)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(graph), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  # protobuf's DecodeError and friends: a damaged graph
        raise FastgenError(f"{graph} is not a readable ONNX graph ({type(exc).__name__}); re-export the bundle") from None
    return {entry.value for tensor in _get_all_tensors(model) if uses_external_data(tensor)
            for entry in tensor.external_data if entry.key == "location"}  # fmt: skip


def open_sites(directory: Path, records: Iterable[SiteRecord], backend: str, device: torch.device) -> dict[str, BundleSite]:
    """The sites ``records`` (files in ``directory``) opened by ``backend`` (onnxruntime or tensorrt) on ``device``."""
    opener: Backend = BACKENDS[backend](device)
    return {record.name: BundleSite(record, opener.open(directory, record), opener.batch_range(record)) for record in records}


def exported_sites(call_sites: Sequence[CallSite], directory: str | Path, *, backend: str, precision: str = "fp32",
                   device: str | torch.device = "cpu", batch: BatchRange | None = None,
                   flavour: str = "auto") -> dict[str, BundleSite]:  # fmt: skip
    """``call_sites`` (CPU modules) as ``backend`` runs them from a bundle: each written to ``directory`` as an ONNX
    graph at ``precision`` (tensorrt: and built into an engine for the batch sizes ``batch``), then opened.

    Neither a manifest nor validation against torch: this is for timing the runtime (``fastgen bench``);
    ``fastgen export`` makes and validates deployable bundles.
    """
    if backend not in BACKENDS:
        raise FastgenError(f"networks run exported on {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "tensorrt" and batch is None:
        raise FastgenError("a TensorRT engine is built for a batch range: give batch=BatchRange(min, opt, max)")
    spec = precision_of(precision)
    directory, device = Path(directory), torch.device(device)
    capability = cuda_capability(device) if device.type == "cuda" else None
    records = []
    for site in call_sites:
        graph = directory / f"{site.name}.onnx"
        export_site(site, graph, spec, spec.min_opset)
        engine = None
        if backend == "tensorrt":  # for the GPU it will run on
            engine = TensorRTEngine(directory / f"{site.name}.plan").build(
                graph, profile=batch, flavour=flavour, compute_capabilities=[capability] if capability else None)
        records.append(SiteRecord(site.name, graph.name, list(site.inputs), site.output, engine))
    return open_sites(directory, records, backend, device)


def load_for_sampling(path: str | Path, *, backend: str | None = None, device: str | torch.device = "cpu",
                      weights: str = "ema") -> Bundle | LoadedModel:  # fmt: skip
    """What ``fastgen sample PATH`` samples: a bundle (``backend``, default onnxruntime) or a checkpoint/run directory."""
    if is_bundle(path):
        return load_bundle(path, backend=backend or "onnxruntime", device=device)
    if backend not in (None, "torch"):
        raise FastgenError(f"{path} is a checkpoint, which samples with torch; --backend {backend} needs a bundle (fastgen export)")
    return load_model(path, device=device, weights=weights)


__all__ = ["BACKEND_NAMES", "Bundle", "BundleSite", "check_site_inputs", "exported_sites", "is_bundle", "load_bundle",
           "load_for_sampling", "open_sites"]
