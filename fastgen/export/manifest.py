"""The bundle manifest: what a runtime (Python or the C++ kit) needs to sample, and the hash of every file.

    BUNDLE/
        manifest.json       this file's ``Manifest``: family, model config, schedule constants, sites, hashes
        program.json        the sampling program of the default sampler options (export/PROGRAM.md)
        <site>.onnx         one graph per call site at its fixed spatial size, dynamic batch
        <site>.plan         optional TensorRT / TensorRT-RTX engine of that graph

The manifest is plain JSON so that C++ reads it without Python; ``FORMAT_VERSION`` changes whenever a
field changes meaning, and readers refuse versions they do not know instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastgen.errors import FastgenError
from fastgen.families import TensorSpec
from fastgen.integrity import contained_file, sha256_file
from fastgen.layout import MANIFEST_FILE
from fastgen.sampling.program import Program
from fastgen.schema import check_schema, load_json

FORMAT = "fastgen-bundle"
FORMAT_VERSION = 2  # 2: the sampling program (program.json)
PROGRAM_FILE = "program.json"
# Images cross every bundle boundary as float NCHW in [-1, 1]; to 8 bit: round((x + 1) * 127.5), clamped.
NORMALIZATION = {"layout": "NCHW", "range": [-1.0, 1.0], "to_uint8": "clamp(round((x + 1) * 127.5), 0, 255)"}
# Every enum of a manifest, checked on read (an unknown value is refused, never run as something else). int8: QDQ-quantised
# graphs with float32 inputs and outputs.
ENUMS: dict[str, tuple[str, ...]] = {"precision": ("fp32", "fp16", "bf16", "int8"), "flavour": ("tensorrt", "tensorrt_rtx"),
                                     "dtype": ("float32", "float16", "bfloat16")}  # fmt: skip


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes a bundle is built for: the TensorRT optimisation profile (ONNX graphs take any batch)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        integers = all(isinstance(value, int) for value in (self.min, self.opt, self.max))
        if not integers or not 1 <= self.min <= self.opt <= self.max:
            raise FastgenError(f"batch must be three integers 1 ≤ min ≤ opt ≤ max, got ({self.min}, {self.opt}, {self.max})")

    def __contains__(self, batch: object) -> bool:
        return isinstance(batch, int) and self.min <= batch <= self.max


@dataclass(frozen=True)
class EngineRecord:
    """A TensorRT engine of one site: which TensorRT built it and for which GPUs (engines are not portable)."""

    file: str
    flavour: str  # "tensorrt" or "tensorrt_rtx": the module that can deserialize it
    version: str  # engines only load in the exact version that built them
    compute_capabilities: list[str]  # "8.6", "12.0" …: the GPUs it runs on
    profile: BatchRange
    optimization_level: int
    build_seconds: float
    timing_cache: str | None  # where the timing cache was read/written, or why none was used


@dataclass(frozen=True)
class SiteRecord:
    """One call site of the sampler: its graph file, named inputs/outputs (shapes without batch) and engine."""

    name: str
    file: str
    inputs: list[TensorSpec]
    output: TensorSpec
    engine: EngineRecord | None = None


@dataclass
class Manifest:
    """Everything ``manifest.json`` holds; ``files`` maps every other file of the bundle to its SHA-256."""

    family: str
    model: dict[str, Any]  # ModelConfig.to_dict(): rebuilds the family and its sampler without the checkpoint
    constants: dict[str, Any]  # Family.process_constants(): the schedule for runtimes outside Python
    precision: str
    batch: BatchRange
    sites: list[SiteRecord]
    source: dict[str, Any]  # the checkpoint it came from (for the torch backend), which weights, its training [data]
    onnx: dict[str, Any]  # opset, exporter
    fastgen_version: str
    files: dict[str, str] = field(default_factory=dict)
    # int8 bundles: how the graphs were quantised and calibrated (fastgen.export.quantize.Calibration); else None.
    quantization: dict[str, Any] | None = None
    program: str = PROGRAM_FILE  # the sampling program of the default sampler options, hashed in ``files``
    normalization: dict[str, Any] = field(default_factory=lambda: dict(NORMALIZATION))
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def site(self, name: str) -> SiteRecord:
        for record in self.sites:
            if record.name == name:
                return record
        raise FastgenError(f"bundle has no call site {name!r}; it has {', '.join(s.name for s in self.sites)}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Keys first that a reader checks first.
        return {"format": data.pop("format"), "format_version": data.pop("format_version"), **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise FastgenError(f"manifest format is {data.get('format')!r}, not {FORMAT!r}: not a fastgen bundle")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise FastgenError(f"bundle format version {version!r} is not supported (this fastgen reads version {FORMAT_VERSION}); "
                               "re-export the bundle with this fastgen, or use the fastgen that wrote it")  # fmt: skip
        check_schema(data, cls, "manifest")  # every field of the right type before any is used
        _check_enums(data)
        try:
            fields = dict(data)
            fields.pop("format"), fields.pop("format_version")
            fields["batch"] = BatchRange(**fields["batch"])
            fields["sites"] = [_site_from_dict(site) for site in fields["sites"]]
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise FastgenError(f"manifest is malformed ({type(exc).__name__}: {exc}); re-export the bundle") from None


def _check_enums(data: Mapping[str, Any]) -> None:
    """Every enum-valued field holds a known value, and the normalisation is the one every runtime applies."""
    values = [("manifest.precision", "precision", data["precision"])]
    for index, site in enumerate(data["sites"]):
        where = f"manifest.sites[{index}]"
        specs = [(f"{where}.inputs[{i}]", spec) for i, spec in enumerate(site["inputs"])] + [(f"{where}.output", site["output"])]
        values += [(f"{place}.dtype", "dtype", spec.get("dtype", "float32")) for place, spec in specs]
        if site.get("engine") is not None:
            values.append((f"{where}.engine.flavour", "flavour", site["engine"]["flavour"]))
    for place, enum, value in values:
        if value not in ENUMS[enum]:
            raise FastgenError(f"{place} is {value!r}, which this fastgen does not know; it must be one of "
                               f"{', '.join(ENUMS[enum])}: re-export the bundle")  # fmt: skip
    normalization = data.get("normalization", NORMALIZATION)
    if normalization != NORMALIZATION:
        raise FastgenError(f"manifest.normalization is {normalization!r}; every runtime maps images as {NORMALIZATION!r}: "
                           "re-export the bundle")  # fmt: skip


def _spec(data: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(data["name"], tuple(data["shape"]), data["dtype"], data.get("max_value", 1.0))


def _site_from_dict(data: Mapping[str, Any]) -> SiteRecord:
    engine = data.get("engine")
    if engine is not None:
        engine = EngineRecord(**{**engine, "profile": BatchRange(**engine["profile"])})
    return SiteRecord(data["name"], data["file"], [_spec(s) for s in data["inputs"]], _spec(data["output"]), engine)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Hash every file of ``directory`` (except the manifest) into ``manifest.files`` and write ``manifest.json``."""
    manifest.files = {
        path.name: sha256_file(path) for path in sorted(directory.iterdir()) if path.is_file() and path.name != MANIFEST_FILE
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")


def read_manifest(directory: str | Path, *, verify: bool = True) -> Manifest:
    """The manifest of a bundle directory; with ``verify``, every listed file must exist and match its SHA-256."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise FastgenError(f"{directory} is not a bundle (no {MANIFEST_FILE}); make one with `fastgen export CHECKPOINT {directory}`")
    contained_file(directory, MANIFEST_FILE, f"bundle {directory}")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise FastgenError(f"{path} is not readable JSON ({exc}); re-export the bundle") from None
    data = load_json(text, str(path), advice="re-export the bundle")
    if not isinstance(data, dict):
        raise FastgenError(f"{path} does not hold a JSON object; re-export the bundle")
    manifest = Manifest.from_dict(data)
    for name in sorted(named_files(manifest) | set(manifest.files)):  # without verify too: hashing is what it skips
        contained_file(directory, name, f"bundle {directory}")
    if verify:
        verify_files(directory, manifest)
    return manifest


def named_files(manifest: Manifest) -> set[str]:
    """The files a bundle's sites and program name."""
    named = {site.file for site in manifest.sites} | {site.engine.file for site in manifest.sites if site.engine}
    return named | {manifest.program}


def read_program(directory: str | Path, manifest: Manifest) -> Program:
    """The bundle's sampling program (its file is checked against the manifest's hash by :func:`read_manifest`)."""
    path = contained_file(Path(directory), manifest.program, f"bundle {directory}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FastgenError(f"bundle {directory}: cannot read its program {manifest.program} ({exc}); re-export the bundle") from None
    return Program.from_json(text)


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest lists (and every file a site names) is present and has its recorded SHA-256."""
    unlisted = sorted(named_files(manifest) - set(manifest.files))
    if unlisted:
        raise FastgenError(f"bundle {directory}: manifest lists no hash for {', '.join(unlisted)}; re-export the bundle")
    for name, expected in manifest.files.items():
        path = contained_file(directory, name, f"bundle {directory}")  # never a path or a link out of the bundle
        if sha256_file(path) != expected:
            raise FastgenError(f"bundle {directory}: {name} does not match its SHA-256 in {MANIFEST_FILE} (altered or "
                               "truncated); copy the whole bundle again or re-export it")  # fmt: skip
