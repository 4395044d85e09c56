"""The names of fastgen's on-disk artefacts, in one place: what writers create and what the output guard protects.

    RUN_DIR/                    recipe.json, log.jsonl, losses.png, checkpoints/
        checkpoints/            latest + one step_NNNNNN/ per saved step (config.json, *.safetensors, *.pt, sha256.json)
    BUNDLE/                     manifest.json + one graph (and engine) per call site
    SHARDS/                     shards.json + shard-<first image>.npy (+ PNGs) per shard (``fastgen sample --ray``)
"""

from __future__ import annotations

from pathlib import Path

RECIPE_FILE = "recipe.json"
LOG_FILE = "log.jsonl"
CHECKPOINTS_DIR = "checkpoints"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
SHARDS_FILE = "shards.json"
RUN_FILES = (RECIPE_FILE, LOG_FILE, CHECKPOINTS_DIR)  # what a run cannot lose (losses.png is redrawn from the log)


def is_checkpoint(path: Path) -> bool:
    """A checkpoint directory: its config.json beside safetensors weights."""
    return (path / CONFIG_FILE).is_file() and any(path.glob("*.safetensors"))


def is_run(path: Path) -> bool:
    """A run directory: what ``fastgen train`` writes (a recorded recipe, a log or a checkpoints folder)."""
    return (path / RECIPE_FILE).is_file() or (path / LOG_FILE).is_file() or (path / CHECKPOINTS_DIR).is_dir()


def is_bundle(path: Path) -> bool:
    """A bundle directory (``fastgen export``): it has a manifest."""
    return (path / MANIFEST_FILE).is_file()


def artefact(path: Path) -> str | None:
    """What a directory holds that no output may replace or write into: 'run directory', 'checkpoint', 'bundle',
    "run's checkpoints folder", or None."""
    if not path.is_dir():
        return None
    if is_checkpoint(path):
        return "checkpoint"
    if is_bundle(path):
        return "bundle"
    if path.name == CHECKPOINTS_DIR and is_run(path.parent):
        return "run's checkpoints folder"
    if is_run(path):
        return "run directory"
    return None
