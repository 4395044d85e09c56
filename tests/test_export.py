"""fastgen.export on the tiny presets: ONNX graphs vs torch, the manifest, TensorRT-RTX engines built for real,
Polygraphy's comparator, reduced precision, and bad input (each a FastgenError, nothing half-written)."""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from rich.console import Console

from fastgen.api import load_model, model_config_from_recipe
from fastgen.errors import FastgenError
from fastgen.export import (
    PRECISIONS,
    ExportReport,
    export_bundle,
    export_command,
    parse_batch,
    read_manifest,
    relative_error,
)
from fastgen.export.check import polygraphy_check
from fastgen.export.onnx_export import export_site
from fastgen.families import ModelConfig, build_family
from fastgen.integrity import sha256_file
from fastgen.training import Checkpoint, load_recipe, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BATCH = (1, 3, 8)  # validation runs at batch 1 and 3; engines accept 1 … 8


def rtx_or_none():
    try:
        return importlib.import_module("tensorrt_rtx")
    except Exception:  # noqa: BLE001 — any import failure means: no TensorRT-RTX here
        return None


RTX = rtx_or_none()
needs_rtx = pytest.mark.skipif(RTX is None, reason="tensorrt_rtx does not import here (pip install tensorrt-rtx-cu13)")


def random_checkpoint(family: str, run_dir: Path, seed: int = 0, overrides: tuple[str, ...] = ()) -> Path:
    """A checkpoint of ``train/<family>_tiny.toml`` (with ``--set`` ``overrides``) with jittered fresh weights.

    Fresh UNets end in a 1e-5-scaled conv, so their outputs are ~1e-5; the jitter makes outputs O(1), so that
    graph-vs-torch and sampling comparisons measure something.
    """
    recipe = load_recipe(ROOT / "train" / f"{family}_tiny.toml", overrides)
    family_obj = build_family(model_config_from_recipe(recipe.sections))
    torch.manual_seed(seed)
    model = family_obj.build_networks()["model"]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    state = model.state_dict()
    checkpoint = Checkpoint(step=0, config={"objective": family_obj.checkpoint_config({})}, networks={"model": state}, ema=state,
                            optimizers={}, rng=[], data_state=None, nan_skips={})  # fmt: skip
    return save_checkpoint(run_dir, checkpoint, keep_last=1)



@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, ExportReport]]:
    """ddpm and udpm: checkpoint → fp32 bundle with Polygraphy's check and (where it imports) TensorRT-RTX engines."""
    root = tmp_path_factory.mktemp("export")
    result = {}
    for family in ("ddpm", "udpm"):
        checkpoint = random_checkpoint(family, root / f"{family}_run")
        report = export_bundle(checkpoint, root / f"{family}_bundle", batch=BATCH, trt=RTX is not None, flavour="tensorrt_rtx",
                               check=True)  # fmt: skip
        result[family] = (checkpoint, report)
    return result


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_graphs_pass_checker_with_named_inputs_and_dynamic_batch(exported, family: str) -> None:
    checkpoint, report = exported[family]
    manifest = read_manifest(report.bundle)
    sites = {site.name: site for site in load_model(checkpoint).call_sites}
    assert [record.name for record in manifest.sites] == list(sites)
    for record in manifest.sites:
        model = onnx.load(str(report.bundle / record.file))
        onnx.checker.check_model(model, full_check=True)
        assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
        site = sites[record.name]
        graph_inputs = {i.name: i for i in model.graph.input}
        assert list(graph_inputs) == [spec.name for spec in site.inputs]
        for spec in site.inputs:
            dims = graph_inputs[spec.name].type.tensor_type.shape.dim
            assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(spec.shape)
        assert [o.name for o in model.graph.output] == [site.output.name]


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_simplified_graphs_fold_static_shapes_and_keep_the_batch_dynamic(exported, family: str, tmp_path: Path) -> None:
    checkpoint, report = exported[family]
    manifest = read_manifest(report.bundle)
    assert manifest.onnx["simplified"].startswith("onnxslim ")
    for site in load_model(checkpoint).call_sites:
        model = onnx.load(str(report.bundle / f"{site.name}.onnx"))
        ops = [node.op_type for node in model.graph.node]
        assert "Identity" not in ops and "Constant" not in ops  # weights and constants are initializers
        # What Shape nodes remain read the batch axis (dynamic): Shape(input) → Gather index 0, nothing static.
        consumers = {name: node for node in model.graph.node for name in node.input}
        initial = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Shape":
                gather = consumers[node.output[0]]
                assert gather.op_type == "Gather" and int(initial.get(gather.input[1], np.array(-1))) == 0
        plain = tmp_path / f"{site.name}_plain.onnx"
        export_site(site, plain, PRECISIONS["fp32"], 17, simplify=False)
        assert len(ops) < 0.6 * len(onnx.load(str(plain)).graph.node)  # measured: 40-45% of the plain graph's nodes


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_onnxruntime_matches_torch_at_several_batch_sizes(exported, family: str) -> None:
    checkpoint, report = exported[family]
    for site_report in report.sites:
        assert sorted(site_report.validation.errors) == [1, 3]
        assert site_report.validation.max_error <= 1e-4, site_report
    # Independently of export's own validation: other batch sizes, other inputs, straight onnxruntime.
    generator = torch.Generator().manual_seed(11)
    for site in load_model(checkpoint).call_sites:
        session = ort.InferenceSession(str(report.bundle / f"{site.name}.onnx"), providers=["CPUExecutionProvider"])
        for batch in (2, 5):
            inputs = site.example_inputs(batch, generator=generator)
            with torch.no_grad():
                expected = site.module(*inputs)
            (output,) = session.run(None, {spec.name: x.numpy() for spec, x in zip(site.inputs, inputs)})
            assert output.shape == (batch, *site.output.shape)
            assert relative_error(output, expected) <= 1e-4
            assert np.abs(expected.numpy()).max() > 1e-2  # the comparison is not between two near-zero outputs


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_manifest_describes_the_model_and_hashes_every_file(exported, family: str) -> None:
    checkpoint, report = exported[family]
    data = json.loads((report.bundle / "manifest.json").read_text())
    model = load_model(checkpoint)
    assert data["format"] == "fastgen-bundle" and data["format_version"] == 2
    assert data["family"] == family and data["precision"] == "fp32"
    assert data["model"] == json.loads(json.dumps(model.family.config.to_dict()))
    assert data["constants"] == json.loads(json.dumps(model.family.process_constants()))
    assert data["normalization"]["range"] == [-1.0, 1.0]
    assert data["batch"] == {"min": 1, "opt": 3, "max": 8}
    assert data["source"]["checkpoint"] == str(checkpoint.resolve())
    files = sorted(p.name for p in report.bundle.iterdir() if p.name != "manifest.json")
    assert sorted(data["files"]) == files
    for name, digest in data["files"].items():
        assert hashlib.sha256((report.bundle / name).read_bytes()).hexdigest() == digest
    for site in data["sites"]:
        assert site["file"] in data["files"] and site["output"]["name"] and site["inputs"]
    # Enough to rebuild the family and its sampler without the checkpoint.
    assert build_family(ModelConfig.from_dict(data["model"])).process_constants() == model.family.process_constants()


@needs_rtx
@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_tensorrt_rtx_builds_an_engine_for_every_site(exported, family: str) -> None:
    _, report = exported[family]
    manifest = read_manifest(report.bundle)
    for record in manifest.sites:
        engine = record.engine
        assert engine is not None and engine.flavour == "tensorrt_rtx" and engine.version == RTX.__version__
        assert engine.compute_capabilities == ["8.0", "8.6", "8.9", "12.0", "12.1"]
        assert (engine.profile.min, engine.profile.opt, engine.profile.max) == BATCH
        assert (report.bundle / engine.file).stat().st_size > 100_000
        assert engine.file in manifest.files


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_polygraphy_compares_onnxruntime_and_engines_with_torch(exported, family: str) -> None:
    _, report = exported[family]
    runners = {(row.site, row.runner.split()[0]): row for row in report.checks}
    for site in report.sites:
        ort_row = runners[(site.name, "onnxruntime")]
        assert ort_row.passed is True and ort_row.max_error <= 1e-4 and ort_row.batch_sizes == (1, 3)
        if RTX is not None:
            trt_row = runners[(site.name, "tensorrt_rtx")]
            # Runs where a GPU it targets is present; otherwise the row says why it did not.
            assert trt_row.passed is True or (trt_row.passed is None and trt_row.note.startswith("skipped"))
    assert report.check_table().row_count == len(report.checks)


def test_polygraphy_verdict_fails_above_the_tolerance(exported) -> None:
    checkpoint, report = exported["ddpm"]
    (site,) = load_model(checkpoint).call_sites
    strict = replace(PRECISIONS["fp32"], tolerance=1e-12)  # below float32 rounding: ORT and torch must disagree
    (row,) = polygraphy_check(site, report.bundle / "denoiser.onnx", None, report.bundle, strict, (2,))
    assert row.runner == "onnxruntime" and row.passed is False and row.max_error > 1e-12


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_graphs(exported, tmp_path: Path, precision: str) -> None:
    checkpoint, _ = exported["ddpm"]
    report = export_bundle(checkpoint, tmp_path / "bundle", precision=precision, batch=BATCH, trt=RTX is not None,
                           flavour="tensorrt_rtx")  # fmt: skip
    (site,) = report.sites
    assert site.validation.max_error <= PRECISIONS[precision].tolerance
    assert site.validation.max_error > 1e-5  # it really computes in reduced precision
    model = onnx.load(str(report.bundle / site.file))
    onnx.checker.check_model(model, full_check=True)
    wanted = {"fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}[precision]
    assert {init.data_type for init in model.graph.initializer} >= {wanted}
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in [*model.graph.input, *model.graph.output])
    assert read_manifest(report.bundle).precision == precision
    if RTX is not None:
        assert site.engine is not None and (report.bundle / site.engine.file).is_file()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_bad_export_input_is_a_clear_error_and_writes_nothing(exported, tmp_path: Path) -> None:
    checkpoint, report = exported["ddpm"]
    with pytest.raises(FastgenError, match="already exists"):
        export_bundle(checkpoint, report.bundle)
    with pytest.raises(FastgenError, match="unknown precision"):
        export_bundle(checkpoint, tmp_path / "b", precision="fp8")
    with pytest.raises(FastgenError, match="min ≤ opt ≤ max"):
        export_bundle(checkpoint, tmp_path / "b", batch=(4, 2, 8))
    with pytest.raises(FastgenError, match="opset from 17 to"):
        export_bundle(checkpoint, tmp_path / "b", opset=16)
    with pytest.raises(FastgenError, match="opset from 22 to"):
        export_bundle(checkpoint, tmp_path / "b", precision="bf16", opset=20)

    config_path = checkpoint / "config.json"
    unknown = tmp_path / "unknown_family"
    unknown.mkdir()
    for file in checkpoint.iterdir():
        (unknown / file.name).write_bytes(file.read_bytes())
    config = json.loads(config_path.read_text())
    config["objective"]["model"]["family"] = "wavelet"
    (unknown / "config.json").write_text(json.dumps(config))
    hashes = json.loads((unknown / "sha256.json").read_text())  # as written with the checkpoint: only the family is wrong
    (unknown / "sha256.json").write_text(json.dumps({**hashes, "config.json": sha256_file(unknown / "config.json")}))
    with pytest.raises(FastgenError, match="unknown model family 'wavelet'"):
        export_bundle(unknown, tmp_path / "b")
    assert not (tmp_path / "b").exists() and _leftovers(tmp_path) == []


@needs_rtx
def test_failed_engine_build_leaves_the_old_bundle_untouched(exported, tmp_path: Path) -> None:
    checkpoint, report = exported["ddpm"]
    before = (report.bundle / "manifest.json").read_text()
    # Fails after the ONNX graph is written: an architecture TensorRT-RTX has no target for.
    with pytest.raises(FastgenError, match="compute capability 7.0"):
        export_bundle(checkpoint, report.bundle, trt=True, flavour="tensorrt_rtx", compute_capabilities=["7.0"], overwrite=True)
    assert (report.bundle / "manifest.json").read_text() == before
    assert _leftovers(report.bundle.parent) == []
    read_manifest(report.bundle)  # still whole: every hash verifies


def test_export_command_parses_options_and_prints_the_tables(exported, tmp_path: Path) -> None:
    assert parse_batch("1,4,16") == (1, 4, 16) and parse_batch("8") == (8, 8, 8)
    for bad in ("1,2", "a,b,c", ""):
        with pytest.raises(FastgenError, match="MIN,OPT,MAX"):
            parse_batch(bad)
    console = Console(record=True, width=200)
    report = export_command(exported["udpm"][0], tmp_path / "bundle", batch="2", check=True, console=console)
    text = console.export_text()
    for site in report.sites:
        assert site.name in text and sorted(site.validation.errors) == [2]
    assert "polygraphy comparator vs torch" in text and "pass" in text
