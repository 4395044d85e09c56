"""UDPM latent editing (udpm.md Figs. 6 and 10) from the API and from `fastgen sample` (tiny preset, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fastgen import api
from fastgen.cli import app
from fastgen.diffusion import udpm
from fastgen.errors import FastgenError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
LEVELS = 3  # train/udpm_tiny.toml: 16 → 8 → 4 → 2


@pytest.fixture(scope="module")
def udpm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("udpm") / "run"
    api.train(ROOT / "train" / "udpm_tiny.toml", ["run.steps=2", "run.checkpoint_every=2"], run_dir=run)
    return run


@pytest.fixture(scope="module")
def model(udpm_run: Path) -> api.LoadedModel:
    return api.load_model(udpm_run, device="cpu")


@pytest.fixture(scope="module", params=["box", "gaussian"])
def any_kernel_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> api.LoadedModel:
    """The tiny UDPM with either kernel (a Gaussian one draws two maps per level: Matheron's rule)."""
    run = tmp_path_factory.mktemp(request.param) / "run"
    overrides = ["run.steps=2", "run.checkpoint_every=2", f'diffusion.kernel="{request.param}"']
    api.train(ROOT / "train" / "udpm_tiny.toml", overrides, run_dir=run)
    return api.load_model(run, device="cpu")


def sample_recording_inputs(model: api.LoadedModel, latents: udpm.UDPMLatents) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The images, and x_l for l = L … 1: what each level's network was given (recorded around the real sites)."""
    inputs: dict[int, torch.Tensor] = {}

    def recording(level: int):
        site = model.sites[f"level_{level}"]
        return lambda x: inputs.setdefault(level, x.clone()) is not None and site(x)

    sites = {f"level_{level}": recording(level) for level in range(1, LEVELS + 1)}
    return model.family.sample(sites, latents.batch_size, latents=latents), inputs


@pytest.mark.parametrize("edited", range(1, LEVELS + 2))
def test_editing_map_l_leaves_the_states_at_levels_l_and_above_unchanged(any_kernel_model: api.LoadedModel, edited: int) -> None:
    """Map l (e_l, with e'_l for a Gaussian kernel; l = L + 1 is x_L) enters the step x_l → x_{l-1}: x_L … x_l — the
    inputs of the networks at levels L … l — are bit-identical after the edit, x_{l-1} … x_1 all change. e_1 changes
    nothing at all (the exact posterior collapses onto x̂ at level 1), every other map changes the image."""
    model = any_kernel_model
    latents = model.family.draw_latents(2, 0)
    edited_latents = udpm.perturb_noise(latents, edited, 0.8, torch.Generator().manual_seed(1))
    images, states = sample_recording_inputs(model, latents)
    edited_images, edited_states = sample_recording_inputs(model, edited_latents)
    for level in range(1, LEVELS + 1):
        same = torch.equal(states[level], edited_states[level])
        assert same == (level >= edited), f"x_{level} after editing map {edited}"
    assert torch.equal(images, edited_images) == (edited == 1)


def test_saved_latents_are_the_seeds_and_replay_its_images(any_kernel_model: api.LoadedModel, tmp_path: Path) -> None:
    """--save-latents changes no image: the latents saved are the seeded program's draws, and replaying the file gives
    the same images bit for bit; an interpolation grid's corners are the seed's first four images. Latents of the
    other kernel's format are one clear error."""
    model = any_kernel_model
    images, latents = api.sample_udpm_latents(model, 3, seed=5)
    assert torch.equal(images, api.sample(model, 3, seed=5))
    replayed = api.load_latents(api.save_latents(latents, tmp_path / "latents.pt"))
    assert torch.equal(api.sample(model, 3, latents=replayed), images)
    grid, _ = api.sample_udpm_latents(model, 0, seed=5, interpolate=True, nrow=3)
    torch.testing.assert_close(grid[[0, 2, 6, 8]], api.sample(model, 4, seed=5), rtol=1e-5, atol=1e-5)
    if latents.obs_noises is None:
        other_format = udpm.UDPMLatents(latents.x_top, latents.noises, (*latents.noises[1:], latents.x_top))
        message = "hold observation-noise maps"
    else:
        other_format = udpm.UDPMLatents(latents.x_top, latents.noises)
        message = "hold no observation-noise maps.*save them again with --save-latents"
    with pytest.raises(FastgenError, match=message):
        api.sample(model, 3, latents=api.load_latents(api.save_latents(other_format, tmp_path / "other.pt")))


def test_perturbation_rows_start_with_the_original_and_a_seed_fixes_them(model: api.LoadedModel) -> None:
    latents = model.family.draw_latents(2, 3)
    originals = api.sample(model, 2, latents=latents)
    perturb = [("top", 0.5), (2, 0.5)]
    images, columns = api.edit_udpm_latents(model, latents, perturb=perturb, variants=3, seed=4)
    again, _ = api.edit_udpm_latents(model, latents, perturb=perturb, variants=3, seed=4)
    other, _ = api.edit_udpm_latents(model, latents, perturb=perturb, variants=3, seed=5)
    assert columns == 4 and images.shape == (2 * 2 * 4, 1, 16, 16)  # images × edits rows of 1 + 3
    rows = images.reshape(2, 2, 4, 1, 16, 16)
    for index in range(2):
        for edit in range(2):
            torch.testing.assert_close(rows[index, edit, 0], originals[index], rtol=0, atol=1e-6)
            variants = rows[index, edit, 1:]
            assert all(not torch.equal(variant, originals[index]) for variant in variants)
    assert torch.equal(images, again)
    assert not torch.equal(images, other)
    drawn, _ = api.edit_udpm_latents(model, n=2, seed=3, perturb=perturb, variants=3)
    assert drawn.shape == images.shape  # latents drawn from the seed when none are given


def test_swap_rows_hold_both_originals_around_the_two_exchanges(model: api.LoadedModel) -> None:
    first = model.family.draw_latents(2, 6)
    second = model.family.draw_latents(2, 7)
    images, columns = api.edit_udpm_latents(model, first, swap=[(second, 2)])
    assert columns == 4 and images.shape == (8, 1, 16, 16)
    rows = images.reshape(2, 4, 1, 16, 16)
    for name, latents, column in (("first", first, 0), ("second", second, 3)):
        originals = api.sample(model, 2, latents=latents)
        torch.testing.assert_close(rows[:, column], originals, rtol=0, atol=1e-6, msg=name)
    expected, _ = udpm.swap_noise(first, second, 2)
    torch.testing.assert_close(rows[:, 1], api.sample(model, 2, latents=expected), rtol=0, atol=1e-6)


def test_edit_api_errors(model: api.LoadedModel) -> None:
    latents = model.family.draw_latents(2, 0)
    with pytest.raises(FastgenError, match="latent level must be 1 … 3"):
        api.edit_udpm_latents(model, latents, perturb=[(4, 0.5)])
    with pytest.raises(FastgenError, match="strength must lie in"):
        api.edit_udpm_latents(model, latents, perturb=[(2, 1.5)])
    with pytest.raises(FastgenError, match="perturbations or swaps"):
        api.edit_udpm_latents(model, latents)
    with pytest.raises(FastgenError, match="swap latents hold 1 images, the edited ones 2"):
        api.edit_udpm_latents(model, latents, swap=[(latents.select(0), 1)])


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_cli_replays_saved_latents_and_writes_edit_grids(udpm_run: Path, tmp_path: Path) -> None:
    common = ["--device", "cpu", "--zoom", "1", "--nrow", "3"]
    saved, first = tmp_path / "latents.pt", tmp_path / "first.png"
    result = runner.invoke(app, ["sample", str(udpm_run), "--n", "2", "--seed", "1", "--save-latents", str(saved),
                                 "--out", str(first), *common])  # fmt: skip
    assert result.exit_code == 0, result.output
    replay = tmp_path / "replay.png"
    result = runner.invoke(app, ["sample", str(udpm_run), "--latents", str(saved), "--out", str(replay), *common])
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_png(first), read_png(replay))
    perturbed = tmp_path / "perturbed.png"
    result = runner.invoke(app, ["sample", str(udpm_run), "--latents", str(saved), "--perturb", "top:0.5",
                                 "--perturb", "1:1", "--out", str(perturbed), *common])  # fmt: skip
    assert result.exit_code == 0, result.output
    pixels = read_png(perturbed)
    assert pixels.shape == (4 * 18 + 2, 3 * 18 + 2)  # 2 images × 2 edits rows, original + nrow-1 = 2 variants
    level_one_row = pixels[3 * 18 + 2 : 4 * 18, :]  # image 2, edit "1:1": e_1 has no effect, so 3 equal tiles
    tiles = [level_one_row[:, 2 + 18 * column : 18 * (column + 1)] for column in range(3)]
    assert np.array_equal(tiles[0], tiles[1]) and np.array_equal(tiles[0], tiles[2])
    other = tmp_path / "other.pt"
    runner.invoke(app, ["sample", str(udpm_run), "--n", "2", "--seed", "2", "--save-latents", str(other),
                        "--out", str(tmp_path / "o.png"), *common])  # fmt: skip
    swapped = tmp_path / "swapped.png"
    result = runner.invoke(app, ["sample", str(udpm_run), "--latents", str(saved), "--swap", f"{other}:2",
                                 "--out", str(swapped), *common])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_png(swapped).shape == (2 * 18 + 2, 4 * 18 + 2)


def test_cli_latent_edit_errors_are_clear(udpm_run: Path, tmp_path: Path) -> None:
    saved = tmp_path / "latents.pt"
    runner.invoke(app, ["sample", str(udpm_run), "--n", "1", "--save-latents", str(saved), "--out",
                        str(tmp_path / "g.png"), "--device", "cpu"])  # fmt: skip
    pddpm_run = tmp_path / "pddpm"
    api.train(ROOT / "train" / "pddpm_tiny.toml", ["run.steps=1", "run.checkpoint_every=1"], run_dir=pddpm_run)
    not_latents = tmp_path / "not.pt"
    not_latents.write_bytes(b"garbage")
    cases = [
        ([str(udpm_run), "--perturb", "2"], "expected LEVEL:STRENGTH, got '2'"),
        ([str(udpm_run), "--perturb", "2:lots"], "expected LEVEL:STRENGTH"),
        ([str(udpm_run), "--perturb", "0:0.5"], "latent level must be 1 … 3 (the noise of that step) or top"),
        ([str(udpm_run), "--perturb", "2:0.5", "--save-latents", str(saved)], "do not combine"),
        ([str(udpm_run), "--latents", str(not_latents)], "is not a fastgen UDPM latents file"),
        ([str(udpm_run), "--swap", str(saved)], "expected FILE:LEVEL"),
        ([str(pddpm_run), "--perturb", "2:0.5"], "UDPM features; this model is 'pddpm'"),
    ]
    for arguments, message in cases:
        result = runner.invoke(app, ["sample", *arguments, "--out", str(tmp_path / "x.png"), "--device", "cpu"])
        assert isinstance(result.exception, FastgenError), (arguments, result.output)
        assert message in str(result.exception), (arguments, str(result.exception))
