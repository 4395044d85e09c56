"""The C++ kit (export/): built once per session with the README's commands; for a tiny bundle of every family
(both UDPM kernels, both blur bases), `fastgen-cpp-sample --npy` equals `fastgen sample BUNDLE --out .npy` for the
same seed; bad bundles get Python's refusals; the installed package builds and runs a consumer project."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export import random_checkpoint

from fastgen import api
from fastgen.errors import FastgenError
from fastgen.export import export_bundle
from fastgen.runtime import load_bundle
from fastgen.sampling import interpreter

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "export"
SAMPLE = BUILD / "fastgen-cpp-sample"
CASES = {  # bundle name: (family, recipe overrides)
    "udpm_box": ("udpm", ()),
    "udpm_gaussian": ("udpm", ("diffusion.kernel=gaussian",)),
    "ddpm": ("ddpm", ("diffusion.num_steps=100",)),
    "blur_fourier": ("blur", ("diffusion.num_steps=50",)),
    "blur_dct": ("blur", ("diffusion.num_steps=50", "diffusion.basis=dct")),
    "pddpm": ("pddpm", ("diffusion.num_steps=200", "diffusion.t_f=20", "diffusion.t_s=20")),
}


def _run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def kit() -> Path:
    """The README's build: cmake -S export -B build/export && cmake --build build/export -j2 (incremental)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (./setup.sh installs the kit's Debian packages)")
    if not (ROOT / ".deps" / "onnxruntime" / "include" / "onnxruntime_cxx_api.h").is_file():
        pytest.skip("ONNX Runtime headers are missing from .deps/ (run ./setup.sh)")
    for command in (("cmake", "-S", "export", "-B", BUILD), ("cmake", "--build", BUILD, "-j2")):
        result = _run(*command)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return SAMPLE


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cppkit")
    result = {}
    for name, (family, overrides) in CASES.items():
        checkpoint = random_checkpoint(family, root / f"{name}_run", seed=2, overrides=overrides)
        result[name] = export_bundle(checkpoint, root / f"{name}_bundle", batch=(1, 2, 4)).bundle
    return result


def cpp_sample(kit: Path, bundle: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    return _run(kit, bundle, "--out", out.with_suffix(".png"), "--npy", out, "--threads", "1", *options)


@pytest.mark.parametrize("name", list(CASES))
def test_cpp_samples_equal_python(kit: Path, bundles: dict[str, Path], name: str, tmp_path: Path) -> None:
    bundle = bundles[name]
    result = cpp_sample(kit, bundle, tmp_path / "cpp.npy", "--n", "3", "--seed", "11")
    assert result.returncode == 0, result.stderr
    from_cpp = np.load(tmp_path / "cpp.npy")
    loaded = load_bundle(bundle)
    from_python = api.sample(loaded, 3, seed=11).numpy()
    assert from_cpp.shape == from_python.shape and from_cpp.dtype == np.float32
    scale = np.abs(from_python).max()
    assert scale > 0.1  # the comparison can fail
    # Untrained networks' samples leave [-1, 1] (blur: |x| ≈ 6), so the 1e-5 is relative to the images' scale above 1:
    # Python's float32 FFTs round more than the kit's float64 ones (blur: 1.5e-5 … 2.7e-5 absolute at |x| ≈ 6), and
    # the kit is the closer of the two to the float64 reference, which it meets to 1e-5 absolute.
    difference = np.abs(from_cpp - from_python).max()
    assert difference <= 1e-5 * max(1.0, scale), f"{name}: C++ vs Python max abs difference {difference:.2e} (scale {scale:.1f})"
    reference = interpreter.sample(loaded.family.default_program, loaded.sites, 3, seed=11, dtype=torch.float64).numpy()
    assert np.abs(from_cpp - reference).max() <= 1e-5, f"{name}: C++ vs the float64 reference {np.abs(from_cpp - reference).max():.2e}"
    other_seed = cpp_sample(kit, bundle, tmp_path / "other.npy", "--n", "3", "--seed", "12")
    assert other_seed.returncode == 0 and np.abs(np.load(tmp_path / "other.npy") - from_cpp).max() > 1e-2
    assert (tmp_path / "cpp.png").stat().st_size > 0


# fastgen_sample_rows of the built library, by ctypes in a process of its own (this one has ONNX Runtime's Python
# module loaded): argv = library, bundle, output .npz; rows and each row's seed sampled alone go to the .npz.
ROWS_SCRIPT = """
import ctypes, sys
import numpy as np
from ctypes import POINTER, byref, c_char_p, c_int, c_int64, c_size_t, c_uint64, c_void_p
class Options(ctypes.Structure):
    _fields_ = [("provider", c_char_p), ("threads", c_int), ("device", c_int), ("verify", c_int), ("onnxruntime_library", c_char_p)]
kit = ctypes.CDLL(sys.argv[1])
kit.fastgen_open.argtypes = [c_char_p, POINTER(Options), POINTER(c_void_p)]
kit.fastgen_last_error.restype = c_char_p
kit.fastgen_image_shape.argtypes = [c_void_p, POINTER(c_int64), POINTER(c_int64), POINTER(c_int64)]
kit.fastgen_sample.argtypes = [c_void_p, c_int64, c_uint64, c_void_p, c_size_t]
kit.fastgen_sample_rows.argtypes = [c_void_p, c_int64, c_void_p, c_void_p, c_void_p, c_size_t]
options, bundle, shape = Options(), c_void_p(), [c_int64() for _ in range(3)]
kit.fastgen_options_init(byref(options))
options.threads = 1
def check(status):
    assert status == 0, kit.fastgen_last_error().decode()
check(kit.fastgen_open(sys.argv[2].encode(), byref(options), byref(bundle)))
check(kit.fastgen_image_shape(bundle, *map(byref, shape)))
def sample(call, n, *arguments):
    images = np.zeros((n, *(size.value for size in shape)), np.float32)
    check(call(bundle, n, *arguments, images.ctypes.data, images.size))
    return images
seeds, indices = np.array([12, 11, 12, 2**64 - 1, 11], np.uint64), np.array([2, 0, 0, 1, 3], np.uint64)
singles = {f"seed_{seed}": sample(kit.fastgen_sample, int(indices[seeds == seed].max()) + 1, int(seed)) for seed in set(seeds.tolist())}
np.savez(sys.argv[3], seeds=seeds, indices=indices, rows=sample(kit.fastgen_sample_rows, len(seeds), seeds.ctypes.data, indices.ctypes.data),
         **singles)
"""


@pytest.mark.parametrize("name", list(CASES))
def test_sample_rows_equal_each_seeds_sample(kit: Path, bundles: dict[str, Path], name: str, tmp_path: Path) -> None:
    """fastgen_sample_rows with mixed (seed, index) rows: each row bit-identical to its seed's own sample."""
    result = _run(sys.executable, "-c", ROWS_SCRIPT, BUILD / "libfastgen_runtime.so", bundles[name], tmp_path / "rows.npz")
    assert result.returncode == 0, result.stderr
    saved = np.load(tmp_path / "rows.npz")
    for row, (seed, index) in enumerate(zip(saved["seeds"], saved["indices"], strict=True)):
        assert np.array_equal(saved["rows"][row], saved[f"seed_{seed}"][index]), f"{name}: row {row} (seed {seed}, image {index})"
    assert np.abs(saved["rows"][1] - saved["rows"][2]).max() > 1e-2  # the rows differ: the comparison can fail


def _cuda_kit() -> str | None:
    """Why the kit's GPU path cannot run here, or None when it can."""
    import onnxruntime

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
    return None


@pytest.mark.parametrize("name", list(CASES))
def test_gpu_kit_samples_equal_the_cpu_kit(kit: Path, bundles: dict[str, Path], name: str, tmp_path: Path) -> None:
    """The device-resident interpreter (--provider cuda) against the CPU one, per family; skips without a GPU."""
    if (reason := _cuda_kit()) is not None:
        pytest.skip(reason)
    cpu = cpp_sample(kit, bundles[name], tmp_path / "cpu.npy", "--n", "3", "--seed", "11")
    gpu = cpp_sample(kit, bundles[name], tmp_path / "gpu.npy", "--n", "3", "--seed", "11", "--provider", "cuda")
    assert cpu.returncode == 0 and gpu.returncode == 0, cpu.stderr + gpu.stderr
    from_cpu, from_gpu = np.load(tmp_path / "cpu.npy"), np.load(tmp_path / "gpu.npy")
    scale = np.abs(from_cpu).max()
    assert scale > 0.1  # the comparison can fail
    # The device draws its normals with float32 Box–Muller and the CUDA provider's convolutions may use TF32.
    difference = np.abs(from_gpu - from_cpu).max()
    assert difference <= 5e-3 * max(1.0, scale), f"{name}: GPU vs CPU kit max abs difference {difference:.2e} (scale {scale:.1f})"


@pytest.mark.parametrize("family, overrides", [("udpm", ()), ("ddpm", ("diffusion.num_steps=20",))])
def test_int8_bundles_run_unchanged_and_equal_python(kit: Path, family: str, overrides: tuple[str, ...], tmp_path: Path) -> None:
    """int8 QDQ graphs take and return float32: the kit samples them as any bundle, with Python's images."""
    checkpoint = random_checkpoint(family, tmp_path / "run", seed=2, overrides=overrides)
    bundle = export_bundle(checkpoint, tmp_path / "int8", quantize="int8").bundle
    result = cpp_sample(kit, bundle, tmp_path / "cpp.npy", "--n", "3", "--seed", "11")
    assert result.returncode == 0, result.stderr
    from_python = api.sample(load_bundle(bundle), 3, seed=11).numpy()
    from_cpp = np.load(tmp_path / "cpp.npy")
    scale = np.abs(from_python).max()
    assert scale > 0.1 and np.abs(from_cpp - from_python).max() <= 1e-5 * max(1.0, scale)


def test_fastgen_sample_writes_the_same_raw_images(kit: Path, bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = bundles["udpm_box"]
    python = _run(sys.executable, "-m", "fastgen", "sample", bundle, "--n", "4", "--seed", "3", "--out", tmp_path / "py.npy")
    assert python.returncode == 0, python.stderr
    cpp = cpp_sample(kit, bundle, tmp_path / "cpp.npy", "--n", "4", "--seed", "3")
    assert cpp.returncode == 0, cpp.stderr
    assert np.abs(np.load(tmp_path / "py.npy") - np.load(tmp_path / "cpp.npy")).max() <= 1e-5


def _python_refusal(bundle: Path) -> str:
    with pytest.raises(FastgenError) as error:
        load_bundle(bundle)
    return str(error.value)


def _cpp_refusal(kit: Path, bundle: Path, tmp_path: Path) -> str:
    result = cpp_sample(kit, bundle, tmp_path / "refused.npy")
    assert result.returncode == 1 and result.stderr.startswith("error: "), result.stderr
    return result.stderr.removeprefix("error: ").strip()


def _altered(bundle: Path) -> None:
    with open(bundle / "level_1.onnx", "ab") as file:
        file.write(b"\0")


def _missing(bundle: Path) -> None:
    (bundle / "level_2.onnx").unlink()


def _linked(bundle: Path) -> None:
    (bundle / "level_1.onnx").rename(bundle.parent / "elsewhere.onnx")
    (bundle / "level_1.onnx").symlink_to(bundle.parent / "elsewhere.onnx")


def _version_1(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _escaping(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../level_1.onnx"] = manifest["files"]["level_1.onnx"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_altered, _missing, _version_1, _escaping, _linked], ids=lambda f: f.__name__.strip("_"))
def test_bad_bundles_get_pythons_refusals(kit: Path, bundles: dict[str, Path], tmp_path: Path, damage) -> None:
    bundle = Path(shutil.copytree(bundles["udpm_box"], tmp_path / "bundle"))
    damage(bundle)
    cpp = _cpp_refusal(kit, bundle, tmp_path)
    python = _python_refusal(bundle)
    assert cpp == python or cpp.endswith(": " + python), f"C++: {cpp}\nPython: {python}"


@pytest.mark.parametrize("arguments, expected", [
    (("--out", "{bundle}/manifest.json"), "{bundle}/manifest.json is inside the bundle {bundle}; write it somewhere else"),
    (("--npy", "{bundle}/level_1.onnx"), "{bundle}/level_1.onnx is inside the bundle {bundle}; write it somewhere else"),
    (("--out", "{tmp}/grid.jpg"), "{tmp}/grid.jpg: a PNG image is written to a file ending in .png; name it so"),
    (("--out", "{tmp}/missing/grid.png"), "{tmp}/missing/grid.png: its folder {tmp}/missing does not exist; create it first"),
    (("--seed", "18446744073709551616"), "--seed takes an integer from 0 to 18446744073709551615, got '18446744073709551616'"),
    (("--seed", " -1"), "--seed takes an integer from 0 to 18446744073709551615, got ' -1'"),
])  # fmt: skip
def test_app_refuses_unsafe_outputs_and_bad_seeds(kit: Path, bundles: dict[str, Path], tmp_path: Path, arguments, expected) -> None:
    """fastgen-cpp-sample checks its outputs (fastgen/outputs.py's rules) and its numbers before any work; the bundle stays intact."""
    bundle = Path(shutil.copytree(bundles["udpm_box"], tmp_path / "bundle")).resolve()
    before = {path.name: path.read_bytes() for path in bundle.iterdir()}
    fill = {"bundle": str(bundle), "tmp": str(tmp_path.resolve())}
    result = _run(kit, bundle, "--out", tmp_path / "grid.png", *(argument.format(**fill) for argument in arguments))
    assert result.returncode in (1, 2) and result.stderr.startswith("error: " + expected.format(**fill)), result.stderr
    assert {path.name: path.read_bytes() for path in bundle.iterdir()} == before
    assert not (tmp_path / "grid.png").exists()


def test_engine_profile_limits_the_batch_for_tensorrt_providers(kit: Path, bundles: dict[str, Path], tmp_path: Path) -> None:
    result = cpp_sample(kit, bundles["ddpm"], tmp_path / "x.npy", "--n", "5", "--provider", "tensorrt", "--no-verify")
    assert result.returncode == 1
    # An ONNX Runtime without the TensorRT provider (the CPU wheel) says so; where it opens, the batch is refused.
    assert ("batch 5 is outside the engine profile 1 … 4" in result.stderr
            or "execution provider tensorrt is not available" in result.stderr), result.stderr


def test_installed_package_builds_a_consumer(kit: Path, bundles: dict[str, Path], tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    install = _run("cmake", "--install", BUILD, "--prefix", prefix)
    assert install.returncode == 0, install.stderr
    assert (prefix / "include" / "fastgen" / "fastgen.h").is_file()
    consumer = tmp_path / "consumer"
    for command in (("cmake", "-S", ROOT / "export" / "consumer", "-B", consumer, f"-DCMAKE_PREFIX_PATH={prefix}"),
                    ("cmake", "--build", consumer, "-j2")):  # fmt: skip
        result = _run(*command)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    outputs = [_run(consumer / program, bundles["udpm_box"]) for program in ("consumer_c", "consumer_cpp")]
    for output in outputs:
        assert output.returncode == 0, output.stderr
        assert output.stdout.startswith("udpm 1x16x16 mean ")
    assert float(outputs[0].stdout.split()[-1]) == pytest.approx(float(outputs[1].stdout.split()[-1]), abs=1e-5)
