"""fastgen serve (Ray Serve) and fastgen sample --ray (Ray Data), on a real local Ray: every response and every
shard is `fastgen sample`'s images for its (seed, index); requests are batched; a killed replica or actor loses
nothing; bad requests get a one-line 4xx. Traffic goes to 127.0.0.1 only, in bounded loops."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export import random_checkpoint

from fastgen import api
from fastgen.data.images import images_to_uint8
from fastgen.errors import FastgenError
from fastgen.export import export_bundle
from fastgen.runtime import load_bundle
from fastgen.serve import Client, RequestError, parse_generate

ray = pytest.importorskip("ray", reason="Ray is the serve extra: pip install 'fastgen[serve]'")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    return export_bundle(random_checkpoint("udpm", root / "run", seed=3), root / "udpm", batch=(1, 8, 32)).bundle


@pytest.fixture(scope="module")
def reference(bundle: Path):
    """``fastgen sample``'s images of a seed (cached): what every answer is compared with."""
    model, cache = load_bundle(bundle), {}

    def images(seed: int, count: int) -> np.ndarray:
        if cache.get(seed, np.empty(0)).shape[:1] < (count,):
            cache[seed] = api.sample(model, count, seed=seed).numpy()
        return cache[seed][:count]

    return images


@pytest.fixture(scope="module")
def server(bundle: Path):
    from fastgen.serve.deployment import ServeSettings, start

    started = start(ServeSettings(str(bundle), replicas=2, max_batch=8, batch_wait_ms=50, cpus_per_replica=0.5),
                    port=free_port(), num_cpus=2)  # fmt: skip
    yield started
    started.stop()


def post(url: str, body: bytes, method: str = "POST") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method), timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_concurrent_requests_get_their_seeds_images_and_are_batched(server, reference) -> None:
    client = Client(server.url)
    chooser = random.Random(0)
    asks = [(chooser.randrange(6), chooser.randrange(5), chooser.randint(1, 3)) for _ in range(60)]  # seed, index, n

    def ask(seed_index_n: tuple[int, int, int]) -> tuple[np.ndarray, int]:
        seed, index, n = seed_index_n
        return client.generate(n, seed=seed, index=index), client.last_batch

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, asks))
    for (seed, index, n), (images, _) in zip(asks, answers):
        np.testing.assert_allclose(images, reference(seed, index + n)[index:], rtol=0, atol=1e-5)  # ORT batches differently
    batches = [batch for _, batch in answers]
    assert max(batches) > 3 and max(batches) <= 8, batches  # packed, never past --max-batch
    info = client.info()
    assert info["family"] == "udpm" and info["image"] == {"channels": 1, "height": 16, "width": 16} and info["max_batch"] == 8


def test_png_answers_are_the_8_bit_images(server, reference) -> None:
    body = Client(server.url).generate_raw(2, seed=4, index=1, format="png")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["4-1.png", "4-2.png"]
        from PIL import Image

        pixels = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in archive.namelist()])
    expected = images_to_uint8(torch.from_numpy(reference(4, 3)[1:]))[..., 0]
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1  # ±1 where ORT's rounding crosses a level


BAD_REQUESTS = [
    (b"{", 400, "not JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"n": 0}', 400, "n must be an integer from 1 to 8, got 0"),
    (b'{"n": 100000000}', 413, "split the request"),
    (b'{"n": 1.5}', 400, "n must be an integer"),
    (b'{"seed": 1}', 400, "the request needs n"),
    (b'{"n": 1, "seed": 18446744073709551616}', 400, "seed must be an integer in [0, 2^64)"),
    (b'{"n": 1, "seed": -1}', 400, "seed must be an integer"),
    (b'{"n": 1, "index": -3}', 400, "index must be an integer"),
    (b'{"n": 1, "format": "gif"}', 400, "format must be one of npy, png"),
    (b'{"n": 1, "colour": "red"}', 400, "unknown request field(s) colour"),
    (b'{"n": 1, "options": {"steps": 5}}', 400, "udpm sampler has no option steps"),
    (b'{"n": 1, "options": {"eta": NaN}}', 400, "NaN, which is not a number JSON allows"),
    (b'{"n": 1, "options": {"eta": 1e999}}', 400, "must be finite"),
    (b'{"n": 1, "options": [1]}', 400, "options must be a JSON object"),
    (b'{"n": 1, "options": {"latents": {"x": 1}}}', 400, "must be a number, a boolean or a string"),
    (b"[" * 100_000, 413, "a generate request is at most"),
    (b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_REQUESTS, ids=[f"bad-{i}" for i in range(len(BAD_REQUESTS))])
def test_bad_requests_get_a_one_line_4xx_and_the_replica_lives(server, body: bytes, status: int, fragment: str) -> None:
    code, answer = post(server.url + "/generate", body)
    assert code == status, answer
    message = json.loads(answer)["error"]
    assert fragment in message and "\n" not in message and "Traceback" not in message
    assert Client(server.url).generate(1, seed=1).shape == (1, 1, 16, 16)  # still serving


def test_routes_and_methods(server) -> None:
    assert post(server.url + "/health", None, "GET") == (200, b'{"status": "ok"}')
    code, answer = post(server.url + "/generate", None, "GET")
    assert code == 405 and "does not take GET" in json.loads(answer)["error"]
    code, answer = post(server.url + "/nowhere", None, "GET")
    assert code == 404 and "POST /generate" in json.loads(answer)["error"]


def test_the_parser_refuses_what_the_server_refuses() -> None:
    with pytest.raises(RequestError, match="from 1 to 4") as error:
        parse_generate(b'{"n": 5}', max_batch=4)
    assert error.value.status == 413 and isinstance(error.value, FastgenError)
    assert parse_generate(b'{"n": 2, "seed": 9, "index": 3}', max_batch=4).rows == [(9, 3), (9, 4)]


def test_a_replica_killed_mid_load_loses_no_request(server, reference) -> None:
    """One of the two replicas is killed while 40 requests run; the client retries what was lost, Ray Serve starts
    a new replica, and every answer is still its seed's images."""
    from ray import serve

    client = Client(server.url, retries=10)
    asks = [(seed % 5, 2) for seed in range(40)]
    results: dict[int, np.ndarray] = {}

    def ask(position: int) -> None:
        seed, n = asks[position]
        results[position] = client.generate(n, seed=seed)

    replicas = [name for name in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in name["name"]]
    assert len(replicas) == 2
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ask, position) for position in range(len(asks))]
        time.sleep(0.5)
        victim = replicas[0]
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        for future in futures:
            future.result()
    for position, (seed, n) in enumerate(asks):
        np.testing.assert_allclose(results[position], reference(seed, n), rtol=0, atol=1e-5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the controller replaces the killed replica
        status = serve.status().applications["fastgen"]
        running = status.deployments["generator"].replica_states.get("RUNNING", 0)
        if status.status == "RUNNING" and running == 2:
            break
        time.sleep(1)
    assert running == 2, status
    assert client.health()


def test_serve_without_ray_says_how_to_install_it(bundle: Path) -> None:
    code = "import sys; sys.modules['ray'] = None; from fastgen.cli import main; main(['serve', sys.argv[1]])"
    result = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "pip install 'fastgen[serve]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- Ray Data shards


@pytest.fixture(scope="module")
def two_nodes():
    """A Ray cluster of two local nodes, one CPU each."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # one Ray per process: a serving one from the tests above goes first
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    # Two nodes on loopback addresses of their own (Ray would otherwise bind the machine's network address).
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.2"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.3")
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def processes_titled(fragment: str) -> list[int]:
    """PIDs of this machine's processes whose command line holds ``fragment`` (Ray titles its actors' workers
    ``ray::<class>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and fragment.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def union(folder: Path) -> np.ndarray:
    return np.concatenate([np.load(path) for path in sorted(folder.glob("shard-*.npy"))])


def test_shards_from_two_nodes_are_the_whole_sample_and_resume(two_nodes, bundle: Path, reference, tmp_path: Path) -> None:
    from fastgen.serve.shards import sample_shards

    folder = tmp_path / "shards"
    report = sample_shards(bundle, 45, folder, seed=2, shard_size=5, actors=2, progress=False)
    assert report.written == 9 and report.images == 45 and len(report.nodes) == 2, report  # both nodes wrote
    np.testing.assert_allclose(union(folder), reference(2, 45), rtol=0, atol=1e-5)
    for lost in ("shard-10.npy", "shard-35.npy"):  # a killed worker's shards never appear: only those are redone
        (folder / lost).unlink()
    (folder / "shard-20.npy").write_bytes(b"\x93NUMPY truncated")
    again = sample_shards(bundle, 45, folder, seed=2, shard_size=5, actors=2, progress=False)
    assert (again.written, again.skipped) == (3, 6)
    np.testing.assert_allclose(union(folder), reference(2, 45), rtol=0, atol=1e-5)
    with pytest.raises(FastgenError, match="holds shards of another sample \\(its seed differ"):
        sample_shards(bundle, 45, folder, seed=3, shard_size=5, progress=False)


def test_a_killed_actors_shard_is_redone(two_nodes, bundle: Path, reference, tmp_path: Path) -> None:
    from fastgen.serve.shards import sample_shards

    folder = tmp_path / "killed"
    killed: list[str] = []

    def kill_one_sampler() -> None:  # SIGKILL, by PID, as a crash or an OOM killer would
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            samplers = processes_titled("ShardWriter")
            if samplers and any(folder.glob("shard-*.npy")):  # the pool is working
                os.kill(samplers[0], signal.SIGKILL)
                killed.append(samplers[0])
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_sampler)
    killer.start()
    report = sample_shards(bundle, 60, folder, seed=6, shard_size=4, actors=2, progress=False)
    killer.join()
    assert killed, "no sampler actor was found to kill"
    assert report.written == 15
    np.testing.assert_allclose(union(folder), reference(6, 60), rtol=0, atol=1e-5)


def test_a_max_batch_beyond_memory_is_refused_before_ray_starts(bundle: Path) -> None:
    from fastgen.serve.deployment import ServeSettings, check_batching

    with pytest.raises(FastgenError, match=r"--max-batch 1000000000000: sampling 1000000000000 images needs at least"):
        check_batching(load_bundle(bundle), ServeSettings(str(bundle), max_batch=10**12))
    check_batching(load_bundle(bundle), ServeSettings(str(bundle), max_batch=64))  # what fits passes


def test_sample_on_ray_joins_a_running_cluster_by_address(two_nodes, bundle: Path, reference, tmp_path: Path) -> None:
    """--address: this process is not connected; the call joins the cluster, samples, and leaves it running."""
    from fastgen.serve.shards import sample_shards

    ray.shutdown()
    report = sample_shards(bundle, 12, tmp_path / "joined", seed=8, shard_size=6, actors=2, address=two_nodes.address,
                           progress=False)  # fmt: skip
    assert report.written == 2 and not ray.is_initialized()  # disconnected again; the cluster itself goes on
    np.testing.assert_allclose(union(tmp_path / "joined"), reference(8, 12), rtol=0, atol=1e-5)
    ray.init(address=two_nodes.address, log_to_driver=False)
    assert len(ray.nodes()) == 2
