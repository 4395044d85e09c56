"""`fastgen serve` and `fastgen sample --ray` as a user runs them: the real command lines, answers equal to
`fastgen sample`, Ctrl-C stops the server and leaves no Ray process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_export import random_checkpoint
from test_serve import free_port, processes_titled

from fastgen.export import export_bundle

pytest.importorskip("ray", reason="Ray is the serve extra: pip install 'fastgen[serve]'")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve_cli")
    return export_bundle(random_checkpoint("ddpm", root / "run", seed=4), root / "ddpm", batch=(1, 4, 8)).bundle


def fastgen(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgen", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_serve_answers_then_ctrl_c_stops_it_cleanly(bundle: Path, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "stderr.txt", "w")  # a file, so Ray's log lines can never fill a pipe nobody reads
    server = subprocess.Popen([sys.executable, "-m", "fastgen", "serve", str(bundle), "--port", str(port), "--max-batch", "8"],
                              stdout=subprocess.PIPE, stderr=log, text=True, env=ENV)  # fmt: skip
    lines: list[str] = []
    try:
        # Ready once it says so: the HTTP answers slightly before the deployment call returns.
        reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("serving" in line for line in lines):
            assert server.poll() is None, (tmp_path / "stderr.txt").read_text()
            time.sleep(0.5)
        body = json.dumps({"n": 3, "seed": 12, "index": 1, "options": {"sampler": "ddim", "steps": 4}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/generate", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            (tmp_path / "served.npy").write_bytes(answer.read())
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
        reader.join(timeout=10)
    log.close()
    out, err = "".join(lines), (tmp_path / "stderr.txt").read_text()
    assert server.returncode == 0, err
    assert f"serving {bundle} at http://127.0.0.1:{port}" in out and "curl -X POST" in out
    sampled = fastgen("sample", str(bundle), "--n", "4", "--seed", "12", "--sampler", "ddim", "--steps", "4",
                      "--out", str(tmp_path / "sampled.npy"))  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), np.load(tmp_path / "sampled.npy")[1:], rtol=0, atol=1e-5)
    time.sleep(2)
    assert not processes_titled("raylet"), "Ray processes outlived the server"


def test_sample_ray_writes_shards_and_resumes(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    args = ("sample", str(bundle), "--n", "10", "--seed", "5", "--out", str(out), "--ray", "--shard", "4", "--actors", "1",
            "--sampler", "ddim", "--steps", "4")  # fmt: skip
    first = fastgen(*args)
    assert first.returncode == 0, first.stderr
    assert "3 shard(s) written (10 images" in first.stdout
    assert sorted(path.name for path in out.glob("shard-*.npy")) == ["shard-0.npy", "shard-4.npy", "shard-8.npy"]
    again = fastgen(*args)
    assert again.returncode == 0 and "0 shard(s) written" in again.stdout and "3 already there" in again.stdout
    whole = fastgen("sample", str(bundle), "--n", "10", "--seed", "5", "--sampler", "ddim", "--steps", "4", "--out", str(tmp_path / "all.npy"))
    assert whole.returncode == 0, whole.stderr
    shards = np.concatenate([np.load(out / f"shard-{first}.npy") for first in (0, 4, 8)])
    np.testing.assert_allclose(shards, np.load(tmp_path / "all.npy"), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--png",), "--png only apply with --ray"),
        (("--ray", "--interpolate"), "--interpolate do not combine with --ray"),
        (("--ray", "--out", "x.png"), "x.png: a sample on Ray is a folder of shards"),
    ],
    ids=["png-without-ray", "interpolate-with-ray", "shards-into-a-file"],
)
def test_bad_ray_options_are_one_line(bundle: Path, tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    result = subprocess.run([sys.executable, "-m", "fastgen", "sample", str(bundle), "--n", "2", *args], capture_output=True,
                            text=True, timeout=120, env=ENV, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
