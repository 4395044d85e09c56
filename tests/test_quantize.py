"""int8 bundles (`fastgen export --quantize int8`): QDQ graphs for every family's tiny model, calibrated on the model's
own sampling inputs, recorded in the manifest, sampled by the runtime unchanged and close to fp32; bad option
combinations are one-line errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from rich.console import Console
from test_bad_inputs import assert_one_clear_line, run_cli
from test_export import random_checkpoint

from fastgen import api
from fastgen.bench import run_bench
from fastgen.errors import FastgenError
from fastgen.export import export_bundle, read_manifest
from fastgen.export.quantize import record_site_inputs, relative_rms
from fastgen.models import load_model
from fastgen.runtime import load_bundle

# Short chains: random-weight networks do not denoise, so a 1000-step chain's state grows ~250× from its first call to
# its last, which no single static range fits (export refuses it); a trained model's state stays O(1).
CASES = {
    "udpm": (),
    "ddpm": ("diffusion.num_steps=20",),
    "pddpm": ("diffusion.num_steps=100", "diffusion.t_f=20", "diffusion.t_s=20"),
    "blur": ("diffusion.num_steps=20",),
}
CALIBRATE = 16  # fewer seeds leave the random-weight networks' ranges under-sampled (6 seeds: 0.35 on udpm level_3)
# Relative RMS of int8 vs fp32 samples of 4 images (random weights, seed 5), measured: udpm 0.081, ddpm 0.0038, pddpm
# 0.0080, blur 0.0060 (the chains' injected noise dominates their images); 2.5× the worst. A broken graph gives O(1).
SAMPLE_TOLERANCE = 0.2


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """family: (checkpoint, fp32 bundle, int8 bundle)."""
    root = tmp_path_factory.mktemp("int8")
    torch.set_num_threads(1)
    result = {}
    for family, overrides in CASES.items():
        checkpoint = random_checkpoint(family, root / f"{family}_run", overrides=overrides)
        fp32 = export_bundle(checkpoint, root / f"{family}_fp32").bundle
        int8 = export_bundle(checkpoint, root / f"{family}_int8", quantize="int8", calibrate=CALIBRATE).bundle
        result[family] = (checkpoint, fp32, int8)
    return result


@pytest.mark.parametrize("family", list(CASES))
def test_int8_graphs_are_qdq_with_float_inputs_and_outputs(bundles, family: str) -> None:
    _, fp32, int8 = bundles[family]
    for record in read_manifest(int8).sites:
        model = onnx.load(str(int8 / record.file))
        onnx.checker.check_model(model)
        ops = [node.op_type for node in model.graph.node]
        assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
        weights = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]
        assert len(weights) > 10 and any(len(w.dims) == 4 for w in weights)  # quantised convolution kernels
        for value in [*model.graph.input, *model.graph.output]:
            assert value.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
        assert [i.name for i in model.graph.input] == [i.name for i in onnx.load(str(fp32 / record.file)).graph.input]


@pytest.mark.parametrize("family", list(CASES))
def test_manifest_records_int8_and_the_calibration(bundles, family: str) -> None:
    checkpoint, _, int8 = bundles[family]
    manifest = read_manifest(int8)
    assert manifest.precision == "int8"
    quantization = manifest.quantization
    assert quantization["precision"] == "int8" and quantization["format"] == "QDQ"
    calibration = quantization["calibration"]
    assert calibration["seeds"] == list(range(CALIBRATE)) and calibration["images_per_seed"] == 1
    assert set(calibration["calls_per_site"]) == {site.name for site in manifest.sites}
    assert all(calls >= 1 for calls in calibration["calls_per_site"].values())
    data = json.loads((int8 / "manifest.json").read_text())
    assert data["precision"] == "int8"
    # Only the graphs and the program: the quantiser leaves nothing else behind, and every file is hashed.
    files = sorted(path.name for path in int8.iterdir() if path.name != "manifest.json")
    assert files == sorted(data["files"]) == sorted(path.name for path in bundles[family][1].iterdir() if path.name != "manifest.json")
    assert read_manifest(bundles[family][1]).quantization is None


@pytest.mark.parametrize("family", list(CASES))
def test_int8_samples_are_close_to_fp32(bundles, family: str) -> None:
    _, fp32, int8 = bundles[family]
    reference = api.sample(load_bundle(fp32), 4, seed=5).numpy()
    images = api.sample(load_bundle(int8), 4, seed=5).numpy()
    assert images.shape == reference.shape and images.dtype == np.float32
    error = relative_rms(images, reference)
    assert 1e-5 < error <= SAMPLE_TOLERANCE, f"{family}: int8 vs fp32 samples, relative RMS {error:.3f}"


def test_calibration_records_the_programs_own_site_inputs(bundles) -> None:
    checkpoint, _, _ = bundles["ddpm"]
    model = load_model(checkpoint)
    program = model.family.program()
    recorded = record_site_inputs(program, model.call_sites, [0, 1], calls_per_site=5)
    calls = recorded["denoiser"]
    (site,) = model.call_sites
    assert len(calls) == 5 and all(x.shape == (2, *site.inputs[0].shape) for x, _ in calls)
    # Evenly spaced along the chain: the first call is at the last timestep and the last at t = 0.
    assert [float(t[0]) for _, t in calls][0] == 19.0 and float(calls[-1][1][0]) == 0.0
    # The first call's input is each seed's own starting noise (image 0 of that seed), not random tensors.
    for row, seed in enumerate((0, 1)):
        first = record_site_inputs(program, model.call_sites, [seed], calls_per_site=1)["denoiser"][0][0]
        assert np.array_equal(first[0], calls[0][0][row])


def test_bad_quantize_options_are_clear_errors(bundles, tmp_path: Path, capsys, monkeypatch) -> None:
    checkpoint = bundles["udpm"][0]
    out = str(tmp_path / "b")
    for args, fragment in [
        (["--quantize", "int8", "--trt"], "TensorRT does not build"),
        (["--calibrate", "4"], "add --quantize int8"),
        (["--quantize", "int4"], "unknown quantisation 'int4'"),
        (["--quantize", "int8", "--precision", "fp16"], "drop --precision fp16"),
        (["--quantize", "int8", "--calibrate", "0"], "--calibrate takes a number of seeds"),
        (["--quantize", "int8", "--check"], "drop --check"),
    ]:
        code, err = run_cli(["export", str(checkpoint), "--out", out, *args], capsys, monkeypatch)
        assert_one_clear_line(code, err, fragment)
        assert fragment in err
    assert not (tmp_path / "b").exists()
    with pytest.raises(FastgenError, match="TensorRT does not build"):
        export_bundle(checkpoint, tmp_path / "b", quantize="int8", trt=True)


def test_bench_times_an_int8_bundle(bundles) -> None:
    rows = run_bench(checkpoint=bundles["udpm"][2], batches=[1], repeats=1, warmup=0, device="cpu", progress=False,
                     console=Console(file=io.StringIO()))  # fmt: skip
    assert [(row["precision"], row["backend"], row["nfe"]) for row in rows] == [("int8", "onnxruntime", 3)]
