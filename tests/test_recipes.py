"""Every recipe in train/ describes a model that builds, and its objective runs on a batch of its shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastgen import api
from fastgen.families import build_family
from fastgen.training import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "train").glob("*.toml"))


def test_there_is_a_recipe_per_family_and_dataset() -> None:
    names = {path.stem for path in RECIPES}
    for family in ("ddpm", "udpm", "pddpm", "blur"):
        assert {f"{family}_tiny", f"{family}_fmnist32"} <= names
    assert "udpm_paper64" in names


@pytest.mark.parametrize("path", RECIPES, ids=[path.stem for path in RECIPES])
def test_recipe_builds_and_its_objective_runs(path: Path) -> None:
    recipe = load_recipe(path)
    config = api.model_config_from_recipe(recipe.sections)
    family = build_family(config)
    if "paper" in path.stem:
        # The paper networks: check the size on the meta device instead of running them.
        with torch.device("meta"):
            networks = family.build_networks()
        assert sum(p.numel() for p in networks["model"].net_for(1).parameters()) == pytest.approx(65.41e6, rel=5e-3)
        return
    torch.manual_seed(0)
    networks = family.build_networks()
    objective = family.objective(networks, recipe.sections.get("loss", {}))
    res, channels = config.image.resolution, config.image.channels
    batch = torch.rand(4, channels, res, res) * 2 - 1
    for group in objective.networks:
        loss, _ = objective.loss(group, objective.networks, batch, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss), f"{path.stem}: {group} loss {loss}"
