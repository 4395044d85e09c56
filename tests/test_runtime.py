"""fastgen.runtime: sampling a bundle gives the checkpoint's images; hashes, manifest versions, engines that do
not fit this machine and bad calls are each a clear FastgenError."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_export import (  # the same checkpoints as the export tests
    RTX,
    needs_rtx,
    random_checkpoint,
)

from fastgen import api
from fastgen.errors import FastgenError
from fastgen.export import BatchRange, engine_problem, export_bundle, read_manifest
from fastgen.runtime import (
    Bundle,
    check_site_inputs,
    is_bundle,
    load_bundle,
    load_for_sampling,
)

SAMPLER_OPTIONS = {"ddpm": {"sampler": "ddim", "steps": 4, "clip_x0": True}, "udpm": {}}



@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """family → (checkpoint, bundle); the ddpm bundle carries TensorRT-RTX engines where that imports."""
    root = tmp_path_factory.mktemp("runtime")
    result = {}
    for family in ("ddpm", "udpm"):
        checkpoint = random_checkpoint(family, root / f"{family}_run", seed=1)
        trt = family == "ddpm" and RTX is not None
        report = export_bundle(checkpoint, root / f"{family}_bundle", batch=(1, 2, 4), trt=trt, flavour="tensorrt_rtx")
        result[family] = (checkpoint, report.bundle)
    return result


@pytest.fixture
def copy_of(bundles, tmp_path: Path):
    def copy(family: str) -> Path:
        return Path(shutil.copytree(bundles[family][1], tmp_path / f"{family}_copy"))

    return copy


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_bundle_samples_the_checkpoints_images(bundles, family: str) -> None:
    checkpoint, directory = bundles[family]
    assert is_bundle(directory) and not is_bundle(checkpoint)
    bundle = load_bundle(directory)
    assert isinstance(bundle, Bundle) and bundle.family.name == family and bundle.backend == "onnxruntime"
    options = SAMPLER_OPTIONS[family]
    from_bundle = api.sample(bundle, 5, seed=3, **options)
    from_checkpoint = api.sample(api.load_model(checkpoint), 5, seed=3, **options)
    image = bundle.family.image
    assert from_bundle.shape == from_checkpoint.shape == (5, image.channels, image.resolution, image.resolution)
    # fp32 networks in ONNX Runtime and torch round differently; the samplers' noise is the same.
    error = float(torch.linalg.norm(from_bundle - from_checkpoint) / torch.linalg.norm(from_checkpoint))
    worst = float((from_bundle - from_checkpoint).abs().max() / from_checkpoint.abs().max())
    print(f"{family}: bundle (ONNX Runtime) vs checkpoint, seed 3: relative L2 error {error:.2e}, max {worst:.2e}")
    assert error <= 1e-5 and worst <= 1e-4, f"{family}: bundle vs checkpoint relative error {error:.2e}, max {worst:.2e}"
    other_seed = api.sample(bundle, 5, seed=4, **options)
    assert (other_seed - from_checkpoint).abs().max() > 1e-2  # the comparison can fail


def test_a_bundle_samples_explicit_latents_through_its_program(bundles) -> None:
    """UDPM latents (replay, edits) work on a bundle: its stored program takes them as draws; the seed's latents give
    the seed's images bit for bit."""
    _, directory = bundles["udpm"]
    bundle = load_bundle(directory)
    latents = bundle.family.draw_latents(2, 3)
    assert torch.equal(api.sample(bundle, 2, latents=latents), api.sample(bundle, 2, seed=3))
    images, columns = api.edit_udpm_latents(bundle, latents, perturb=[("top", 0.5)], variants=2)
    assert columns == 3  # rows [original, 2 variants]; the network batches 6 images, so to float32 rounding
    torch.testing.assert_close(images[[0, 3]], api.sample(bundle, 2, seed=3), rtol=1e-5, atol=1e-5)


def test_torch_backend_is_the_source_checkpoint(bundles) -> None:
    checkpoint, directory = bundles["udpm"]
    model = load_bundle(directory, backend="torch")
    assert model.checkpoint == checkpoint
    assert torch.equal(api.sample(model, 2, seed=0), api.sample(api.load_model(checkpoint), 2, seed=0))


def test_load_for_sampling_takes_a_bundle_or_a_checkpoint(bundles) -> None:
    checkpoint, directory = bundles["udpm"]
    assert isinstance(load_for_sampling(directory), Bundle)
    assert load_for_sampling(directory, backend="torch").checkpoint == checkpoint
    assert load_for_sampling(checkpoint).checkpoint == checkpoint
    with pytest.raises(FastgenError, match="needs a bundle"):
        load_for_sampling(checkpoint, backend="onnxruntime")


def test_altered_or_missing_files_are_detected(copy_of) -> None:
    directory = copy_of("udpm")
    graph = directory / "level_2.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(FastgenError, match="level_2.onnx does not match its SHA-256"):
        load_bundle(directory)
    graph.unlink()
    with pytest.raises(FastgenError, match="missing level_2.onnx"):
        load_bundle(directory)
    (directory / "manifest.json").unlink()
    with pytest.raises(FastgenError, match="not a bundle"):
        load_bundle(directory)


def test_unknown_manifest_version_and_backend(copy_of) -> None:
    directory = copy_of("udpm")
    with pytest.raises(FastgenError, match="unknown runtime backend 'tvm'"):
        load_bundle(directory, backend="tvm")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["format_version"] = 99
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FastgenError, match="format version 99 is not supported"):
        load_bundle(directory)


def test_a_v1_bundle_says_to_re_export(copy_of) -> None:
    directory = copy_of("udpm")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["program"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FastgenError, match="format version 1 is not supported .*re-export the bundle"):
        load_bundle(directory)


def test_a_bundle_samples_its_program_without_family_code(bundles, copy_of, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored program is the family's for the default options, covered by the hashes, and run as stored."""
    checkpoint, directory = bundles["udpm"]
    bundle = load_bundle(directory)
    stored = (directory / "program.json").read_text()
    assert stored == bundle.family.program().to_json()
    expected = api.sample(bundle, 2, seed=8)

    def no_family_code(**options: object) -> None:
        raise AssertionError("the bundle's default program must not be rebuilt")

    monkeypatch.setattr(bundle.family, "program", no_family_code)
    assert torch.equal(api.sample(bundle, 2, seed=8), expected)
    altered = copy_of("udpm")
    (altered / "program.json").write_text(stored.replace('"kx": 1.0', '"kx": 2.0'))
    with pytest.raises(FastgenError, match="program.json does not match its SHA-256"):
        load_bundle(altered)


def test_bad_calls_to_a_site(bundles) -> None:
    bundle = load_bundle(bundles["ddpm"][1])
    site = bundle.sites["denoiser"]
    shape = site.record.inputs[0].shape
    x, t = torch.randn(2, *shape), torch.full((2,), 10.0)
    assert site(x, t).shape == (2, *site.record.output.shape)
    with pytest.raises(FastgenError, match="takes 2 inputs"):
        site(x)
    with pytest.raises(FastgenError, match=r"input x must be \[batch, {}\]".format(", ".join(map(str, shape)))):
        site(torch.randn(2, shape[0], 2 * shape[1], 2 * shape[2]), t)
    with pytest.raises(FastgenError, match="one batch size"):
        site(x, torch.zeros(3))


def test_batch_outside_the_engine_profile(bundles) -> None:
    record = read_manifest(bundles["ddpm"][1]).site("denoiser")
    profile = record.engine.profile if record.engine else BatchRange(1, 2, 4)
    shape = record.inputs[0].shape
    inputs = (torch.randn(profile.max, *shape), torch.zeros(profile.max))
    check_site_inputs(record, inputs, profile)
    too_many = (torch.randn(profile.max + 1, *shape), torch.zeros(profile.max + 1))
    with pytest.raises(FastgenError, match=f"batch {profile.max + 1} is outside the engine profile 1 … {profile.max}"):
        check_site_inputs(record, too_many, profile)


@needs_rtx
def test_engines_for_another_gpu_or_tensorrt_version_are_refused(bundles, copy_of) -> None:
    record = read_manifest(bundles["ddpm"][1]).site("denoiser").engine
    assert engine_problem(record, RTX.__version__, "8.6") is None
    assert "this GPU is 9.0" in engine_problem(record, RTX.__version__, "9.0")  # the H100: not a TensorRT-RTX target
    assert "built with tensorrt_rtx" in engine_problem(record, "1.0.0.0", "8.6")
    assert "needs a CUDA GPU" in engine_problem(record, RTX.__version__, None)
    assert "not installed" in engine_problem(replace(record, flavour="tensorrt"), None, "9.0")

    with pytest.raises(FastgenError, match="run on CUDA devices, not cpu"):
        load_bundle(bundles["ddpm"][1], backend="tensorrt", device="cpu")
    directory = copy_of("ddpm")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["sites"][0]["engine"]["version"] = "0.9.0"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FastgenError, match="built with tensorrt_rtx 0.9.0"):
        load_bundle(directory, backend="tensorrt", device="cuda")


def test_tensorrt_backend_needs_engines(bundles) -> None:
    with pytest.raises(FastgenError, match="no TensorRT engine for level_1; re-export it with --trt"):
        load_bundle(bundles["udpm"][1], backend="tensorrt", device="cuda")


@pytest.mark.parametrize("family", ["ddpm", "udpm"])
def test_sampling_to_npy_in_chunks_gives_the_whole_sample(bundles, family: str, tmp_path: Path) -> None:
    import numpy as np

    bundle = load_bundle(bundles[family][1])
    path = api.sample_to_npy(bundle, 5, tmp_path / "raw.npy", seed=7, chunk=2)
    streamed = np.load(path)
    image = bundle.family.image
    assert streamed.shape == (5, image.channels, image.resolution, image.resolution) and streamed.dtype == np.float32
    whole = api.sample(bundle, 5, seed=7).numpy()
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["raw.npy"]  # nothing staged is left behind


def test_a_sample_larger_than_its_disk_is_refused_before_work(bundles, tmp_path: Path) -> None:
    bundle = load_bundle(bundles["udpm"][1])
    with pytest.raises(FastgenError, match="GiB free"):
        api.sample_to_npy(bundle, 10**13, tmp_path / "raw.npy")
    assert list(tmp_path.iterdir()) == []
