"""``fastgen sample SOURCE --n N --seed S --out DIR --ray``: a large sample as shards over a Ray Data actor pool.

The sample's images are cut into shards of consecutive indices; a pool of sampler actors (one per GPU, or per CPU
slot) each loads the model once and writes whole shards, ``shard-<first image>.npy`` (float32 [count, C, H, W]),
atomically. ``shards.json`` records what the folder is a sample of, so running the same command again skips the
shards that exist and redoes only the rest (after a killed worker or node), and a different command is refused.
Every shard is its images of the seed, so the union of the shards is ``api.sample(n=N, seed=S)`` bit for bit.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastgen import layout
from fastgen.errors import FastgenError
from fastgen.outputs import JSON, NPY, PNG, SHARDS, check_output, write_file
from fastgen.schema import count, finite_number
from fastgen.serve.cluster import connect, disconnect, require_ray

SHARD_SIZE = 256


@dataclass(frozen=True)
class ShardPlan:
    """What a shard folder is a sample of (``shards.json``): a re-run must ask for the same."""

    source: str
    n: int
    seed: int
    shard_size: int
    options: dict[str, Any] = field(default_factory=dict)
    png: bool = False

    @property
    def shards(self) -> list[tuple[int, int]]:
        """(first image, count) of every shard."""
        return [(first, min(self.shard_size, self.n - first)) for first in range(0, self.n, self.shard_size)]

    def shard_path(self, folder: Path, first: int) -> Path:
        return folder / f"shard-{first:0{len(str(self.n - 1))}d}.npy"


@dataclass
class ShardReport:
    """What a run did: the folder, shards written now and found done, images per second, the nodes that wrote."""

    folder: Path
    written: int
    skipped: int
    images: int
    seconds: float
    nodes: dict[str, int]
    first_seconds: float = 0.0  # until the first shard was written: the pool's start-up (processes, model loads)
    first_images: int = 0

    @property
    def images_per_second(self) -> float:
        """Over the whole run, the pool's start-up included."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_second(self) -> float:
        """After the first shard: the pool at work."""
        later = self.seconds - self.first_seconds
        return (self.images - self.first_images) / later if later > 0 else 0.0


class ShardWriter:
    """A Ray Data actor: the model loaded once; each batch of rows names shards, each written whole and atomically."""

    def __init__(self, plan: dict[str, Any], folder: str, backend: str | None, device: str, threads: int) -> None:
        import torch

        from fastgen import api
        from fastgen.runtime import load_for_sampling

        torch.set_num_threads(threads)
        self.plan, self.folder = ShardPlan(**plan), Path(folder)
        self.model = load_for_sampling(self.plan.source, backend=backend, device=api.resolve_device(device))
        import ray

        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fastgen import api

        for first, count in zip(batch["first"].tolist(), batch["count"].tolist()):
            images = api.sample(self.model, count, seed=self.plan.seed, first_image=first, **self.plan.options)
            pixels = images.float().cpu().numpy()
            path = self.plan.shard_path(self.folder, first)
            if self.plan.png:  # the PNGs first: a shard's .npy existing means the whole shard is done
                _write_pngs(images, path.with_suffix(""), first)
            write_file(path, NPY, lambda staging, pixels=pixels: _save_npy(staging, pixels))
        return {"first": batch["first"], "count": batch["count"], "node": np.array([self.node] * len(batch["first"]))}


def _save_npy(staging: Path, pixels: np.ndarray) -> None:
    with open(staging, "wb") as file:
        np.save(file, pixels, allow_pickle=False)


def _write_pngs(images: Any, folder: Path, first: int) -> None:
    from PIL import Image

    from fastgen.data.images import images_to_uint8

    folder.mkdir(exist_ok=True)
    for offset, pixels in enumerate(images_to_uint8(images)):
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        write_file(folder / f"{first + offset}.png", PNG, lambda staging, p=picture: p.save(staging, format="PNG"))


def done_shards(plan: ShardPlan, folder: Path, shape: tuple[int, ...]) -> set[int]:
    """First images of the shards already written whole (right header: shape and dtype)."""
    done = set()
    for first, count in plan.shards:
        path = plan.shard_path(folder, first)
        if not path.is_file():
            continue
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            continue  # unreadable: written again
        if array.shape == (count, *shape) and array.dtype == np.float32:
            done.add(first)
    return done


def check_plan(plan: ShardPlan, folder: Path) -> None:
    """A folder already holding shards must be of the same sample (same source, n, seed, shard size, options)."""
    record = folder / layout.SHARDS_FILE
    if not record.is_file():
        return
    try:
        existing = json.loads(record.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise FastgenError(f"{record} is not a shard record; choose another folder") from None
    if existing != asdict(plan):
        differing = sorted(key for key in asdict(plan) if existing.get(key) != asdict(plan)[key])
        raise FastgenError(f"{folder} holds shards of another sample (its {', '.join(differing) or 'record'} differ); "
                           "run the same command to resume it, or choose another folder")  # fmt: skip


def sample_shards(source: str | Path, n: int, folder: str | Path, *, seed: int = 0, shard_size: int = SHARD_SIZE,
                  png: bool = False, address: str | None = None, actors: int | None = None,
                  cpus_per_actor: float = 1.0, backend: str | None = None, device: str = "auto",
                  progress: bool = True, **options: Any) -> ShardReport:  # fmt: skip
    """Write ``n`` images of ``seed`` from ``source`` into ``folder`` as shards, on the Ray cluster at ``address``
    (None: a local one, or the one this process is connected to), with ``actors`` samplers (default: one per GPU,
    else one per ``cpus_per_actor`` CPUs of the cluster, less one CPU for Ray Data itself). Resumes a folder of
    the same sample."""
    from fastgen import api
    from fastgen.progress import progress_bar
    from fastgen.runtime import load_for_sampling
    from fastgen.sampling.noise import check_seed

    count(n, "n")
    count(shard_size, "the shard size")
    if actors is not None:
        count(actors, "actors")
    finite_number(cpus_per_actor, "cpus per actor", low=0, low_open=True)
    check_seed(seed)
    if Path(folder).suffix.lower() in (".npy", ".png"):
        raise FastgenError(f"{folder}: a sample on Ray is a folder of shards; name the folder without a file suffix")
    folder = check_output(folder, SHARDS, inputs=[source])
    plan = ShardPlan(str(Path(source).resolve()), n, seed, shard_size, dict(options), png)
    check_plan(plan, folder)
    model = load_for_sampling(source, backend=backend, device="cpu")  # a bad source or option: one error, now
    model.family.sampling_program(**options)
    api.check_sample_count(model, min(n, shard_size))
    image = model.family.image
    shape = (image.channels, image.resolution, image.resolution)
    folder.mkdir(parents=True, exist_ok=True)
    write_file(folder / layout.SHARDS_FILE, JSON, lambda staging: staging.write_text(json.dumps(asdict(plan), indent=1)))
    done = done_shards(plan, folder, shape)
    todo = [(first, count) for first, count in plan.shards if first not in done]
    report = ShardReport(folder, 0, len(done), 0, 0.0, {})
    if not todo:
        return report
    ray = require_ray()
    started = connect(address)
    try:
        bar = progress_bar(total=sum(count for _, count in todo), desc="sampling", unit="img", disable=not progress)
        _run_pool(ray, plan, folder, todo, actors, cpus_per_actor, backend, device, bar, report)
    finally:
        disconnect(started)
    report.written, report.images = len(todo), sum(count for _, count in todo)
    missing = [first for first, _ in todo if first not in done_shards(plan, folder, shape)]
    if missing:
        raise FastgenError(f"{len(missing)} shard(s) were not written (first images {missing[:5]}); run the same command to resume")
    return report


def _run_pool(ray: Any, plan: ShardPlan, folder: Path, todo: list[tuple[int, int]], actors: int | None,
              cpus_per_actor: float, backend: str | None, device: str, bar: Any, report: ShardReport) -> None:  # fmt: skip
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # fastgen's bar counts images; Ray Data's own lines would bury it
    context.print_on_execution_start = False
    context.wait_for_min_actors_s = 300  # the whole pool up before work is handed out: shards spread over every actor
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if actors is None:
        actors = gpus or max(1, int((resources.get("CPU", 1) - 1) // cpus_per_actor))
    actors = min(actors, len(todo))
    remote = {"num_gpus": 1} if gpus else {"num_cpus": cpus_per_actor}
    items = ray.data.from_items([{"first": first, "count": count} for first, count in todo], override_num_blocks=len(todo))
    written = items.map_batches(
        ShardWriter,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"plan": asdict(plan), "folder": str(folder), "backend": backend, "device": device,
                               "threads": max(1, int(cpus_per_actor))},  # fmt: skip
        **remote,
    )
    start = time.perf_counter()
    with bar:
        for row in written.iter_rows():
            node = str(row["node"])
            report.nodes[node] = report.nodes.get(node, 0) + 1
            if not report.first_images:
                report.first_seconds, report.first_images = time.perf_counter() - start, int(row["count"])
            bar.update(int(row["count"]))
    report.seconds = time.perf_counter() - start
