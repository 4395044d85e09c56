"""Issue 23 on the CPU: node counts of plain vs simplified graphs, and the paper 64×64 UDPM sample from three bundles
of the same random weights — fp32 as exported before (no simplification), simplified fp32, int8 — timed interleaved.

    python3 bench/int8_cpu.py --threads 1 --repeats 5 --out bench/results/int8_cpu

Writes OUT.json and prints Markdown tables. Quality (fp32 vs int8 of a trained tiny model) is `fastgen eval`, see
bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from fastgen import api
from fastgen.api import model_config_from_recipe
from fastgen.bench.run import preset_family
from fastgen.export import export_bundle
from fastgen.export.onnx_export import PRECISIONS, export_site
from fastgen.families import build_family
from fastgen.models import LoadedModel, load_model
from fastgen.runtime import load_bundle
from fastgen.training import load_recipe

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("udpm", "ddpm", "pddpm", "blur")
COUNTED = ("Constant", "Identity", "Shape", "Reshape", "InstanceNormalization")


def random_model(family_name: str, preset: str | None) -> LoadedModel:
    """The tiny recipe's model (``preset`` None) or the paper 64×64 network, random weights (seed 0)."""
    if preset is None:
        family = build_family(model_config_from_recipe(load_recipe(ROOT / "train" / f"{family_name}_tiny.toml", ()).sections))
    else:
        family = preset_family(family_name, 64, preset)
    torch.manual_seed(0)
    networks = {name: net.eval() for name, net in family.build_networks().items()}
    return LoadedModel(family, networks, Path(f"random-{family_name}-{preset or 'tiny'}"), torch.device("cpu"),
                       family.call_sites(networks))  # fmt: skip


def node_counts(graph: Path, threads: int) -> dict:
    model = onnx.load(str(graph))
    ops = collections.Counter(node.op_type for node in model.graph.node)
    # ONNX Runtime's own graph optimisations (level "extended": what it can save to a file), for comparison.
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        after_ort = len(onnx.load(options.optimized_model_filepath).graph.node)
    return {"nodes": len(model.graph.node), "ort_extended": after_ort, **{op: ops.get(op, 0) for op in COUNTED}}


def count_sites(work: Path, threads: int) -> list[dict]:
    rows = []
    for family, preset in [*((name, None) for name in FAMILIES), ("udpm", "paper")]:
        model = random_model(family, preset)
        for site in model.call_sites:
            row = {"family": family, "preset": preset or "tiny", "site": site.name}
            for simplify in (False, True):
                graph = work / f"{family}_{preset}_{site.name}_{simplify}.onnx"
                export_site(site, graph, PRECISIONS["fp32"], 17, simplify=simplify)
                row["simplified" if simplify else "plain"] = node_counts(graph, threads)
                graph.unlink()
            rows.append(row)
            print(row, flush=True)
    return rows


def time_bundles(models: dict[str, LoadedModel], work: Path, batches: list[int], repeats: int, calibrate: int) -> dict:
    """Per model: its fp32 (plain), simplified fp32 and int8 bundles, every one timed in each repeat (interleaved)."""
    variants = {"fp32": {"simplify": False}, "fp32 simplified": {}, "int8": {"quantize": "int8", "calibrate": calibrate}}
    bundles, validation = {}, {}
    for label, model in models.items():
        for variant, options in variants.items():
            name = f"{label} · {variant}"
            start = time.perf_counter()
            report = export_bundle(model, work / f"{label}_{variant.replace(' ', '_')}", **options)
            validation[name] = {"export_s": round(time.perf_counter() - start, 1),
                                "max_error": {site.name: site.validation.max_error for site in report.sites},
                                "nodes": {site.name: len(onnx.load(str(report.bundle / site.file)).graph.node)
                                          for site in report.sites}}  # fmt: skip
            bundles[name] = load_bundle(report.bundle)
            print(name, validation[name], flush=True)
    times: dict[str, dict[int, list[float]]] = {name: {batch: [] for batch in batches} for name in bundles}
    for name, bundle in bundles.items():  # one warm-up each
        for batch in batches:
            api.sample(bundle, batch, seed=0)
    for _ in range(repeats):  # interleaved: every repeat times every bundle and batch, so load hits all alike
        for batch in batches:
            for name, bundle in bundles.items():
                start = time.perf_counter()
                api.sample(bundle, batch, seed=0)
                times[name][batch].append(time.perf_counter() - start)
    medians = {name: {batch: statistics.median(values) for batch, values in rows.items()} for name, rows in times.items()}
    return {"validation": validation, "seconds": times, "median_s": medians}


def markdown(counts: list[dict], timing: dict, batches: list[int]) -> str:
    lines = ["| family | preset | site | nodes plain → simplified | after ORT extended (plain → simplified) | "
             "Constant | Identity | Shape | Reshape (plain → simplified) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in counts:
        p, s = row["plain"], row["simplified"]
        lines.append(f"| {row['family']} | {row['preset']} | {row['site']} | {p['nodes']} → {s['nodes']} | "
                     f"{p['ort_extended']} → {s['ort_extended']} | {p['Constant']} → {s['Constant']} | "
                     f"{p['Identity']} → {s['Identity']} | {p['Shape']} → {s['Shape']} | {p['Reshape']} → {s['Reshape']} |")
    lines += ["", "| bundle | " + " | ".join(f"batch {b} (median)" for b in batches) + " | "
              + " | ".join(f"speed-up vs fp32, batch {b}" for b in batches) + " |", "|---|" + "---|" * 2 * len(batches)]
    medians = timing["median_s"]
    for name, row in medians.items():
        fp32 = medians[name.split(" · ")[0] + " · fp32"]
        lines.append(f"| {name} | " + " | ".join(f"{row[b] * 1e3:.1f} ms" for b in batches) + " | "
                     + " | ".join(f"{fp32[b] / row[b]:.2f}×" for b in batches) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", default="1,4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibrate", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_cpu")
    parser.add_argument("--skip-counts", action="store_true")
    parser.add_argument("--checkpoint", type=Path, help="also a trained model's three bundles (e.g. the tiny UDPM)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        counts = [] if args.skip_counts else count_sites(Path(tmp), args.threads)
        models = {"paper udpm (random)": random_model("udpm", "paper")}
        if args.checkpoint is not None:
            models[f"trained {args.checkpoint.name}"] = load_model(args.checkpoint)
        timing = time_bundles(models, Path(tmp), batches, args.repeats, args.calibrate)
    result = {"threads": args.threads, "onnxruntime": ort.__version__, "torch": torch.__version__, "counts": counts, **timing}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(counts, timing, batches))


if __name__ == "__main__":
    main()
