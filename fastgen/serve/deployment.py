"""``fastgen serve``: a Ray Serve application that generates images over HTTP, batching concurrent requests.

Each replica loads the model once (a checkpoint on torch, or a bundle on ONNX Runtime / TensorRT) and answers
``POST /generate``, ``GET /health`` and ``GET /info``. Requests are checked as they arrive (bad ones get a 4xx with
a one-line JSON error and never reach the model); the accepted ones queue for ``@serve.batch``, which packs them
into one batch of at most ``max_batch`` images — rows keyed by (seed, image index), so every request gets exactly
the images ``fastgen sample`` gives for its seed, whatever it was batched with. Ray Serve spreads requests over the
replicas, restarts a replica that dies, and scales to a cluster (``--address``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastgen.serve.cluster import connect, disconnect, require_ray

require_ray()  # one line saying how to install Ray, before the import below fails
import ray  # noqa: E402
from ray import serve  # noqa: E402

from fastgen.errors import FastgenError  # noqa: E402
from fastgen.schema import count, finite_number  # noqa: E402
from fastgen.serve.protocol import FORMATS, GenerateRequest, RequestError, encode_images, error_body, parse_generate

APP_NAME = "fastgen"


@dataclass(frozen=True)
class ServeSettings:
    """What ``fastgen serve`` deploys: the model source and how it is replicated and batched."""

    source: str
    replicas: int = 1
    max_batch: int = 16
    batch_wait_ms: float = 10.0
    backend: str | None = None
    device: str = "auto"
    cpus_per_replica: float = 1.0
    gpus_per_replica: float | None = None  # None: 1 where the cluster has GPUs, else 0

    def __post_init__(self) -> None:
        count(self.replicas, "--replicas")
        count(self.max_batch, "--max-batch")
        finite_number(self.batch_wait_ms, "--batch-wait-ms", low=0)
        finite_number(self.cpus_per_replica, "--cpus-per-replica", low=0)
        if not Path(self.source).exists():
            raise FastgenError(f"{self.source} does not exist: serve a checkpoint, a run directory or a bundle")


def _response(body: bytes, status: int = 200, media_type: str = "application/json", headers: Mapping[str, str] | None = None) -> Any:
    from starlette.responses import Response

    return Response(body, status_code=status, media_type=media_type, headers=dict(headers or {}))


class Generator:
    """One replica: the model, loaded once, behind the HTTP routes; ``@serve.batch`` packs the checked requests."""

    def __init__(self, settings: ServeSettings) -> None:
        import torch

        from fastgen import api
        from fastgen.runtime import load_for_sampling

        if settings.cpus_per_replica >= 1:
            torch.set_num_threads(int(settings.cpus_per_replica))
        self.settings = settings
        self.model = load_for_sampling(settings.source, backend=settings.backend, device=api.resolve_device(settings.device))
        self.info = model_info(self.model, settings)
        self.batches = {"count": 0, "images": 0, "largest": 0}  # the batches run, for /info
        # The decorator's sizes are placeholders: this server's come from its settings.
        self._generate_batch.set_max_batch_size(settings.max_batch)
        self._generate_batch.set_batch_wait_timeout_s(settings.batch_wait_ms / 1000)

    async def __call__(self, request: Any) -> Any:
        route = (request.method, request.url.path.rstrip("/") or "/")
        try:
            if route == ("GET", "/health"):
                return _response(b'{"status": "ok"}')
            if route == ("GET", "/info"):
                return _response(json.dumps({**self.info, "batches": self.batch_statistics()}).encode())
            if route == ("POST", "/generate"):
                return await self.generate(await request.body())
            if route[1] in ("/health", "/info", "/generate"):
                raise RequestError(f"{route[1]} does not take {route[0]}", 405)
            raise RequestError(f"no route {route[1]}; the routes are POST /generate, GET /health and GET /info", 404)
        except RequestError as error:
            return _response(error_body(str(error)), error.status)

    async def generate(self, body: bytes) -> Any:
        request = self.check(parse_generate(body, max_batch=self.settings.max_batch))
        images, batch = await self._generate_batch(request)
        if isinstance(images, FastgenError):
            return _response(error_body(str(images)), 500)
        headers = {"X-Fastgen-Seed": str(request.seed), "X-Fastgen-Shape": ",".join(map(str, images.shape)),
                   "X-Fastgen-Batch": str(batch)}  # images in the batch this request ran in
        return _response(encode_images(images, request), media_type=FORMATS[request.format], headers=headers)

    def check(self, request: GenerateRequest) -> GenerateRequest:
        """Refuse what this model cannot do before it is queued: its sampler options, and the memory of n images."""
        from fastgen import api

        try:
            self.program(request.options_key)
        except FastgenError as error:
            raise RequestError(str(error)) from None
        try:
            api.check_sample_count(self.model, request.n)
        except FastgenError as error:
            raise RequestError(str(error), 413) from None
        return request

    @functools.lru_cache(maxsize=32)  # noqa: B019 — one replica, a handful of option sets
    def program(self, options_key: str) -> Any:
        """The sampling program of a request's options (checks them; built once per distinct options)."""
        options = json.loads(options_key)
        try:
            return self.model.family.sampling_program(**options)
        except FastgenError:
            raise
        except (TypeError, ValueError) as error:  # option values of the wrong type reach the program's maths
            raise FastgenError(f"bad sampler options {options_key}: {error}") from None

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, batch_size_fn=lambda requests: sum(r.n for r in requests))
    async def _generate_batch(self, requests: list[GenerateRequest]) -> list[tuple[np.ndarray | FastgenError, int]]:
        """The queued requests, packed: the sampling runs in a worker thread so that the replica keeps taking
        requests (they queue for the next batch) while this batch computes."""
        return await asyncio.to_thread(self._batched, requests)

    def _batched(self, requests: list[GenerateRequest]) -> list[tuple[np.ndarray | FastgenError, int]]:
        """Each group of requests with the same options runs as one batch of rows; images (or the error) go back per
        request, with the batch's size."""
        from fastgen import api

        results: list[tuple[np.ndarray | FastgenError, int]] = [None] * len(requests)  # type: ignore[list-item]
        groups: dict[str, list[int]] = {}
        for position, request in enumerate(requests):
            groups.setdefault(request.options_key, []).append(position)
        for positions in groups.values():
            rows = [row for position in positions for row in requests[position].rows]
            self._count_batch(len(rows))
            try:
                images = api.sample_rows(self.model, rows, **requests[positions[0]].options).float().cpu().numpy()
            except Exception as error:  # the service boundary: a failed batch is a 500 with one line, never a dead replica
                failure = error if isinstance(error, FastgenError) else FastgenError(f"sampling failed: {error!r}")
                for position in positions:
                    results[position] = (failure, len(rows))
                continue
            start = 0
            for position in positions:
                results[position] = (images[start:start + requests[position].n], len(rows))
                start += requests[position].n
        return results

    def _count_batch(self, images: int) -> None:
        self.batches["count"] += 1
        self.batches["images"] += images
        self.batches["largest"] = max(self.batches["largest"], images)

    def batch_statistics(self) -> dict[str, Any]:
        """This replica's batches so far: how many, the largest, the mean images per batch."""
        count = self.batches["count"]
        return {"count": count, "largest": self.batches["largest"], "mean": self.batches["images"] / count if count else 0.0}


def model_info(model: Any, settings: ServeSettings) -> dict[str, Any]:
    """What ``GET /info`` says: the model, its image shape and precision, its sampler options, the batching."""
    family = model.family
    image = family.image
    return {
        "family": family.name,
        "source": settings.source,
        "backend": getattr(model, "backend", "torch"),
        "device": str(model.device),
        "precision": getattr(model, "precision", "fp32"),
        "image": {"channels": image.channels, "height": image.resolution, "width": image.resolution},
        "sampler_options": list(family.sampler_options),
        "max_batch": settings.max_batch,
        "batch_wait_ms": settings.batch_wait_ms,
        "formats": list(FORMATS),
    }


def application(settings: ServeSettings) -> Any:
    """The Ray Serve application of ``settings`` (``serve.run`` deploys it)."""
    gpus = settings.gpus_per_replica
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    deployment = serve.deployment(
        Generator,
        name="generator",
        num_replicas=settings.replicas,
        # Enough requests in flight per replica to fill a batch, and the next one queuing while it runs.
        max_ongoing_requests=max(16, 2 * settings.max_batch),
        ray_actor_options={"num_cpus": settings.cpus_per_replica, "num_gpus": gpus},
        health_check_period_s=2,
    )
    return deployment.bind(settings)


@dataclass
class Server:
    """A running ``fastgen serve``: its URL, and :meth:`stop` to take it down (and the Ray it started)."""

    url: str
    settings: ServeSettings
    started_ray: bool

    def stop(self) -> None:
        """Shut the application down, and Ray too if :func:`start` started it (again: nothing)."""
        if ray.is_initialized():
            serve.shutdown()
            disconnect(self.started_ray)


def start(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
          num_cpus: int | None = None) -> Server:  # fmt: skip
    """Deploy ``settings`` on the Ray cluster at ``address`` (None: a local one with ``num_cpus``), HTTP on
    ``host:port``; returns once every replica is up. The source is loaded here first, so a bad model is one error
    now rather than replicas that fail to start."""
    from fastgen.runtime import load_for_sampling

    count(port, "--port", high=65535)
    check_batching(load_for_sampling(settings.source, backend=settings.backend, device="cpu"), settings)  # fails fast
    started = connect(address, num_cpus=num_cpus)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(application(settings), name=APP_NAME, route_prefix="/")
    except Exception as error:  # a deployment that cannot start: one line, and no Ray left behind
        try:
            serve.shutdown()
        finally:
            disconnect(started)
        if isinstance(error, FastgenError):
            raise
        raise FastgenError(f"the server could not start: {str(error).splitlines()[0] if str(error) else error!r}") from None
    return Server(f"http://{host}:{port}", settings, started)


def check_batching(model: Any, settings: ServeSettings) -> None:
    """The model can run every batch the server may form, 1 … ``max_batch`` images: it fits in memory, and engines'
    batch profiles (TensorRT) cover that range."""
    from fastgen import api

    profiles = [site.batch_range for site in getattr(model, "sites", {}).values() if getattr(site, "batch_range", None)]
    if profiles:
        low, high = max(profile.min for profile in profiles), min(profile.max for profile in profiles)
        if low > 1 or settings.max_batch > high:
            raise FastgenError(f"the bundle's engines take batches {low} … {high}, and the server forms batches 1 … "
                               f"{settings.max_batch}: serve with --max-batch ≤ {high}, or export with --batch 1,OPT,MAX")  # fmt: skip
    try:
        api.check_sample_count(model, settings.max_batch)
    except FastgenError as error:
        raise FastgenError(f"--max-batch {settings.max_batch}: {error}") from None


def serve_until_stopped(settings: ServeSettings, *, on_ready: Callable[[Server], None] = lambda server: None,
                        **arguments: Any) -> None:  # fmt: skip
    """:func:`start` (``arguments`` as there), ``on_ready(server)``, then serve until SIGINT or SIGTERM and stop.
    The handlers go in first: a Ctrl-C while the replicas start still stops them and the Ray this started."""
    stopping = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stopping.set()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = start(settings, **arguments)
        try:
            if not stopping.is_set():
                on_ready(server)
            stopping.wait()
        finally:
            server.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
