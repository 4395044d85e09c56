"""The training engine: recipes, the family-agnostic loop, checkpoints, EMA, multi-process runs.

A CLI builds the recipe, the family's objective and the data iterator, then calls ``train``:

    recipe = load_recipe("train/udpm_fmnist.toml", ["optim.lr=2e-4"])
    torch.manual_seed(recipe.run.seed)          # reproducible network initialisation
    final = train(recipe, objective, batches, resume=True)

``load_for_inference`` is the reading side for ``fastgen sample``/``export``.
"""

from fastgen.training.checkpoint import (
    Checkpoint,
    InferenceWeights,
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    load_for_inference,
    resolve_checkpoint,
    save_checkpoint,
)
from fastgen.training.ema import EMA
from fastgen.training.loop import Batches, Objective, Trainer, train
from fastgen.training.recipe import (
    OptimConfig,
    Recipe,
    RunConfig,
    apply_overrides,
    load_recipe,
    parse_recipe,
)

__all__ = [
    "EMA",
    "Batches",
    "Checkpoint",
    "InferenceWeights",
    "Objective",
    "OptimConfig",
    "Recipe",
    "RunConfig",
    "Trainer",
    "apply_overrides",
    "checkpoint_dir",
    "latest_checkpoint",
    "load_checkpoint",
    "load_for_inference",
    "load_recipe",
    "parse_recipe",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]
