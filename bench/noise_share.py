"""What share of a tiny-preset DDPM sample the program's Philox noise takes on this machine (issue 11: ≤ 10%).

Runs the first ``--calls`` steps of the ancestral program of the bench's tiny 64×64 DDPM (random weights) on the
CPU, timing every draw of the noise contract apart from the whole run; prints one JSON line per batch size.

    python3 bench/noise_share.py --threads 1 --batches 1 8 --calls 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fastgen.bench.run import preset_family
from fastgen.families import module_sites
from fastgen.sampling.interpreter import Interpreter
from fastgen.sampling.noise import RowKeys, philox_source, seed_rows


def measure(batch: int, calls: int, resolution: int) -> dict[str, float]:
    family = preset_family("ddpm", resolution, "tiny")
    sites = module_sites(family.call_sites({name: net.eval() for name, net in family.build_networks().items()}))
    interpreter = Interpreter(family.program(), batch)
    source = philox_source(RowKeys.of(seed_rows(0, batch)))
    noise_seconds = 0.0

    def timed_source(op: int, draw: int, shape: tuple[int, ...]) -> torch.Tensor:
        nonlocal noise_seconds
        start = time.perf_counter()
        values = source(op, draw, shape)
        noise_seconds += time.perf_counter() - start
        return values

    with torch.inference_mode():
        interpreter.run(sites, timed_source, max_calls=2)  # warm-up
        noise_seconds = 0.0
        start = time.perf_counter()
        interpreter.run(sites, timed_source, max_calls=calls)
        total = time.perf_counter() - start
    return {"batch": batch, "calls": calls, "resolution": resolution, "total_ms": 1e3 * total,
            "noise_ms": 1e3 * noise_seconds, "noise_share": noise_seconds / total}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes to measure")
    parser.add_argument("--calls", type=int, default=20, help="network calls (ancestral steps) timed per batch")
    parser.add_argument("--resolution", type=int, default=64, help="image size of the tiny DDPM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for batch in args.batches:
        print(json.dumps(measure(batch, args.calls, args.resolution)))


if __name__ == "__main__":
    main()
