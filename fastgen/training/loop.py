"""The family-agnostic training loop: the objective says what to minimise, the engine does the rest.

Objective protocol
------------------
An objective is any object with:

``networks: Mapping[str, nn.Module]``
    The trained networks by name, e.g. ``{"model": unet}`` or ``{"model": g, "discriminator": d}``.
    ``"model"`` is required: it is the network that gets the EMA and that sample/export use. Each
    network is one *update group* with its own Adam optimizer; groups are updated in this mapping's
    order, once per step. Names become file names (``<name>.safetensors``); ``"ema"`` is reserved.
    The engine moves these networks to the training device; anything else the objective holds on a
    device (a frozen feature net, schedule tensors) it moves itself, e.g. to ``batch.device``.

``loss(group, nets, batch, generator) -> (loss, logs)``
    The scalar loss to minimise for update group ``group``, on this rank's share of the batch.
    Call networks through ``nets[name]``, never through your own references: ``nets[group]`` is the
    DistributedDataParallel wrapper when the job is distributed (that is what averages gradients),
    the other networks are plain and frozen for this update (gradients still flow *through* them,
    e.g. a generator's loss through the discriminator, but their weights get none). ``batch`` is a
    tensor or an ``(images, labels)`` tuple already on the device; draw all noise from ``generator``
    (its state is checkpointed, so a resumed run draws the same noise). ``logs`` maps names to
    scalars (floats or 0-d tensors) that are averaged over ranks and logged as ``<group>/<name>``.
    On CUDA the call runs under bf16 autocast.

``config() -> dict``
    JSON-serialisable description written into every checkpoint's config.json: must hold
    ``"family"`` and whatever the sampler/exporter needs to rebuild the networks and the process.

Data iterator
-------------
Any iterator whose ``__next__`` returns the next *global* batch (``run.batch_size`` images, a
tensor or an ``(images, labels)`` tuple), forever, with ``state_dict()``/``load_state_dict()`` that
capture its position so a resumed run continues with the very next batch. Every rank builds the
same iterator (same seed); the engine hands each rank its slice.

Engine, per step and group: set the warmup learning rate, run the objective, backward, average the
loss/logs over ranks, skip the update (and count it) if the loss or gradient norm is non-finite,
else clip the gradient norm and step Adam; then the model's EMA. Logs every ``run.log_every`` steps
(``log.jsonl`` + progress bar), checkpoints every ``run.checkpoint_every`` steps and at the end.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from fastgen import __version__
from fastgen.errors import FastgenError
from fastgen.layout import LOG_FILE, RECIPE_FILE
from fastgen.progress import progress_bar
from fastgen.training import distributed
from fastgen.training.checkpoint import (
    Checkpoint,
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from fastgen.training.distributed import Batch
from fastgen.training.ema import EMA
from fastgen.training.recipe import Recipe

MODEL = "model"
# A run whose updates are skipped this many steps in a row (non-finite loss or gradient) has diverged: it stops
# with an error instead of burning its budget on skipped steps.
MAX_CONSECUTIVE_SKIPS = 20


class Objective(Protocol):
    """What a model family plugs into the engine (see the module docstring)."""

    networks: Mapping[str, nn.Module]

    def loss(
        self, group: str, nets: Mapping[str, nn.Module], batch: Batch, generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, float | Tensor]]: ...

    def config(self) -> dict[str, Any]: ...


class Batches(Protocol):
    """An endless iterator of global batches whose position can be saved and restored."""

    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Trainer:
    """Trains an objective's networks as the recipe says, writing logs and checkpoints to ``run_dir``.

    ``run_dir`` defaults to ``<run.out_dir>/<run.name>``. ``resume``: False starts a new run (and
    refuses a run directory that already has checkpoints), True continues from the run's latest
    checkpoint (starting fresh if there is none), a path continues from that checkpoint.
    The global torch RNG is reseeded from ``run.seed``: seed it yourself before building the
    networks if their initialisation must be reproducible.
    """

    def __init__(
        self,
        recipe: Recipe,
        objective: Objective,
        batches: Batches,
        *,
        run_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        allow_new_data: bool = False,
    ) -> None:
        self.recipe, self.objective, self.batches = recipe, objective, batches
        self.allow_new_data = allow_new_data
        self.run_dir = Path(run_dir) if run_dir is not None else recipe.run.directory
        self.env, self.device = distributed.setup(recipe.run.device)
        if recipe.run.batch_size % self.env.world_size:
            raise FastgenError(
                f"run.batch_size = {recipe.run.batch_size} does not split over {self.env.world_size} processes; "
                "make it a multiple of the world size"
            )
        self.networks = dict(objective.networks)
        self._objective_config = _check_objective(objective, recipe)
        self.optim = {group: recipe.optim.for_group(group) for group in self.networks}
        self.params: dict[str, list[nn.Parameter]] = {}
        self.optimizers: dict[str, torch.optim.Adam] = {}
        for group, net in self.networks.items():
            net.to(self.device)
            self.params[group] = [p for p in net.parameters() if p.requires_grad]
            if not self.params[group]:
                raise FastgenError(f"network '{group}' has no trainable parameters; leave it out of objective.networks")
            cfg = self.optim[group]
            self.optimizers[group] = torch.optim.Adam(
                self.params[group], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=0.0
            )
        self.wrapped = {group: distributed.wrap(net, self.env, self.device) for group, net in self.networks.items()}
        self.ema = EMA(self.networks[MODEL], recipe.optim.ema_decay)
        torch_seed, noise_seed = _rank_seeds(recipe.run.seed, self.env)
        torch.manual_seed(torch_seed)
        self.noise = torch.Generator(self.device).manual_seed(noise_seed)
        self.step = 0
        self.nan_skips = dict.fromkeys(self.networks, 0)
        self.skips_in_a_row = dict.fromkeys(self.networks, 0)
        self._start(resume)

    def run(self) -> Path:
        """Train up to ``run.steps`` (or ``run.max_minutes``); returns the final checkpoint's directory."""
        run = self.recipe.run
        meter = _Meter()
        deadline = time.monotonic() + run.max_minutes * 60 if run.max_minutes else math.inf
        out_of_time = False
        with progress_bar(total=run.steps, initial=self.step, desc=run.name, unit="step", disable=not self.env.is_main) as bar:
            while self.step < run.steps and not out_of_time:
                started = time.perf_counter()
                stats = self.train_step(next(self.batches))
                meter.add(stats, time.perf_counter() - started, run.batch_size)
                bar.update()
                at_log_point = self.step % run.log_every == 0 or self.step == run.steps
                if at_log_point and deadline < math.inf:
                    # Decided at log points only, and agreed over ranks, so every rank stops at the same step.
                    late = torch.tensor([float(time.monotonic() > deadline)], device=self.device)
                    out_of_time = distributed.mean(late, self.env).item() > 0
                if at_log_point:
                    record = {"step": self.step, **meter.summary(), "nan_skips": sum(self.nan_skips.values())}
                    meter = _Meter()
                    if self.env.is_main:
                        _append_log(self.run_dir / LOG_FILE, record)
                        loss = record.get(f"{MODEL}/loss", math.nan)  # absent if every update was skipped
                        bar.set_postfix(loss=f"{loss:.4g}", img_s=f"{record['images_per_s']:.1f}")
                if self.step % run.checkpoint_every == 0 or self.step == run.steps or out_of_time:
                    self.save()
        if out_of_time and self.env.is_main:
            print(f"{run.name}: run.max_minutes = {run.max_minutes:g} reached at step {self.step}; "
                  "checkpoint written, --resume continues the run")
        return checkpoint_dir(self.run_dir, self.step)

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One step on a global batch: each group's update in order, then the EMA. Returns the
        scalars of the groups that updated (``<group>/loss``, ``<group>/grad_norm``, ``<group>/lr`` …)."""
        images = batch if isinstance(batch, Tensor) else batch[0]
        if images.shape[0] != self.recipe.run.batch_size:
            raise FastgenError(
                f"the data iterator gave a batch of {images.shape[0]}, but run.batch_size = {self.recipe.run.batch_size}; "
                "build the iterator with the recipe's (global) batch size, dropping the last partial batch of an epoch"
            )
        batch = distributed.local_slice(batch, self.env, self.device)
        stats: dict[str, float] = {}
        for group in self.networks:
            group_stats = self._update(group, batch)
            if group_stats is None:
                continue
            stats.update({f"{group}/{name}": value for name, value in group_stats.items()})
            if group == MODEL:
                self.ema.update(self.networks[MODEL])
        self.step += 1
        return stats

    def _update(self, group: str, batch: Batch) -> dict[str, float] | None:
        """One optimizer step of one group; None when skipped for a non-finite loss or gradient."""
        cfg, optimizer, params = self.optim[group], self.optimizers[group], self.params[group]
        lr = cfg.lr * min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        nets = {name: self.wrapped[name] if name == group else net for name, net in self.networks.items()}
        others = [net for name, net in self.networks.items() if name != group]
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        with _frozen(others), autocast:
            loss, logs = self.objective.loss(group, nets, batch, self.noise)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise FastgenError(f"objective.loss('{group}', …) must return a 0-d loss tensor, got {loss!r:.80}")
        loss.backward()
        # Clipping before the finite check is harmless: a skipped update's gradients are discarded.
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf)
        scalars = [loss.detach().float(), grad_norm.float()] + [_scalar(value, self.device) for value in logs.values()]
        # One all-reduce and one host sync per update: ranks agree on the values, hence on skipping.
        values = distributed.mean(torch.stack(scalars), self.env).tolist()
        stats = dict(zip(["loss", "grad_norm", *logs], values))
        if not (math.isfinite(stats["loss"]) and math.isfinite(stats["grad_norm"])):
            optimizer.zero_grad(set_to_none=True)
            self.nan_skips[group] += 1
            self.skips_in_a_row[group] += 1
            if self.skips_in_a_row[group] >= MAX_CONSECUTIVE_SKIPS:
                last = latest_checkpoint(self.run_dir)
                raise FastgenError(
                    f"training diverged: {MAX_CONSECUTIVE_SKIPS} steps in a row (to step {self.step + 1}) had a non-finite "
                    f"loss or gradient in group '{group}'; lower optim.lr or raise optim.warmup_steps "
                    f"({'last good checkpoint: ' + last.name if last else 'no checkpoint was written'})")
            if self.env.is_main:
                warnings.warn(
                    f"step {self.step + 1}: non-finite loss or gradient in group '{group}', update skipped "
                    f"({self.nan_skips[group]} skipped in this group so far)",
                    RuntimeWarning,
                )
            return None
        self.skips_in_a_row[group] = 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {**stats, "lr": lr}

    def save(self) -> Path:
        """Checkpoint the current step (rank 0 writes; every rank must call it)."""
        rng = distributed.gather(self._rng_state(), self.env)  # also lines the ranks up before writing
        path = checkpoint_dir(self.run_dir, self.step)
        if self.env.is_main:
            state = Checkpoint(
                step=self.step,
                config=self._checkpoint_config(),
                networks={name: net.state_dict() for name, net in self.networks.items()},
                ema=self.ema.state_dict(),
                optimizers={group: optimizer.state_dict() for group, optimizer in self.optimizers.items()},
                rng=rng,
                data_state=self.batches.state_dict(),
                nan_skips=dict(self.nan_skips),
            )
            save_checkpoint(self.run_dir, state, keep_last=self.recipe.run.keep_checkpoints)
        distributed.barrier(self.env)  # no rank runs ahead of (or exits before) a complete checkpoint
        return path

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: weights, EMA, optimizers, step, RNGs, data position."""
        if checkpoint.networks.keys() != self.networks.keys():
            raise FastgenError(
                f"checkpoint has networks {sorted(checkpoint.networks)}, the objective {sorted(self.networks)}; "
                "resume with the same model family and recipe"
            )
        try:
            for name, net in self.networks.items():
                net.load_state_dict(checkpoint.networks[name])
            for group, optimizer in self.optimizers.items():
                optimizer.load_state_dict(checkpoint.optimizers[group])
                _check_optimizer_state(optimizer)
            self.ema.load_state_dict(checkpoint.ema)
            self.nan_skips = {group: int(checkpoint.nan_skips.get(group, 0)) for group in self.networks}
            data_state = dict(checkpoint.data_state)
            if self.allow_new_data and "data" in data_state:  # the user said the data may differ: take today's fingerprint
                data_state["data"] = self.batches.state_dict().get("data")
            self.batches.load_state_dict(data_state)
            self._set_rng_state(checkpoint.rng)
        except FastgenError:
            raise
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise FastgenError(f"checkpoint does not fit the run built from this recipe ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''}); resume a checkpoint of this run") from None
        self.step = checkpoint.step

    def _start(self, resume: bool | str | Path) -> None:
        existing = latest_checkpoint(self.run_dir)
        if resume is False:
            if existing is not None:
                raise FastgenError(
                    f"{self.run_dir} already has checkpoints (latest {existing.name}); "
                    "pass --resume to continue that run, or choose another run.name"
                )
            source = None
        elif resume is True:
            source = existing
            if source is None and self.env.is_main:
                warnings.warn(f"--resume: {self.run_dir} has no checkpoint yet, starting from step 0", stacklevel=3)
        else:
            source = resolve_checkpoint(resume)
        if source is not None:
            self.restore(load_checkpoint(source))
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.recipe.save(self.run_dir / RECIPE_FILE)
            _truncate_log(self.run_dir / LOG_FILE, self.step)

    def _checkpoint_config(self) -> dict[str, Any]:
        return {
            "fastgen_version": __version__,
            "family": self._objective_config["family"],
            "step": self.step,
            "objective": self._objective_config,
            "networks": {
                name: {
                    "class": f"{type(net).__module__}.{type(net).__qualname__}",
                    "parameters": sum(p.numel() for p in net.parameters()),
                }
                for name, net in self.networks.items()
            },
            "recipe": self.recipe.sections,
        }

    def _rng_state(self) -> dict[str, Any]:
        state = {"device": self.device.type, "torch": torch.get_rng_state(), "noise": self.noise.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.env.world_size or states[self.env.rank]["device"] != self.device.type:
            if self.env.is_main:
                warnings.warn(
                    "the checkpoint was written by a job of another size or device type: random streams are "
                    "reseeded, so this resumed run will not repeat an uninterrupted one exactly"
                )
            return
        state = states[self.env.rank]
        torch.set_rng_state(state["torch"])
        self.noise.set_state(state["noise"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)


def train(
    recipe: Recipe,
    objective: Objective,
    batches: Batches,
    *,
    run_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    allow_new_data: bool = False,
) -> Path:
    """What ``fastgen train`` calls once it has built the objective and data iterator: train to
    ``run.steps`` (distributed under torchrun) and return the final checkpoint's directory. ``allow_new_data``: a
    resume may continue on data other than the run's (its fingerprint differs)."""
    trainer = Trainer(recipe, objective, batches, run_dir=run_dir, resume=resume, allow_new_data=allow_new_data)
    try:
        return trainer.run()
    finally:
        distributed.shutdown(trainer.env)


def _check_objective(objective: Objective, recipe: Recipe) -> dict[str, Any]:
    """Fail before training on what would otherwise fail at the first checkpoint; returns config()."""
    names = list(objective.networks)
    if MODEL not in names:
        raise FastgenError(f"objective.networks has no '{MODEL}' (it has {names}); name the sampled network 'model'")
    for name in names:
        if name == "ema" or not name.isidentifier():
            raise FastgenError(f"network name {name!r} is not allowed: use an identifier other than 'ema'")
    for group in recipe.optim.groups:
        if group not in names:
            raise FastgenError(f"recipe table [optim.{group}] names no network of this objective (it has {names})")
    config = objective.config()
    if not isinstance(config, dict) or not isinstance(config.get("family"), str):
        raise FastgenError("objective.config() must return a dict with a 'family' string")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as error:
        raise FastgenError(f"objective.config() is not JSON-serialisable: {error}") from None
    return config


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Adam's moments must have their parameter's shape: another run's optimizer state only fails at its first step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, Tensor) and value.ndim and value.shape != param.shape:
                    raise ValueError(f"optimizer state {name} has shape {list(value.shape)} for a parameter of shape "
                                     f"{list(param.shape)}")  # fmt: skip


def _rank_seeds(seed: int, env: distributed.DistEnv) -> tuple[int, int]:
    """Two distinct seeds per rank (global torch RNG, objective noise), all derived from ``seed``."""
    table = torch.randint(2**62, (env.world_size, 2), generator=torch.Generator().manual_seed(seed))
    torch_seed, noise_seed = table[env.rank].tolist()
    return torch_seed, noise_seed


def _scalar(value: float | Tensor, device: torch.device) -> Tensor:
    return torch.as_tensor(value, device=device).detach().float().reshape(())


@contextmanager
def _frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Turn off weight gradients of ``modules`` (and restore them), so one group's loss cannot
    leave gradients on another group's weights."""
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _Meter:
    """Means of the step scalars since the last log line, and the training throughput."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.seconds = 0.0
        self.images = 0

    def add(self, stats: Mapping[str, float], seconds: float, images: int) -> None:
        for name, value in stats.items():
            self.sums[name] += value
            self.counts[name] += 1
        self.seconds += seconds
        self.images += images

    def summary(self) -> dict[str, float]:
        means = {name: self.sums[name] / self.counts[name] for name in self.sums}
        return {**means, "images_per_s": self.images / self.seconds if self.seconds else 0.0}


def _append_log(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step``: a crashed run logged steps that the resumed run will redo."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by the crash
    path.write_text("".join(kept))
