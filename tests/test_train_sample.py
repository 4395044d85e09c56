"""fastgen train / fastgen sample end to end on every family's tiny preset (CPU, real data: sklearn digits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fastgen import api
from fastgen.cli import app
from fastgen.errors import FastgenError
from fastgen.families import FAMILIES, build_family
from fastgen.training import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {name: ROOT / "train" / f"{name}_tiny.toml" for name in FAMILIES}
runner = CliRunner()



def fixed_batch_loss(model_config, networks, recipe_sections, seed: int = 123) -> float:
    """The family objective's model loss on one fixed batch with fixed noise (same numbers before and after).

    Given the model network alone: a GAN-trained family's adversarial term (scored by whichever discriminator is at
    hand) says nothing about whether the model learned, so only what it fits to data is measured."""
    from fastgen.data import load_dataset

    family = build_family(model_config)
    objective = family.objective(networks, recipe_sections.get("loss", {}))
    data = dict(recipe_sections["data"])
    dataset = load_dataset(data.pop("name"), model_config.image.resolution, model_config.image.channels, **data)
    batch = dataset.images[:64]
    losses = []
    with torch.no_grad():
        for repeat in range(4):
            loss, _ = objective.loss("model", objective.networks, batch, torch.Generator().manual_seed(seed + repeat))
            losses.append(float(loss))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_preset_trains_and_its_loss_falls(family: str, tmp_path: Path) -> None:
    recipe = load_recipe(TINY[family])
    config = api.model_config_from_recipe(recipe.sections)
    torch.manual_seed(recipe.run.seed)
    before = fixed_batch_loss(config, {"model": build_family(config).build_networks()["model"]}, recipe.sections)

    # 150 steps and the EMA weights: UDPM's recipe (λ_adv = 1 from level 1 on, β₁ = 0.5) lets its adversary push the
    # fit up and down for the first hundred steps (per-level log: level-2 fidelity 1.91 at step 40, 2.44 at 100).
    final = api.train(TINY[family], ["run.steps=150", "run.checkpoint_every=150"], run_dir=tmp_path / "run")
    model = api.load_model(final, weights="ema")
    after = fixed_batch_loss(config, {"model": model.networks["model"].train()}, recipe.sections)
    assert after < 0.8 * before, f"{family}: fixed-batch loss {before:.4f} → {after:.4f}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_checkpoint_round_trip_and_seeded_sampling(family: str, tmp_path: Path) -> None:
    final = api.train(TINY[family], ["run.steps=2", "run.checkpoint_every=2"], run_dir=tmp_path / "run")
    first, second = api.load_model(final), api.load_model(tmp_path / "run")  # a run dir means its latest checkpoint
    from safetensors.torch import load_file

    saved = load_file(final / "ema.safetensors")
    for name, value in first.networks["model"].state_dict().items():
        assert torch.equal(value, saved[name]), name
    options = {"ddpm": {"sampler": "ddim", "steps": 5}, "pddpm": {"t_f": 10, "t_s": 10}}.get(family, {})
    a = api.sample(first, 3, seed=7, **options)
    b = api.sample(second, 3, seed=7, **options)
    c = api.sample(first, 3, seed=8, **options)
    res = first.config.image.resolution
    assert a.shape == (3, first.config.image.channels, res, res)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_resumed_udpm_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    """The adversarial family (two update groups, cached predictions) resumes bit for bit."""
    args = ["run.steps=6", "run.checkpoint_every=3", "run.log_every=1"]
    api.train(TINY["udpm"], args, run_dir=tmp_path / "straight")
    api.train(TINY["udpm"], ["run.steps=3", "run.checkpoint_every=3", "run.log_every=1"], run_dir=tmp_path / "split")
    api.train(TINY["udpm"], args, run_dir=tmp_path / "split", resume=True)

    def losses(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]

    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    keys = [k for k in straight[-1] if k.endswith("loss")]
    assert [[r[k] for k in keys] for r in straight] == [[r[k] for k in keys] for r in split]


def test_udpm_level_weights_choose_the_levels_trained(tmp_path: Path) -> None:
    """A level of weight 0 is never the batch's level; the others all are (20 steps at weights 0, 1, 3)."""
    api.train(TINY["udpm"], ["run.steps=20", "run.log_every=1", "loss.level_weights=[0, 1, 3]"], run_dir=tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    trained = [int(key[-1]) for record in logged for key in record if key.startswith("model/fid_l")]
    assert len(trained) == 20 and set(trained) == {2, 3}
    assert trained.count(3) > trained.count(2)


def test_udpm_discriminator_widths_can_be_set_in_the_recipe(tmp_path: Path) -> None:
    """Preset fields, ``channels`` included, override the preset; stages the smallest level cannot hold are dropped."""
    widths = 'model.discriminator={preset="tiny", stem_channels=16, channels=[16, 32, 64, 128], embedding_channels=16}'
    final = api.train(TINY["udpm"], ["run.steps=1", widths], run_dir=tmp_path / "run")
    config = json.loads((final / "config.json").read_text())["objective"]["model"]["networks"]["discriminator"]
    # 16×16 over 3 levels: the coarsest scored image is 4×4, which holds 3 stages (4 → 2 → 1).
    assert (config["stem_channels"], config["channels"], config["embedding_channels"]) == (16, [16, 32, 64], 16)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.family=\"nope\""], "unknown model family 'nope'"),
        (["model.network.preset=\"huge\""], "unknown network preset 'huge'"),
        (["model.network.base_channels=-4"], "base_channels"),
        (["data.name=\"cifar\""], "cifar"),
        (["run.batch_size=4096"], "fewer than run.batch_size"),
        (["diffusion.levels=2"], "alphas"),
        (["loss.lambda_adv=[1.0]"], "lambda_adv must list 3"),
        (["loss.colour=1"], "unknown [loss] keys colour"),
        (["loss.level_weights=[1, 2]"], "level_weights must list 3"),
        (["loss.level_weights=[0, 0, 0]"], "level_weights must not all be 0"),
    ],
)
def test_bad_recipes_are_clear_errors(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(FastgenError, match=None) as error:
        api.train(TINY["udpm"], overrides, run_dir=tmp_path / "run")
    assert message in str(error.value)


def test_cli_train_then_sample_writes_pictures_and_rejects_options_the_family_lacks(tmp_path: Path) -> None:
    from PIL import Image

    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(TINY["udpm"]), "--set", "run.steps=4", "--set", "run.log_every=1", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert Image.open(run / "losses.png").size[0] > 0
    result = runner.invoke(app, ["sample", str(run), "--n", "6", "--nrow", "3", "--zoom", "2", "--device", "cpu", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    side = 2 * 16  # zoomed 16×16 images, 2-pixel padding
    assert Image.open(tmp_path / "g.png").size == (3 * (side + 2) + 2, 2 * (side + 2) + 2)
    result = runner.invoke(app, ["sample", str(run), "--steps", "3", "--device", "cpu"])
    assert result.exit_code != 0
    assert "no option steps" in str(result.exception)
    result = runner.invoke(app, ["sample", str(run), "--clip-x0", "--device", "cpu"])
    assert result.exit_code != 0
    assert "no option clip_x0" in str(result.exception)


def test_cli_ddim_with_clipped_estimates_stays_in_range_and_differs(tmp_path: Path) -> None:
    from PIL import Image

    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(TINY["ddpm"]), "--set", "run.steps=3", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "clipped.png"
    result = runner.invoke(app, ["sample", str(run), "--sampler", "ddim", "--steps", "4", "--n", "4", "--device", "cpu",
                                 "--out", str(out), "--clip-x0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 0
    # What the flag does: a 3-step model's DDIM images run far outside [-1, 1]; clamping x0 at each step keeps them in.
    model = api.load_model(run, device="cpu")
    plain = api.sample(model, 4, seed=0, sampler="ddim", steps=4)
    clipped = api.sample(model, 4, seed=0, sampler="ddim", steps=4, clip_x0=True)
    assert plain.abs().max() > 1.5
    assert clipped.abs().max() <= 1 + 1e-5
