"""Checkpoints: one directory per saved step, written atomically.

    RUN_DIR/checkpoints/
        latest                  text file: the newest checkpoint's directory name
        step_000123/
            config.json         family, objective/network configs, effective recipe, fastgen version
            model.safetensors   one <network>.safetensors per trained network (model, discriminator …)
            ema.safetensors     EMA of the model network
            optimizer.pt        {group: Adam state dict}
            trainer.pt          step, RNG states (one per rank), data iterator state, NaN-skip counts
            sha256.json         SHA-256 of every other file, checked whenever the checkpoint is read

A checkpoint is written into a hidden sibling (``.tmp-step_000123``) and renamed into place, and
``latest`` is replaced the same way, so a crash leaves either the old or the new checkpoint, never
half of one. ``optimizer.pt``/``trainer.pt`` are read with ``weights_only=True``: the data
iterator's state must be made of tensors, numbers, strings, lists, tuples and dicts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from fastgen.errors import FastgenError
from fastgen.integrity import contained_file, sha256_file
from fastgen.layout import CHECKPOINTS_DIR, CONFIG_FILE
from fastgen.schema import load_json

EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
TRAINER_FILE = "trainer.pt"
LATEST_FILE = "latest"
HASHES_FILE = "sha256.json"
_STEP_DIR = re.compile(r"step_(\d+)")


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    step: int
    config: dict[str, Any]  # written as config.json: what the sampler/exporter rebuilds from
    networks: dict[str, dict[str, Tensor]]  # network name → state dict
    ema: dict[str, Tensor]
    optimizers: dict[str, dict[str, Any]]  # update group → optimizer state dict
    rng: list[dict[str, Any]]  # one entry per rank
    data_state: Any
    nan_skips: dict[str, int]


class InferenceWeights(NamedTuple):
    """What ``fastgen sample``/``export`` need: the config and one set of model weights."""

    path: Path
    config: dict[str, Any]
    state_dict: dict[str, Tensor]
    source: str  # "ema" or "model"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives in a run directory."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"step_{step:06d}"


def save_checkpoint(run_dir: str | Path, checkpoint: Checkpoint, keep_last: int) -> Path:
    """Write ``checkpoint`` atomically, point ``latest`` at it, prune older ones beyond ``keep_last``."""
    final = checkpoint_dir(run_dir, checkpoint.step)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".tmp-{final.name}"
    shutil.rmtree(staging, ignore_errors=True)  # left by a save that was killed
    staging.mkdir()
    try:
        _write_files(staging, checkpoint)
        _move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_text_atomically(root / LATEST_FILE, final.name + "\n")
    _prune(root, checkpoint.step, keep_last)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` names in a run directory, or None when the run has saved none."""
    return _follow_latest(Path(run_dir) / CHECKPOINTS_DIR)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, given either one or a run directory (→ its latest checkpoint)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return path
    for root in (path / CHECKPOINTS_DIR, path):  # a run directory, or its checkpoints/ folder
        found = _follow_latest(root)
        if found is not None:
            return found
    raise FastgenError(f"{path} is neither a checkpoint directory (no {CONFIG_FILE}) nor a run directory with checkpoints")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a whole checkpoint (weights on CPU) from a checkpoint or run directory."""
    directory = resolve_checkpoint(path)
    _verify(directory, [file.name for file in directory.iterdir() if file.name != HASHES_FILE])
    config = _read_json(directory / CONFIG_FILE)
    networks = {
        file.stem: _read_safetensors(file) for file in sorted(directory.glob("*.safetensors")) if file.name != EMA_FILE
    }
    if "model" not in networks:
        raise FastgenError(f"checkpoint {directory} has no model.safetensors; it is incomplete, use another checkpoint")
    ema = _read_safetensors(directory / EMA_FILE)
    optimizers = _read_torch(directory / OPTIMIZER_FILE)
    trainer = _read_torch(directory / TRAINER_FILE)
    try:
        step, rng, data_state, nan_skips = (trainer[key] for key in ("step", "rng", "data", "nan_skips"))
    except (KeyError, TypeError) as error:
        raise _corrupt(directory / TRAINER_FILE, error) from None
    return Checkpoint(
        step=step,
        config=config,
        networks=networks,
        ema=ema,
        optimizers=optimizers,
        rng=rng,
        data_state=data_state,
        nan_skips=nan_skips,
    )


def load_for_inference(path: str | Path, weights: str = "ema") -> InferenceWeights:
    """The config and the model's ``weights`` ("ema" or "model"), without optimizer or trainer state."""
    if weights not in ("ema", "model"):
        raise FastgenError(f"weights must be 'ema' or 'model', got {weights!r}")
    directory = resolve_checkpoint(path)
    _verify(directory, [CONFIG_FILE, f"{weights}.safetensors"])
    config = _read_json(directory / CONFIG_FILE)
    state_dict = _read_safetensors(directory / f"{weights}.safetensors")
    bad = sum(int((~torch.isfinite(value)).sum()) for value in state_dict.values() if value.is_floating_point())
    if bad:
        raise FastgenError(f"checkpoint {directory}: {weights}.safetensors holds {bad} non-finite (NaN/inf) values, so the "
                           "run had diverged when it was saved; use an earlier checkpoint")  # fmt: skip
    return InferenceWeights(path=directory, config=config, state_dict=state_dict, source=weights)


def _write_files(directory: Path, checkpoint: Checkpoint) -> None:
    # TOML dates in pass-through recipe sections are recorded as their ISO text.
    (directory / CONFIG_FILE).write_text(json.dumps(checkpoint.config, indent=2, default=str) + "\n")
    for name, state in checkpoint.networks.items():
        save_file(_cpu_copy(state), directory / f"{name}.safetensors")
    save_file(_cpu_copy(checkpoint.ema), directory / EMA_FILE)
    torch.save(checkpoint.optimizers, directory / OPTIMIZER_FILE)
    trainer = {
        "step": checkpoint.step,
        "rng": checkpoint.rng,
        "data": checkpoint.data_state,
        "nan_skips": checkpoint.nan_skips,
    }
    torch.save(trainer, directory / TRAINER_FILE)
    hashes = {file.name: sha256_file(file) for file in sorted(directory.iterdir())}
    (directory / HASHES_FILE).write_text(json.dumps(hashes, indent=2) + "\n")
    for file in directory.iterdir():
        _fsync(file)
    _fsync(directory)


def _cpu_copy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # A copy, not a view: safetensors refuses tensors that share storage (tied or sliced weights).
    return {name: value.detach().to("cpu", copy=True).contiguous() for name, value in state.items()}


def _move_into_place(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an existing ``final`` (re-saved step) is swapped out first."""
    if final.exists():
        retired = final.with_name(f".old-{final.name}")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired)
    else:
        os.replace(staging, final)
    _fsync(final.parent)


def _write_text_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".tmp-{path.name}")
    with open(staging, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(staging, path)
    _fsync(path.parent)


def _prune(root: Path, newest: int, keep_last: int) -> None:
    """Drop leftovers of killed saves and all but the last ``keep_last`` checkpoints up to ``newest``.
    Later steps (from a run resumed at an older checkpoint) are left alone."""
    for leftover in [*root.glob(".tmp-step_*"), *root.glob(".old-step_*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    steps = sorted(int(match[1]) for entry in root.iterdir() if (match := _STEP_DIR.fullmatch(entry.name)))
    for step in [s for s in steps if s <= newest][:-keep_last]:
        shutil.rmtree(checkpoint_dir(root.parent, step))


def _follow_latest(root: Path) -> Path | None:
    """The checkpoint ``root/latest`` names: a step_N folder of this very run, never a path or a link elsewhere."""
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise _corrupt(pointer, error) from None
    target = root / name
    if not _STEP_DIR.fullmatch(name) or target.is_symlink():
        raise FastgenError(f"{pointer} names {name[:80]!r}, which is not a checkpoint folder of this run (step_N); "
                           "pass a checkpoint directory instead")  # fmt: skip
    if not (target / CONFIG_FILE).is_file():
        raise FastgenError(f"{pointer} names {target.name}, which is missing or incomplete; pass a checkpoint directory instead")
    return target


def _verify(directory: Path, names: list[str]) -> None:
    """Each of ``names`` is a file of the checkpoint with the SHA-256 its ``sha256.json`` records."""
    what = f"checkpoint {directory}"
    hashes_file = directory / HASHES_FILE
    if not hashes_file.exists():
        warnings.warn(f"{what} has no {HASHES_FILE} (written by an older fastgen): its files cannot be verified", stacklevel=3)
        return
    hashes = _read_json(contained_file(directory, HASHES_FILE, what))
    if not isinstance(hashes, dict) or not all(isinstance(value, str) for value in hashes.values()):
        raise _corrupt(hashes_file, ValueError("not a mapping of file names to SHA-256 hashes"))
    for name in names:
        if name not in hashes:
            raise FastgenError(f"{what}: {name} is not listed in {HASHES_FILE}, so it was not written with this checkpoint; "
                               "remove it or use another checkpoint")  # fmt: skip
        if sha256_file(contained_file(directory, name, what)) != hashes[name]:
            raise FastgenError(f"{what}: {name} does not match its SHA-256 in {HASHES_FILE} (altered, swapped or damaged); "
                               "use another checkpoint")  # fmt: skip


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk, so a rename never exposes data that is not there yet."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _corrupt(file: Path, error: BaseException) -> FastgenError:
    return FastgenError(f"checkpoint file {file} is missing or corrupt ({error}); use another checkpoint")


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = load_json(file.read_bytes(), "its JSON")
    except (OSError, FastgenError) as error:
        raise _corrupt(file, error) from None
    if not isinstance(data, dict):
        raise _corrupt(file, ValueError(f"a JSON object was expected, not a {type(data).__name__}"))
    return data


def _read_safetensors(file: Path) -> dict[str, Tensor]:
    try:
        return load_file(file, device="cpu")
    except (OSError, SafetensorError) as error:
        raise _corrupt(file, error) from None


def _read_torch(file: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    # torch.load's restricted unpickler raises many kinds of error on a damaged file (IndexError, UnpicklingError …).
    except Exception as error:  # noqa: BLE001
        raise _corrupt(file, error) from None
