"""The quality table: every family trained for the same minutes on one dataset, sampled with its natural sampler(s),
scored by ``fastgen eval``'s metrics, with NFE, GFLOPs per image and sampling time (bench/results/quality_*.md).

    python3 bench/quality.py --minutes 2 --out bench/results/quality_cpu           # digits, the *_tiny recipes
    python3 bench/quality.py --recipe-suffix fmnist32 --minutes 2 --n 1000 --out bench/results/quality_gpu_fmnist32

Writes OUT.md, OUT.json and one PNG grid per row (OUT_<family>_<sampler>.png). Runs already trained under
--runs are reused (--retrain trains them again), so the table can be re-scored with other metrics or sizes.
A thin layer over ``fastgen.api`` (train, load_model, evaluate) and ``fastgen.bench.workload``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's fastgen, whatever is installed

from fastgen import api  # noqa: E402
from fastgen.bench import workload  # noqa: E402
from fastgen.data import save_image_grid  # noqa: E402
from fastgen.metrics.evaluation import SCORES  # noqa: E402
from fastgen.training import load_recipe  # noqa: E402

FAMILIES = ("udpm", "ddpm", "pddpm", "blur")
# Each family's natural samplers: (row name, sampler options).
SAMPLERS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "udpm": [("3 levels", {})],
    "ddpm": [("ancestral-1000", {"sampler": "ancestral"}), ("ddim-10", {"sampler": "ddim", "steps": 10}),
             ("ddim-50", {"sampler": "ddim", "steps": 50})],  # fmt: skip
    "pddpm": [("pyramid", {})],
    "blur": [("chain", {})],
}


def train_run(family: str, recipe: Path, runs: Path, minutes: float, extra: list[str], retrain: bool) -> Path:
    """Train ``recipe`` for ``minutes`` into ``runs/family``, or reuse the run already there."""
    run = runs / family
    if retrain or not (run / "checkpoints" / "latest").exists():
        overrides = [f"run.max_minutes={minutes}", "run.steps=1000000", "run.checkpoint_every=1000000", *extra]
        began = time.perf_counter()
        api.train(recipe, overrides, run_dir=run)
        print(f"{family}: trained {time.perf_counter() - began:.0f} s", flush=True)
    return run


def family_overrides(family: str, overrides: list[str]) -> list[str]:
    """The ``--set`` values for ``family``: the unprefixed ones and those written ``family:key=value``."""
    chosen = []
    for override in overrides:
        prefix, colon, rest = override.partition(":")
        if not (colon and prefix in FAMILIES):
            chosen.append(override)
        elif prefix == family:
            chosen.append(rest)
    return chosen


def training_facts(model: api.LoadedModel) -> dict[str, Any]:
    """Steps reached, the time budget and the batch size, from the checkpoint's config.json."""
    config = json.loads((model.checkpoint / "config.json").read_text())
    run = config["recipe"]["run"]
    return {"steps": config["step"], "max_minutes": run.get("max_minutes"), "batch_size": run["batch_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="training minutes per family (run.max_minutes)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families")
    parser.add_argument("--recipe-suffix", default="tiny", help="train/<family>_<suffix>.toml (tiny: digits)")
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every family, or for one as FAMILY:key=value (repeatable)")
    parser.add_argument("--runs", type=Path, default=Path("runs/quality"), help="where the runs are trained (and reused)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a run exists")
    parser.add_argument("--n", type=int, default=500, help="images scored per row")
    parser.add_argument("--batch", type=int, default=250, help="images per sampling chunk")
    parser.add_argument("--ref-n", type=int, default=None, help="reference images (default: fastgen eval's)")
    parser.add_argument("--metrics", default=None, help="fastgen eval --metrics (default: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality_cpu"), help="OUT.md, OUT.json, OUT_*.png")
    parser.add_argument("--note", default="", help="a line for the table's header (machine load, …)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = api.resolve_device(args.device)
    rows = []
    for family in args.families.split(","):
        recipe = ROOT / "train" / f"{family}_{args.recipe_suffix}.toml"
        run = train_run(family, recipe, args.runs, args.minutes, family_overrides(family, args.set), args.retrain)
        model = api.load_model(run, device=device)
        training = training_facts(model)
        cpu_model = model if device.type == "cpu" else api.load_model(run)
        for name, options in SAMPLERS[family]:
            work = workload(cpu_model.family, cpu_model.call_sites, **options)
            result = api.evaluate(model, args.n, batch=args.batch, metrics=args.metrics, reference_size=args.ref_n,
                                  progress=True, **options)  # fmt: skip
            grid = args.out.parent / f"{args.out.name}_{family}_{name.replace(' ', '_')}.png"
            save_image_grid(torch.nn.functional.interpolate(result.samples, scale_factor=max(1, 64 // result.samples.shape[-1])),
                            grid, nrow=8)  # fmt: skip
            rows.append({"family": family, "sampler": name, "options": options, "nfe": work.nfe,
                         "gflops_per_image": work.gflops_per_image, "ms_per_image": 1e3 * result.sampling_seconds / result.n,
                         "training": training, "grid": grid.name, "eval": result.to_dict(),
                         "cells": {label: model for label, model, _ in result.rows()},
                         "floor_cells": {label: floor for label, _, floor in result.rows()}})  # fmt: skip
            print(f"{family} {name}: {json.dumps(result.scores)}", flush=True)
            write(args, rows, device)


def write(args: argparse.Namespace, rows: list[dict], device: torch.device) -> None:
    """OUT.json (every row's full eval) and OUT.md (one table; the real test split, scored alike, as the floor rows)."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    header = {"machine": machine, "torch": torch.__version__, "minutes_per_family": args.minutes, "note": args.note}
    args.out.with_suffix(".json").write_text(json.dumps({**header, "rows": rows}, indent=2, default=str) + "\n")
    headings = [score.heading for score in SCORES if any(score.heading in row["cells"] for row in rows)]
    columns = ["family", "sampler", "train steps", "NFE", "GFLOPs/img", "ms/img", *headings, "grid"]
    first = rows[0]["eval"]
    lines = [f"# Sample quality: {args.recipe_suffix} recipes, {args.minutes:g} training minutes per family", "",
             f"{machine}, torch {torch.__version__}. {args.note}".strip(), "",
             f"Each row: {first['n']} samples (seed {first['seed']}) against the training split; ms/img is the sampling "
             f"time per image in chunks of {args.batch}. The last rows score {first['floor_n']} real test-split images "
             "the same way (the floor).", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]  # fmt: skip
    floors: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = [row["cells"].get(heading, "-") for heading in headings]
        lines.append(f"| {row['family']} | {row['sampler']} | {row['training']['steps']} | {row['nfe']} | "
                     f"{row['gflops_per_image']:.3g} | {row['ms_per_image']:.1f} | " + " | ".join(cells) + f" | ![]({row['grid']}) |")  # fmt: skip
        floors[row["eval"]["dataset"]] = row["floor_cells"]
    for dataset, cells in floors.items():
        lines.append(f"| real test split | vs {dataset} | - | - | - | - | " + " | ".join(cells.get(h, "-") for h in headings) + " | |")
    lines += ["", *(f"- {note}" for note in rows[-1]["eval"]["notes"])]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
