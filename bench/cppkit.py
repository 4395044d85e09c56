"""C++ kit vs Python sampling of the same bundle on the CPU, with the same ONNX Runtime threads.

    python3 bench/cppkit.py [--threads 1] [--n 4] [--repeat 5] [--out bench/results/cppkit_cpu]

Needs the kit built (README: cmake -S export -B build/export && cmake --build build/export -j2). For each UDPM
bundle (fresh jittered weights of the tiny preset at 16×16 and of the small preset at 32×32, exported to a temporary
directory) it times whole samples of n images: `fastgen.api.sample` on the bundle (ONNX Runtime backend) and the
kit's `fastgen-kit-bench`, which also times the ONNX Runtime calls inside its samples, so the kit's own share
(noise, posterior steps, copies) is the rest. Writes OUT.json and OUT.md (medians).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_export import random_checkpoint  # noqa: E402 - the tests' jittered fresh checkpoints

from fastgen import api  # noqa: E402
from fastgen.export import export_bundle  # noqa: E402
from fastgen.runtime import load_bundle  # noqa: E402

BUNDLES = {  # name: udpm_tiny recipe overrides
    "udpm tiny 16×16": (),
    "udpm small 32×32": ("model.resolution=32", "model.network.preset=small"),
}


def python_seconds(bundle: Path, n: int, repeat: int) -> list[float]:
    loaded = load_bundle(bundle)
    api.sample(loaded, n, seed=0)  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        api.sample(loaded, n, seed=0)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (both sides; torch's too)")
    parser.add_argument("--n", type=int, default=4, help="images per sample")
    parser.add_argument("--repeat", type=int, default=5, help="timed samples per side (after one warm-up)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cppkit_cpu", help="OUT.json and OUT.md")
    args = parser.parse_args()
    tool = ROOT / "build" / "export" / "fastgen-kit-bench"
    if not tool.is_file():
        sys.exit(f"{tool} is missing: build the kit first (README)")
    torch.set_num_threads(args.threads)  # the Python backend gives ONNX Runtime torch's thread count
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, overrides in BUNDLES.items():
            print(f"{name}: exporting", flush=True)
            checkpoint = random_checkpoint("udpm", Path(work) / f"{len(rows)}_run", seed=0, overrides=overrides)
            bundle = export_bundle(checkpoint, Path(work) / f"{len(rows)}_bundle").bundle
            print(f"{name}: timing", flush=True)
            python = python_seconds(bundle, args.n, args.repeat)
            result = subprocess.run([tool, bundle, "--n", str(args.n), "--threads", str(args.threads), "--repeat", str(args.repeat)],
                                    capture_output=True, text=True, check=True)  # fmt: skip
            cpp = json.loads(result.stdout)
            sample, sites = statistics.median(cpp["sample_seconds"]), statistics.median(cpp["site_seconds"])
            rows.append({"bundle": name, "n": args.n, "threads": args.threads, "python_seconds": python, "cpp": cpp,
                         "python_median": statistics.median(python), "cpp_median": sample, "cpp_sites_median": sites,
                         "kit_overhead": (sample - sites) / sample})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| bundle | n | ORT threads | Python sample | C++ sample | C++ ORT calls | kit's own share |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['bundle']} | {row['n']} | {row['threads']} | {1e3 * row['python_median']:.1f} ms | "
                     f"{1e3 * row['cpp_median']:.1f} ms | {1e3 * row['cpp_sites_median']:.1f} ms | {100 * row['kit_overhead']:.1f}% |")  # fmt: skip
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
