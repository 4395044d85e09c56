"""fastgen.bench: the CPU default run (rows, JSON, PNG), FLOP counts of the paper's networks, option errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console

from fastgen.bench import ROW_KEYS, preset_family, run_bench, speed_over_baselines, workload
from fastgen.errors import FastgenError
from fastgen.families import FAMILIES
from fastgen.nets.registry import build_network
from test_export import needs_rtx  # TensorRT-RTX builds engines on this CPU machine
from test_kernels import requires_gpu  # the fused kernels' own skip rule (GPU + cuda.core)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One CPU default bench (tiny preset, batches 1 and 8), on conftest's single thread."""
    out = tmp_path_factory.mktemp("bench")
    console = Console(file=io.StringIO(), width=140)
    rows = run_bench(json_path=out / "bench.json", plot_path=out / "bench.png", progress=False, console=console)
    return {"rows": rows, "dir": out, "printed": console.file.getvalue()}


def test_default_run_rows(default_run: dict) -> None:
    """Exactly the JSON keys, positive numbers, every family × sampler × batch (1, 8) of the CPU defaults."""
    rows = default_run["rows"]
    for row in rows:
        assert tuple(row) == ROW_KEYS
        assert row["backend"] == "torch" and row["precision"] == "fp32" and row["res"] == 64
        assert row["device"].startswith("cpu")
        for key in ("nfe", "gflops_per_image", "latency_ms", "images_per_s"):
            assert row[key] > 0, (key, row)
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["latency_ms"] * 1e3)
    seen = {(row["family"], row["sampler"].split(" (")[0], row["batch"]) for row in rows}
    assert {family for family, _, _ in seen} == set(FAMILIES)
    assert all((family, sampler, batch) in seen for family, sampler, _ in seen for batch in (1, 8))


def test_default_run_nfe_per_family(default_run: dict) -> None:
    nfe = {(row["family"], row["sampler"].split(" (")[0]): row["nfe"] for row in default_run["rows"]}
    assert nfe[("udpm", "levels")] == 3
    assert nfe[("ddpm", "1-step")] == 1
    assert nfe[("ddpm", "ancestral")] == 1000
    assert nfe[("ddpm", "ddim-50")] == 50
    assert nfe[("blur", "chain")] == 1000
    # A sample's GFLOPs are its calls' FLOPs: the 1000-step chain is 1000 DDPM steps.
    gflops = {(row["family"], row["sampler"].split(" (")[0]): row["gflops_per_image"] for row in default_run["rows"]}
    assert gflops[("ddpm", "ancestral")] == pytest.approx(1000 * gflops[("ddpm", "1-step")])


def test_default_run_says_how_long_chains_were_timed(default_run: dict) -> None:
    """Chains longer than max_calls (4 on CPU) are scaled or summed, and their rows say so."""
    for row in default_run["rows"]:
        timed_in_full = row["nfe"] <= 4
        assert timed_in_full == (" (" not in row["sampler"]), row
    printed = default_run["printed"]
    assert "(scaled: k calls)" in printed
    assert "Speed over the baseline" in printed


def test_speed_over_baselines_pairs_rows_by_backend_precision_and_batch() -> None:
    def row(family: str, sampler: str, batch: int, speed: float, backend: str = "torch") -> dict:
        return {"family": family, "sampler": sampler, "backend": backend, "precision": "fp32", "batch": batch,
                "images_per_s": speed}  # fmt: skip

    rows = [row("udpm", "levels", 1, 30.0), row("ddpm", "1-step (scaled: k calls)", 1, 10.0), row("udpm", "levels", 8, 50.0),
            row("ddpm", "1-step", 8, 100.0, backend="onnxruntime"), row("ddpm", "ancestral", 1, 0.01), row("blur", "chain", 1, 1.0)]
    ratios = speed_over_baselines(rows)
    assert [(r["family"], r["baseline"], r["batch"], r["ratio"]) for r in ratios] == [("udpm", "ddpm 1-step", 1, 3.0)]


def test_default_run_writes_json_and_png(default_run: dict) -> None:
    directory: Path = default_run["dir"]
    assert json.loads((directory / "bench.json").read_text()) == default_run["rows"]
    with Image.open(directory / "bench.png") as image:
        image.verify()
    with Image.open(directory / "bench.png") as image:
        assert image.format == "PNG" and image.size[0] > 600


def _meta_workload(family_name: str, **options: object):
    """Calls and FLOPs of the paper preset, networks built on the meta device (no memory, no compute)."""
    family = preset_family(family_name, 64, "paper")
    with torch.device("meta"):
        networks = {"model": build_network(family.config.networks["model"])}
    return workload(family, family.call_sites(networks), **options)


def test_paper_udpm_gflops() -> None:
    """ANCHORS.md: the three level calls are 1.40 + 5.53 + 22.27 = 29.21 GFLOPs per image."""
    work = _meta_workload("udpm")
    assert work.calls == {"level_1": 1, "level_2": 1, "level_3": 1}
    assert work.gflops_per_image == pytest.approx(29.21, rel=0.01)
    per_level = [work.flops_per_call[f"level_{level}"] / 1e9 for level in (1, 2, 3)]
    assert per_level == pytest.approx([22.27, 5.53, 1.40], rel=0.01)  # level 1 runs at 32×32, level 3 at 8×8


def test_paper_ddpm_step_gflops() -> None:
    """ANCHORS.md: one DDPM step of the same NCSN++ at 64×64 is 85.05 GFLOPs."""
    work = _meta_workload("ddpm", sampler="ddim", steps=1)
    assert work.nfe == 1
    assert work.gflops_per_image == pytest.approx(85.05, rel=0.01)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"families": ["ddpm", "gan"]}, "unknown model family 'gan'"),
        ({"backends": ["openvino"]}, "unknown bench backend 'openvino'"),
        ({"backends": ["onnxruntime"], "precision": "bf16", "device": "cpu"}, "CPU provider has no bfloat16 kernels"),
        ({"backends": ["tensorrt"], "device": "cpu"}, "tensorrt backend runs TensorRT engines on a CUDA GPU"),
        ({"batches": [1, 0]}, "batch size must be an integer ≥ 1, got 0"),
        ({"batches": [-8]}, "batch size must be an integer ≥ 1, got -8"),
        ({"batches": []}, "at least one batch size"),
        ({"res": 60}, "60x60 is not divisible by γ\\^L = 8"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"preset": "huge"}, "unknown bench preset 'huge'"),
        ({"repeats": 0}, "repeats must be an integer ≥ 1"),
        ({"max_calls": 0}, "max_calls must be an integer ≥ 1"),
        ({"kernels": "magic"}, "unknown kernels choice 'magic'"),
        ({"checkpoint": "x", "res": 32}, "a checkpoint fixes the family"),
        ({"profile_dir": __file__}, "is a file; a folder of profile tables is a folder"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict, message: str) -> None:
    with pytest.raises(FastgenError, match=message):
        run_bench(progress=False, console=Console(file=io.StringIO()), **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
def test_graph_backend_needs_cuda() -> None:
    with pytest.raises(FastgenError, match="graph backend captures CUDA graphs and needs a CUDA device"):
        run_bench(backends=["torch", "graph"], progress=False, console=Console(file=io.StringIO()))


def test_profile_writes_one_op_table_per_sampler_and_batch(tmp_path: Path) -> None:
    run_bench(families=["udpm", "ddpm"], batches=[2], ddim_steps=None, repeats=1, warmup=0, profile_dir=tmp_path,
              progress=False, console=Console(file=io.StringIO()))  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ddpm_1-step_fp32_b2.txt", "ddpm_ancestral_fp32_b2.txt", "udpm_levels_fp32_b2.txt"
    ]
    udpm = (tmp_path / "udpm_levels_fp32_b2.txt").read_text()
    assert udpm.startswith("udpm · batch 2 · first 3 network call(s) · sorted by self_cpu_time_total")
    assert "aten::convolution" in udpm or "aten::conv2d" in udpm  # the network ran under the profiler
    # The 1000-step chain is profiled over the CPU default's first 4 calls only.
    assert "first 4 network call(s)" in (tmp_path / "ddpm_ancestral_fp32_b2.txt").read_text()


# --- fastgen bench --bandwidth: the fused step kernels against a device copy ---------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
def test_bandwidth_needs_a_gpu_and_says_so_in_one_line() -> None:
    from typer.testing import CliRunner

    from fastgen.cli import app

    result = CliRunner().invoke(app, ["bench", "--bandwidth"])
    assert isinstance(result.exception, FastgenError)
    assert "needs a CUDA GPU" in str(result.exception)


@requires_gpu
def test_bandwidth_rows_are_sane_on_a_gpu(tmp_path: Path) -> None:
    from fastgen.bench.bandwidth import BANDWIDTH_KEYS, kernel_bandwidth

    rows = kernel_bandwidth(images=512, res=64, repeats=3)
    assert [row["kernel"] for row in rows] == ["copy_", "udpm_posterior", "udpm_posterior", "ddpm_ancestral", "ddim"]
    for row in rows:
        assert tuple(row) == BANDWIDTH_KEYS
        assert row["latency_ms"] > 0 and row["gb_per_s"] > 0
        # No kernel moves its fewest bytes faster than a plain copy moves them by much (L2 can help a little).
        assert 0 < row["of_copy"] < 2
    assert rows[1]["bytes"] == 512 * 3 * (32 * 32 + 2 * 64 * 64) * 4  # x_l, x_hat in; x_{l-1} out


def test_graph_rows_of_a_long_multi_site_sampler_are_skipped_with_a_reason() -> None:
    from fastgen.bench.run import _graph_skip

    family = preset_family("pddpm", 16, "tiny")
    sites = family.call_sites({"model": build_network(family.config.networks["model"])})
    work = workload(family, sites)
    assert work.nfe > 20 and not work.single_site
    assert "--max-calls" in _graph_skip(family, "pyramid", work, 20)
    assert _graph_skip(family, "pyramid", work, work.nfe) is None  # captured whole when the budget covers it


# --- exported backends: the networks as ONNX graphs (onnxruntime) or engines (tensorrt) ------------------------


def test_onnxruntime_rows_time_the_exported_networks(tmp_path: Path) -> None:
    """onnxruntime rows sit beside the torch rows with the same work; the sites they time compute the torch networks."""
    from fastgen.runtime import exported_sites

    rows = run_bench(families=["udpm"], batches=[1, 2], backends=["torch", "onnxruntime"], repeats=1, warmup=0,
                     device="cpu", progress=False, console=Console(file=io.StringIO()))  # fmt: skip
    by_backend = {(row["backend"], row["batch"]): row for row in rows}
    assert set(by_backend) == {(backend, batch) for backend in ("torch", "onnxruntime") for batch in (1, 2)}
    for batch in (1, 2):
        ort, eager = by_backend["onnxruntime", batch], by_backend["torch", batch]
        assert ort["latency_ms"] > 0 and ort["images_per_s"] == pytest.approx(batch / ort["latency_ms"] * 1e3)
        assert (ort["nfe"], ort["gflops_per_image"]) == (eager["nfe"], eager["gflops_per_image"])

    family = preset_family("udpm", 64, "tiny")
    call_sites = family.call_sites({"model": build_network(family.config.networks["model"]).eval()})
    sites = exported_sites(call_sites, tmp_path, backend="onnxruntime")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["level_1.onnx", "level_2.onnx", "level_3.onnx"]
    for site in call_sites:
        inputs = site.example_inputs(2, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            reference = site.module(*inputs)
        error = (sites[site.name](*inputs) - reference).abs().max() / reference.abs().max()
        assert error <= 1e-4, (site.name, error)


def test_exported_sites_reject_a_backend_that_runs_torch(tmp_path: Path) -> None:
    from fastgen.runtime import exported_sites

    family = preset_family("ddpm", 16, "tiny")
    call_sites = family.call_sites({"model": build_network(family.config.networks["model"])})
    with pytest.raises(FastgenError, match="not 'torch'"):
        exported_sites(call_sites, tmp_path, backend="torch")
    with pytest.raises(FastgenError, match="built for a batch range"):
        exported_sites(call_sites, tmp_path, backend="tensorrt")


@needs_rtx
def test_exported_sites_build_engines_for_the_batch_range(tmp_path: Path) -> None:
    """TensorRT sites: one engine per call site for the benched batch range (TensorRT-RTX builds it without a GPU),
    and opening them on the CPU is one clear error."""
    from fastgen.export import BatchRange
    from fastgen.runtime import exported_sites

    family = preset_family("ddpm", 16, "tiny")
    call_sites = family.call_sites({"model": build_network(family.config.networks["model"]).eval()})
    with pytest.raises(FastgenError, match="TensorRT engines run on CUDA devices"):
        exported_sites(call_sites, tmp_path, backend="tensorrt", batch=BatchRange(1, 4, 4), flavour="tensorrt_rtx")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["denoiser.onnx", "denoiser.plan"]
    assert (tmp_path / "denoiser.plan").stat().st_size > 0


def _tensorrt_skip_reason() -> str | None:
    from fastgen.export.tensorrt import RTX_COMPUTE_CAPABILITIES, cuda_capability, installed_version

    if not torch.cuda.is_available():
        return "no CUDA GPU: TensorRT engines run on one"
    if installed_version("tensorrt"):
        return None
    if installed_version("tensorrt_rtx") and cuda_capability() in RTX_COMPUTE_CAPABILITIES:
        return None
    return f"no TensorRT for this GPU ({cuda_capability()}) here: pip install tensorrt-cu13"


@pytest.mark.skipif(_tensorrt_skip_reason() is not None, reason=_tensorrt_skip_reason() or "")
def test_tensorrt_rows_on_a_gpu() -> None:
    rows = run_bench(families=["udpm"], batches=[1, 4], backends=["tensorrt"], preset="tiny", repeats=2, warmup=1,
                     progress=False, console=Console(file=io.StringIO()))  # fmt: skip
    assert [(row["backend"], row["batch"]) for row in rows] == [("tensorrt", 1), ("tensorrt", 4)]
    assert all(row["latency_ms"] > 0 and row["nfe"] == 3 for row in rows)


@pytest.fixture(scope="module")
def udpm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_export import random_checkpoint

    from fastgen.export import export_bundle

    root = tmp_path_factory.mktemp("bench_bundle")
    return export_bundle(random_checkpoint("udpm", root / "run"), root / "bundle", batch=(1, 2, 4)).bundle


def test_a_bundle_is_benched_on_its_own_graphs(udpm_bundle: Path) -> None:
    """ONNX Runtime rows of the bundle's graphs, with the work (calls, GFLOPs) of the checkpoint it came from."""
    from fastgen.export import read_manifest

    quiet = {"repeats": 1, "warmup": 0, "device": "cpu", "progress": False, "console": Console(file=io.StringIO())}
    rows = run_bench(checkpoint=udpm_bundle, batches=[1, 4], **quiet)
    assert [(row["family"], row["backend"], row["precision"], row["batch"]) for row in rows] == [
        ("udpm", "onnxruntime", "fp32", 1), ("udpm", "onnxruntime", "fp32", 4)
    ]
    assert all(row["latency_ms"] > 0 for row in rows)
    source = run_bench(checkpoint=read_manifest(udpm_bundle).source["checkpoint"], batches=[1], **quiet)[0]
    assert source["backend"] == "torch"
    for key in ("res", "nfe", "gflops_per_image"):
        assert rows[0][key] == source[key], key


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backends": ["torch"]}, "runs on onnxruntime or tensorrt, not torch"),
        ({"precision": "fp16"}, "is fp32; leave --precision unset"),
        ({"profile_dir": "profiles"}, "has no torch networks"),
        ({"backends": ["tensorrt"], "batches": [2, 8]}, "batch 8 is outside the engine profile 1 … 4"),
        ({"families": ["ddpm"]}, "a checkpoint fixes the family"),
    ],
)
def test_bad_bundle_options_are_one_clear_error(udpm_bundle: Path, options: dict, message: str) -> None:
    with pytest.raises(FastgenError, match=message):
        run_bench(checkpoint=udpm_bundle, device="cpu", progress=False, console=Console(file=io.StringIO()), **options)
