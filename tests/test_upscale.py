"""PDDPM super-resolution from the API and from `fastgen upscale` (tiny preset, CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fastgen import api
from fastgen.cli import app
from fastgen.data import save_image_grid
from fastgen.diffusion import pddpm
from fastgen.errors import FastgenError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
FAST = {"t_s": 10, "dt_s": 0.5}  # 5 reverse steps per level


@pytest.fixture(scope="module")
def pddpm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pddpm") / "run"
    api.train(ROOT / "train" / "pddpm_tiny.toml", ["run.steps=20", "run.checkpoint_every=20"], run_dir=run)
    return run


@pytest.fixture(scope="module")
def model(pddpm_run: Path) -> api.LoadedModel:
    return api.load_model(pddpm_run, device="cpu")


def low_resolution(size: int, batch: int = 3) -> torch.Tensor:
    """Digit-like test inputs: smooth blobs in [-1, 1] (deterministic)."""
    images = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(5)) * 2 - 1
    return images.clamp(-1, 1)


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_gives_model_sized_images_and_a_seed_fixes_them(model: api.LoadedModel, scale: int) -> None:
    lr = low_resolution(16 // scale)
    first = api.upscale(model, lr, scale, seed=1, **FAST)
    again = api.upscale(model, lr, scale, seed=1, **FAST)
    other = api.upscale(model, lr, scale, seed=2, **FAST)
    assert first.shape == (3, 1, 16, 16)
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("scale", [2, 4])
def test_guidance_reduces_the_data_consistency_error(model: api.LoadedModel, scale: int) -> None:
    """Same seed and noise, λ = 0 vs λ = scale²/2 (a full projection step, see sample_super_resolution):
    the guided result agrees far better with the input when block-averaged back down (‖D x̂ − y‖²)."""
    lr = low_resolution(16 // scale, batch=6)
    errors = {}
    for guidance in (0.0, scale**2 / 2):
        out = api.upscale(model, lr, scale, seed=0, guidance=guidance, **FAST)
        errors[guidance] = pddpm.consistency_loss(out, lr).mean().item()
    unguided, guided = errors.values()
    assert guided < 0.5 * unguided, errors


def test_upscale_refuses_options_it_cannot_use(model: api.LoadedModel) -> None:
    with pytest.raises(FastgenError, match="no t_f"):
        api.upscale(model, low_resolution(8), 2, t_f=10)
    with pytest.raises(FastgenError, match="needs 8x8 inputs"):
        api.upscale(model, low_resolution(4), 2)
    with pytest.raises(FastgenError, match=r"guidance \(λ\) must be ≥ 0"):
        api.upscale(model, low_resolution(8), 2, guidance=-1.0)
    with pytest.raises(FastgenError, match=r"needs the sizes \[4, 8, 16\] in the model's pyramid; it has \[8, 16\]"):
        api.upscale(model, low_resolution(2), 8)  # the tiny recipe's pyramid has no 4×4 site


def write_png(path: Path, images: torch.Tensor) -> Path:
    return save_image_grid(images, path, nrow=1, padding=0)


def test_cli_upscales_files_and_folders(pddpm_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lr"
    for index in range(2):
        write_png(folder / f"digit{index}.png", low_resolution(8)[index : index + 1])
    result = runner.invoke(app, ["upscale", str(pddpm_run), str(folder), "--scale", "2", "--out", str(tmp_path / "hr"),
                                 "--t-s", "10", "--dt-s", "0.5", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "hr").iterdir()) == ["digit0.png", "digit1.png"]
    assert Image.open(tmp_path / "hr" / "digit0.png").size == (16, 16)
    single = write_png(tmp_path / "small.png", low_resolution(4)[:1])
    result = runner.invoke(app, ["upscale", str(pddpm_run), str(single), "--scale", "4", "--out", str(tmp_path / "big.png"),
                                 "--t-s", "10", "--dt-s", "0.5", "--guidance", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "big.png") as image:
        assert (image.size, image.mode) == ((16, 16), "L")


def test_cli_upscale_bad_inputs_are_clear_errors(pddpm_run: Path, tmp_path: Path) -> None:
    grey8 = write_png(tmp_path / "grey8.png", low_resolution(8)[:1])
    rgb8 = write_png(tmp_path / "rgb8.png", low_resolution(8)[:1].expand(1, 3, 8, 8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    udpm_run = tmp_path / "udpm"
    api.train(ROOT / "train" / "udpm_tiny.toml", ["run.steps=1", "run.checkpoint_every=1"], run_dir=udpm_run)
    cases = [
        ([str(pddpm_run), str(grey8), "--scale", "4"], "grey8.png is 8x8 pixels; ×4 upscaling with this 16x16 model needs 4x4"),
        ([str(pddpm_run), str(rgb8), "--scale", "2"], "rgb8.png is RGB but the model makes grey images"),
        ([str(pddpm_run), str(broken), "--scale", "2"], "cannot read"),
        ([str(pddpm_run), str(tmp_path / "missing.png"), "--scale", "2"], "missing.png does not exist"),
        ([str(pddpm_run), str(grey8), "--scale", "3"], "--scale must be 2 or 4"),
        ([str(udpm_run), str(grey8), "--scale", "2"], "this model is 'udpm'"),
        ([str(pddpm_run), str(grey8), str(grey8), "--scale", "2"], "names one PNG file but there are 2 inputs"),
    ]
    for arguments, message in cases:
        result = runner.invoke(app, ["upscale", *arguments, "--out", str(tmp_path / "out.png"), "--device", "cpu"])
        assert isinstance(result.exception, FastgenError), (arguments, result.output)
        assert message in str(result.exception), (arguments, str(result.exception))
    # From the console: one line on stderr, exit status 2, no traceback.
    proc = subprocess.run([sys.executable, "-m", "fastgen", "upscale", str(pddpm_run), str(rgb8), "--scale", "2",
                           "--out", str(tmp_path / "o.png"), "--device", "cpu"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_upscales_rgb_with_an_rgb_model_and_refuses_grey(tmp_path: Path) -> None:
    run = tmp_path / "rgb"
    api.train(ROOT / "train" / "pddpm_tiny.toml", ["model.channels=3", "run.steps=1", "run.checkpoint_every=1"], run_dir=run)
    colour = write_png(tmp_path / "colour.png", low_resolution(8, batch=3).reshape(1, 3, 8, 8))
    grey = write_png(tmp_path / "grey.png", low_resolution(8)[:1])
    arguments = ["--scale", "2", "--t-s", "10", "--dt-s", "0.5", "--device", "cpu"]
    result = runner.invoke(app, ["upscale", str(run), str(colour), "--out", str(tmp_path / "big.png"), *arguments])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "big.png") as image:
        assert (image.size, image.mode) == ((16, 16), "RGB")
    result = runner.invoke(app, ["upscale", str(run), str(grey), "--out", str(tmp_path / "no.png"), *arguments])
    assert "grey.png is grey but the model makes RGB images" in str(result.exception)
