"""The training engine (fastgen.training) driven by small real objectives on CPU."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from fastgen.errors import FastgenError
from fastgen.training import (
    EMA,
    Recipe,
    Trainer,
    checkpoint,
    load_checkpoint,
    load_for_inference,
    load_recipe,
    parse_recipe,
    train,
)
from fastgen.training.distributed import DistEnv, local_slice

torch.set_num_threads(1)  # the same kernels in every process, and no oversubscription with 2 ranks


class TensorBatches:
    """Endless shuffled batches of a fixed tensor; its state is the epoch order, position and RNG."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        self.images, self.batch_size = images, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(images), generator=self.generator)
        self.position = 0

    def __next__(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.images), generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.images[index]

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "position": self.position, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.position = state["order"].clone(), state["position"]
        self.generator.set_state(state["generator"])


class Regression:
    """A tiny conv net learns to shift its (noised) input; dropout and the noise use both RNGs."""

    def __init__(self, noise: float = 0.1, dropout: float = 0.1, crash_at: int | None = None) -> None:
        self.networks = {
            "model": nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(8, 1, 3, padding=1)
            )
        }
        self.noise, self.crash_at = noise, crash_at
        self.losses: list[float] = []
        self.snapshots: list[dict[str, torch.Tensor]] = []  # model weights as each loss call found them

    def loss(self, group, nets, batch, generator):
        if len(self.losses) == self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        self.snapshots.append({k: v.clone() for k, v in self.networks["model"].state_dict().items()})
        noisy = batch + self.noise * torch.randn(batch.shape, generator=generator)
        loss = F.mse_loss(nets["model"](noisy), torch.roll(batch, 1, dims=-1))
        self.losses.append(loss.item())
        return loss, {"input_std": noisy.std()}

    def config(self) -> dict:
        return {"family": "test-regression", "channels": 8}


class FaultyRegression(Regression):
    """Regression whose loss is NaN, or whose gradient is NaN with a finite loss, at chosen calls."""

    def __init__(self, faults: dict[int, str]) -> None:
        super().__init__()
        self.faults = faults

    def loss(self, group, nets, batch, generator):
        call = len(self.losses)
        loss, logs = super().loss(group, nets, batch, generator)
        if self.faults.get(call) == "loss":
            loss = loss * float("nan")
        elif self.faults.get(call) == "grad":
            weight = self.networks["model"][0].weight
            loss = loss + torch.sqrt(weight * 0).sum()  # value 0, gradient 0/0 = NaN
        return loss, logs


class TwoGroups:
    """GAN-style: 'model' maps noise to images against a 'discriminator' trained on real vs fake."""

    def __init__(self) -> None:
        self.networks = {
            "model": nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 64)),
            "discriminator": nn.Sequential(nn.Linear(64, 16), nn.SiLU(), nn.Linear(16, 1)),
        }
        self.others_frozen: list[bool] = []

    def loss(self, group, nets, batch, generator):
        other = "discriminator" if group == "model" else "model"
        self.others_frozen.append(not any(p.requires_grad for p in self.networks[other].parameters()))
        real = batch.flatten(1)
        fake = nets["model"](torch.randn(len(real), 4, generator=generator))
        if group == "model":
            return F.softplus(-nets["discriminator"](fake)).mean(), {}
        logits = nets["discriminator"](torch.cat([real, fake]))
        return F.softplus(-logits[: len(real)]).mean() + F.softplus(logits[len(real) :]).mean(), {}

    def config(self) -> dict:
        return {"family": "test-gan"}


IMAGES = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def make_recipe(**overrides) -> Recipe:
    data = {
        "run": {"name": "test", "steps": 12, "batch_size": 8, "checkpoint_every": 4, "log_every": 2, "device": "cpu"},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "ema_decay": 0.9, "grad_clip": 1.0},
        "model": {"channels": 8},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        data[section][name] = value
    return parse_recipe(data)


def new_trainer(run_dir: Path, make_objective=Regression, resume=False, **overrides) -> Trainer:
    torch.manual_seed(0)  # the same initial weights for every run
    recipe = make_recipe(**overrides)
    return Trainer(recipe, make_objective(), TensorBatches(IMAGES, recipe.run.batch_size), run_dir=run_dir, resume=resume)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


# --- training ---------------------------------------------------------------------------------


def test_loss_falls_and_is_logged(tmp_path):
    trainer = new_trainer(tmp_path, run__steps=50, run__log_every=10, run__checkpoint_every=50, optim__ema_decay=0.99)
    final = trainer.run()
    losses = trainer.objective.losses
    assert len(losses) == 50
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50]
    assert log[-1]["model/loss"] == pytest.approx(sum(losses[-10:]) / 10, rel=1e-5)
    assert {"model/grad_norm", "model/lr", "model/input_std", "images_per_s", "nan_skips"} <= log[0].keys()
    assert log[-1]["images_per_s"] > 0
    assert final == tmp_path / "checkpoints" / "step_000050"
    assert json.loads((tmp_path / "recipe.json").read_text()) == trainer.recipe.sections


def test_warmup_ramps_the_learning_rate(tmp_path):
    trainer = new_trainer(tmp_path, run__steps=6, optim__warmup_steps=4, optim__lr=1e-3)
    trainer.run()
    assert [r["model/lr"] for r in read_log(tmp_path)] == pytest.approx([0.375e-3, 0.875e-3, 1e-3])


def test_two_groups_both_update_with_their_own_settings(tmp_path):
    objective = TwoGroups()
    before = {name: [p.clone() for p in net.parameters()] for name, net in objective.networks.items()}
    data = {
        "run": {"name": "gan", "steps": 5, "batch_size": 8, "log_every": 5, "device": "cpu"},
        "optim": {"lr": 1e-3, "discriminator": {"lr": 5e-4, "betas": [0.5, 0.99]}},
    }
    trainer = Trainer(parse_recipe(data), objective, TensorBatches(IMAGES, 8), run_dir=tmp_path)
    trainer.run()
    for name, net in objective.networks.items():
        assert all(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
        optimizer = trainer.optimizers[name]
        assert all(optimizer.state[p]["step"].item() == 5 for p in net.parameters())
    d_group = trainer.optimizers["discriminator"].param_groups[0]
    assert d_group["lr"] == 5e-4 and d_group["betas"] == (0.5, 0.99)
    assert trainer.optimizers["model"].param_groups[0]["lr"] == 1e-3
    assert objective.others_frozen == [True] * 10  # each group's loss saw the other network frozen …
    assert all(p.requires_grad for net in objective.networks.values() for p in net.parameters())  # … restored
    assert trainer.ema.state_dict().keys() == objective.networks["model"].state_dict().keys()
    assert {"model/loss", "discriminator/loss"} <= read_log(tmp_path)[0].keys()
    assert set(load_checkpoint(tmp_path).networks) == {"model", "discriminator"}


def test_nan_guard_skips_and_counts(tmp_path):
    trainer = new_trainer(tmp_path, lambda: FaultyRegression({3: "loss", 6: "grad"}), run__steps=10)
    objective = trainer.objective
    with pytest.warns(RuntimeWarning, match="update skipped") as warned:
        trainer.run()
    assert [str(w.message).split("(")[1] for w in warned] == ["1 skipped in this group so far)", "2 skipped in this group so far)"]
    assert trainer.nan_skips == {"model": 2}
    snapshots = objective.snapshots
    for faulty in (3, 6):
        assert_same_state(snapshots[faulty], snapshots[faulty + 1])  # that step left the weights alone
    assert not torch.equal(snapshots[4]["0.weight"], snapshots[5]["0.weight"])  # the others did not
    assert all(s["step"].item() == 8 for s in trainer.optimizers["model"].state.values())
    assert all(torch.isfinite(p).all() for p in trainer.networks["model"].parameters())
    assert read_log(tmp_path)[-1]["nan_skips"] == 2
    assert load_checkpoint(tmp_path).nan_skips == {"model": 2}


def test_ema_math():
    net = nn.BatchNorm1d(3)
    ema = EMA(net, decay=0.75)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.running_mean.fill_(5.0)
    ema.update(net)
    assert torch.allclose(ema.state_dict()["weight"], 0.75 * start["weight"] + 0.25 * 2.0)
    assert torch.equal(ema.state_dict()["running_mean"], torch.full((3,), 5.0))  # buffers are copied
    ema.update(net)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((3,), 0.75**2 * 1 + (1 - 0.75**2) * 2.0))
    other = EMA(net, decay=0.75)
    other.load_state_dict(ema.state_dict())
    assert_same_state(other.state_dict(), ema.state_dict())
    with pytest.raises(FastgenError, match="decay"):
        EMA(net, decay=1.0)


# --- checkpoints and resume ---------------------------------------------------------------------


def test_checkpoint_round_trip_is_exact(tmp_path):
    trainer = new_trainer(tmp_path, run__steps=6)
    trainer.run()
    saved = load_checkpoint(tmp_path)  # a run directory resolves to its latest checkpoint
    assert saved.step == 6
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000006"
    assert_same_state(saved.networks["model"], trainer.networks["model"].state_dict())
    assert_same_state(saved.ema, trainer.ema.state_dict())
    live_opt = trainer.optimizers["model"].state_dict()
    saved_opt = saved.optimizers["model"]
    assert saved_opt["param_groups"] == live_opt["param_groups"]
    for index, state in live_opt["state"].items():
        assert_same_state(saved_opt["state"][index], state)
    assert torch.equal(saved.rng[0]["torch"], torch.get_rng_state())
    assert torch.equal(saved.rng[0]["noise"], trainer.noise.get_state())
    assert saved.data_state["position"] == trainer.batches.position
    assert torch.equal(saved.data_state["generator"], trainer.batches.generator.get_state())

    config = json.loads((tmp_path / "checkpoints" / "step_000006" / "config.json").read_text())
    assert config["family"] == "test-regression" and config["objective"]["channels"] == 8
    assert config["recipe"]["model"] == {"channels": 8} and config["recipe"]["run"]["steps"] == 6
    assert config["networks"]["model"]["parameters"] == sum(p.numel() for p in trainer.networks["model"].parameters())
    inference = load_for_inference(tmp_path / "checkpoints" / "step_000006")
    assert inference.source == "ema" and inference.config == config
    assert_same_state(inference.state_dict, trainer.ema.state_dict())
    assert_same_state(load_for_inference(tmp_path, weights="model").state_dict, trainer.networks["model"].state_dict())
    # keep_checkpoints = 3 of steps 4 and 6 (checkpoint_every 4, plus the end): both stay
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_000004", "step_000006"]


def test_keeps_only_the_last_checkpoints(tmp_path):
    new_trainer(tmp_path, run__steps=10, run__checkpoint_every=2, run__keep_checkpoints=2).run()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_000008", "step_000010"]


def test_resumed_run_repeats_the_uninterrupted_one(tmp_path):
    whole = new_trainer(tmp_path / "whole", run__steps=12)
    whole.run()

    crashed = new_trainer(tmp_path / "split", lambda: Regression(crash_at=6), run__steps=12)  # checkpoint at 4, dies in 7
    with pytest.raises(KeyboardInterrupt):
        crashed.run()
    assert [r["step"] for r in read_log(tmp_path / "split")] == [2, 4, 6]

    resumed = new_trainer(tmp_path / "split", resume=True, run__steps=12)
    assert resumed.step == 4
    resumed.run()
    assert crashed.objective.losses[:4] + resumed.objective.losses == whole.objective.losses
    assert_same_state(resumed.networks["model"].state_dict(), whole.networks["model"].state_dict())
    assert_same_state(resumed.ema.state_dict(), whole.ema.state_dict())
    def without_speed(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in record.items() if k != "images_per_s"} for record in read_log(run_dir)]

    assert without_speed(tmp_path / "split") == without_speed(tmp_path / "whole")


def test_time_budget_stops_at_a_log_point_and_resume_finishes_the_run(tmp_path):
    whole = new_trainer(tmp_path / "whole", run__steps=12)
    whole.run()

    # A budget already spent when the first step ends: the run stops at the first log point (step 2).
    budgeted = new_trainer(tmp_path / "split", run__steps=12, run__max_minutes=1e-9)
    final = budgeted.run()
    assert budgeted.step == 2 and final.name == "step_000002"
    assert load_checkpoint(tmp_path / "split").step == 2

    resumed = new_trainer(tmp_path / "split", resume=True, run__steps=12)
    resumed.run()
    assert budgeted.objective.losses + resumed.objective.losses == whole.objective.losses
    assert_same_state(resumed.networks["model"].state_dict(), whole.networks["model"].state_dict())


def test_negative_time_budget_is_a_recipe_error():
    with pytest.raises(FastgenError, match="max_minutes"):
        make_recipe(run__max_minutes=-1)


def test_new_run_refuses_a_run_dir_with_checkpoints(tmp_path):
    new_trainer(tmp_path, run__steps=4).run()
    with pytest.raises(FastgenError, match="--resume"):
        new_trainer(tmp_path, run__steps=8)


def test_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = checkpoint.save_file
    calls = []

    def failing_save(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 4:  # the second checkpoint, after its model file is already written
            raise OSError("disk full (injected)")
        real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    trainer = new_trainer(tmp_path, run__steps=8)
    with pytest.raises(OSError, match="injected"):
        trainer.run()
    assert Path(calls[3]).parent.name == ".tmp-step_000008"  # it failed inside the staging directory
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000004"]
    assert (root / "latest").read_text().strip() == "step_000004"
    assert load_checkpoint(tmp_path).step == 4


def test_corrupt_or_missing_checkpoints_raise(tmp_path):
    new_trainer(tmp_path, run__steps=8).run()
    ema = tmp_path / "checkpoints" / "step_000008" / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[:100])
    with pytest.raises(FastgenError, match="ema.safetensors"):
        load_for_inference(tmp_path)
    older = tmp_path / "checkpoints" / "step_000004"
    (older / "trainer.pt").unlink()
    with pytest.raises(FastgenError, match="trainer.pt"):
        load_checkpoint(older)
    with pytest.raises(FastgenError, match="neither"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "checkpoints" / "latest").write_text("step_000099\n")
    with pytest.raises(FastgenError, match="step_000099"):
        load_for_inference(tmp_path)


# --- recipes ------------------------------------------------------------------------------------

RECIPE = """
[run]
name = "udpm-fmnist"
steps = 1000
batch_size = 64

[optim]
lr = 1e-4

[model]
channels = [32, 64]
"""


def test_recipe_overrides_parse_toml_literals(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    recipe = load_recipe(
        path,
        ["optim.lr=2e-4", "run.steps=10", "run.device=cpu", "model.channels=[16, 32]", "model.attention=true",
         'data.path="a b"', "loss.kind=l2", "optim.discriminator.lr=1"],
    )
    assert recipe.optim.lr == 2e-4 and recipe.run.steps == 10 and recipe.run.device == "cpu"
    assert recipe.sections["model"] == {"channels": [16, 32], "attention": True}
    assert recipe.sections["data"] == {"path": "a b"} and recipe.sections["loss"] == {"kind": "l2"}
    assert recipe.optim.for_group("discriminator").lr == 1.0 and recipe.optim.for_group("model").lr == 2e-4
    assert recipe.run.checkpoint_every == 1000 and recipe.optim.betas == (0.9, 0.999)  # defaults
    assert recipe.sections["optim"]["betas"] == [0.9, 0.999]  # the effective recipe records them
    recorded = tmp_path / "recipe.json"
    recipe.save(recorded)
    assert load_recipe(recorded) == recipe


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], "optim.lrr"),
        (["run.steps=ten"], "run.steps"),
        (["run.steps=0"], "run.steps"),
        (["run.batch_size=true"], "run.batch_size"),
        (["run.device=tpu"], "run.device"),
        (["optim.betas=[0.9]"], "optim.betas"),
        (["optim.discriminator.ema_decay=0.5"], "optim.discriminator.ema_decay"),
        (["run.steps.max=3"], "run.steps"),
        (["runsteps"], "runsteps"),
    ],
)
def test_bad_recipe_keys_raise_naming_the_key(tmp_path, overrides, message):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    with pytest.raises(FastgenError, match=message):
        load_recipe(path, overrides)


def test_missing_or_malformed_recipes_raise(tmp_path):
    with pytest.raises(FastgenError, match="run.batch_size"):
        parse_recipe({"run": {"name": "x", "steps": 1}, "optim": {"lr": 1.0}})
    with pytest.raises(FastgenError, match=r"\[optim\]"):
        parse_recipe({"run": {"name": "x", "steps": 1, "batch_size": 2}})
    with pytest.raises(FastgenError, match="seed"):
        parse_recipe({"seed": 3, "run": {"name": "x", "steps": 1, "batch_size": 2}, "optim": {"lr": 1.0}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nname = \nsteps = 3\n")
    with pytest.raises(FastgenError, match="line 2"):
        load_recipe(bad)
    with pytest.raises(FastgenError, match="cannot read"):
        load_recipe(tmp_path / "missing.toml")
    recipe = make_recipe(run__batch_size=8)
    with pytest.raises(FastgenError, match="optim.generator"):
        Trainer(
            parse_recipe({**recipe.sections, "optim": {"lr": 1.0, "generator": {"lr": 2.0}}}),
            Regression(), TensorBatches(IMAGES, 8), run_dir=tmp_path,
        )


# --- distributed ----------------------------------------------------------------------------------


def test_local_slice_cuts_every_tensor_of_the_global_batch():
    images, labels = torch.arange(8.0).view(8, 1), torch.arange(8)
    sliced = local_slice((images, labels), DistEnv(rank=1, world_size=2), torch.device("cpu"))
    assert torch.equal(sliced[0], images[4:]) and torch.equal(sliced[1], labels[4:])


def deterministic_regression() -> Regression:
    """No noise, no dropout: ranks draw different noise streams, so only this can match one process."""
    return Regression(noise=0.0, dropout=0.0)


def _distributed_worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)
    recipe = make_recipe(run__steps=6, run__log_every=3)
    train(recipe, deterministic_regression(), TensorBatches(IMAGES, 8), run_dir=run_dir)


def test_two_gloo_processes_match_one(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.start_processes(
        _distributed_worker, args=(2, port, str(tmp_path / "ddp")), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 60
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process run did not finish in 60 s")

    single = new_trainer(tmp_path / "one", deterministic_regression, run__steps=6, run__log_every=3)
    single.run()
    distributed_weights = load_checkpoint(tmp_path / "ddp").networks["model"]
    for name, value in single.networks["model"].state_dict().items():
        assert torch.allclose(distributed_weights[name], value, atol=1e-6), name
    for a, b in zip(read_log(tmp_path / "ddp"), read_log(tmp_path / "one")):
        assert a["model/loss"] == pytest.approx(b["model/loss"], rel=1e-5)
    assert not (tmp_path / "ddp" / "checkpoints" / ".tmp-step_000006").exists()
