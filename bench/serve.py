"""What serving costs: ``fastgen serve`` under 1, 8 and 64 concurrent clients against the direct sampler in one
process, and ``fastgen sample --ray`` with 1 and 2 actors, on tiny UDPM and DDPM bundles (random weights: the
compute of a trained model, not its images). Writes Markdown + JSON.

    python3 bench/serve.py --out bench/results/serve_cpu      # ~10 minutes on the 2-core CPU

Every timing is wall clock on this machine, clients included (they share its cores with the server).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fastgen import api
from fastgen.export import export_bundle
from fastgen.runtime import load_bundle

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"udpm": {}, "ddpm": {"sampler": "ddim", "steps": 10}}  # DDPM: 10 DDIM calls, so one row takes seconds
SHARD_IMAGES = {"udpm": 8192, "ddpm": 2048}


def make_bundle(family: str, folder: Path) -> Path:
    """The family's tiny recipe trained for one step (the real training and export path), exported."""
    checkpoint = api.train(ROOT / "train" / f"{family}_tiny.toml", ["run.steps=1", "run.checkpoint_every=1"],
                           run_dir=folder / f"{family}_run")  # fmt: skip
    return export_bundle(checkpoint, folder / f"{family}_bundle", batch=(1, 8, 64)).bundle


def direct(bundle: Path, batch: int, images: int, options: dict) -> float:
    """Images/s of the in-process sampler (one thread, as one replica gets) in batches of ``batch``."""
    torch.set_num_threads(1)
    model = load_bundle(bundle)
    api.sample(model, batch, seed=0, **options)  # warm-up
    start = time.perf_counter()
    for first in range(0, images, batch):
        api.sample(model, min(batch, images - first), seed=0, first_image=first, **options)
    return images / (time.perf_counter() - start)


def load(url: str, clients: int, requests: int, n: int, options: dict) -> dict:
    """``requests`` generate calls of ``n`` images from ``clients`` threads: throughput, latency, batches."""
    from fastgen.serve import Client

    client = Client(url)
    client.generate(n, seed=0, options=options)  # warm-up

    def ask(position: int) -> tuple[float, int]:
        start = time.perf_counter()
        client.generate(n, seed=position, options=options)
        return time.perf_counter() - start, client.last_batch

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(ask, range(requests)))
    seconds = time.perf_counter() - start
    latencies = sorted(latency for latency, _ in answers)
    batches = [batch for _, batch in answers]
    return {"clients": clients, "n": n, "requests": requests, "img_per_s": requests * n / seconds,
            "p50_ms": 1e3 * statistics.median(latencies), "p99_ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))],
            "largest_batch": max(batches), "mean_batch": float(np.mean(batches)), "retried": client.retried}  # fmt: skip


def serve_rows(bundle: Path, family: str, max_batch: int) -> list[dict]:
    from fastgen.serve.deployment import ServeSettings, start

    server = start(ServeSettings(str(bundle), replicas=1, max_batch=max_batch, batch_wait_ms=5, cpus_per_replica=1),
                   port=8471, num_cpus=2)  # fmt: skip
    try:
        rows = []
        for clients, requests, n in ((1, 40, 1), (8, 160, 1), (64, 320, 1), (1, 20, 8), (8, 80, 8), (64, 160, 8),
                                     (8, 40, 32), (64, 80, 32)):
            rows.append({"family": family, **load(server.url, clients, requests, n, OPTIONS[family])})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
    return rows


def shard_rows(bundle: Path, family: str, folder: Path) -> list[dict]:
    from fastgen.serve.shards import sample_shards

    rows = []
    for actors in (1, 2):
        report = sample_shards(bundle, SHARD_IMAGES[family], folder / f"{family}_{actors}", seed=0, shard_size=64,
                               actors=actors, progress=False, **OPTIONS[family])  # fmt: skip
        rows.append({"family": family, "actors": actors, "images": report.images, "seconds": report.seconds,
                     "img_per_s": report.images_per_second, "steady_img_per_s": report.steady_images_per_second,
                     "startup_s": report.first_seconds, "nodes": len(report.nodes)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = [f"# Serving on the CPU ({result['machine']})", "", result["note"], "",
             "| family | clients | images/request | img/s | p50 ms | p99 ms | largest batch | mean batch | vs direct |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["serve"]:
        reference = result["direct"][row["family"]]
        lines.append(f"| {row['family']} | {row['clients']} | {row['n']} | {row['img_per_s']:.0f} | {row['p50_ms']:.1f} | "
                     f"{row['p99_ms']:.1f} | {row['largest_batch']} | {row['mean_batch']:.1f} | "
                     f"{row['img_per_s'] / reference:.2f} |")  # fmt: skip
    lines += ["", "Direct sampler, one process, one thread, batches of the server's max batch: "
              + ", ".join(f"{family} {value:.0f} img/s" for family, value in result["direct"].items()), "",
              "| family | Ray Data actors | images (shards of 64) | wall s | img/s | until the first shard, s | img/s after it |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {row['family']} | {row['actors']} | {row['images']} | {row['seconds']:.1f} | {row['img_per_s']:.0f} | "
              f"{row['startup_s']:.1f} | {row['steady_img_per_s']:.0f} |" for row in result["shards"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_cpu", help="OUT.md and OUT.json")
    parser.add_argument("--max-batch", type=int, default=32, help="the server's --max-batch (and the direct sampler's batch)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = {"machine": f"{os.cpu_count()}-core CPU, torch {torch.__version__}", "max_batch": args.max_batch,
              "note": "One replica (1 CPU, one thread), --batch-wait-ms 5; the clients, Ray's HTTP proxy and the replica "
                      "share the machine's cores. Direct: the same images sampled in one process.",
              "direct": {}, "serve": [], "shards": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for family in ("udpm", "ddpm"):
            bundle = make_bundle(family, folder)
            result["direct"][family] = direct(bundle, args.max_batch, SHARD_IMAGES[family], OPTIONS[family])
            print(json.dumps({"family": family, "direct_img_per_s": result["direct"][family]}), flush=True)
            result["serve"] += serve_rows(bundle, family, args.max_batch)
            result["shards"] += shard_rows(bundle, family, folder)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
