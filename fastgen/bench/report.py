"""Bench output: the rich table with the speed-over-baseline summary (UDPM / DDPM step), the JSON rows, the PNG plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from fastgen.families import FAMILIES
from fastgen.outputs import JSON, PNG, write_file

ROW_KEYS = ("family", "sampler", "backend", "precision", "res", "batch", "nfe", "gflops_per_image", "latency_ms",
            "images_per_s", "device")  # fmt: skip
"""The keys of every JSON row, in order."""

def base_sampler(name: str) -> str:
    """A row's sampler name without the timing note (`` (summed)`` …) that :mod:`fastgen.bench.measure` adds."""
    return name.split(" (")[0]


def print_table(rows: Sequence[dict[str, Any]], console: Console, title: str) -> None:
    """The rows as one table, then each family's images/s over its declared baseline's (UDPM over the DDPM step)
    per backend, precision and batch."""
    # The precision is in the title: one run benches one precision.
    _print(console, title, ("family", "sampler", "backend", "batch", "nfe", "GFLOP/img", "ms", "img/s"), [
        (row["family"], row["sampler"], row["backend"], str(row["batch"]), str(row["nfe"]),
         _gflops(row["gflops_per_image"]), _milliseconds(row["latency_ms"]), f"{row['images_per_s']:,.3g}")
        for row in rows
    ], caption="ms: one sample of `batch` images · GFLOP/img: 2 FLOPs per multiply-accumulate")  # fmt: skip
    ratios = speed_over_baselines(rows)
    if ratios:
        _print(console, "Speed over the baseline (ratio of images/s; UDPM / DDPM step is ANCHORS.md's last column)",
               ("family", "baseline", "backend", "precision", "batch", "img/s", "baseline img/s", "ratio"), [
                   (ratio["family"], ratio["baseline"], ratio["backend"], ratio["precision"], str(ratio["batch"]),
                    f"{ratio['images_per_s']:,.3g}", f"{ratio['baseline_images_per_s']:,.3g}", f"{ratio['ratio']:.2f}x")
                   for ratio in ratios
               ])  # fmt: skip


def _gflops(value: float) -> str:
    return f"{value:,.2f}" if value >= 1 else f"{value:.3g}"  # tiny networks: 0.00123, not 0.00


def _milliseconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _print(console: Console, title: str, headers: Sequence[str], cells: Sequence[Sequence[str]],
           caption: str | None = None) -> None:  # fmt: skip
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, collapse_padding=True)
    for header in headers:
        # Only the sampler name may wrap (a narrow console folds its timing note), so numbers stay whole.
        text = header in ("family", "sampler", "backend", "precision")
        table.add_column(header, justify="left" if text else "right", no_wrap=header != "sampler",
                         min_width=14 if header == "sampler" else None)  # fmt: skip
    for row in cells:
        table.add_row(*row)
    console.print(table)


def speed_over_baselines(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row of a family with a ``speed_baseline`` (UDPM: the DDPM step) and that baseline's row of the same
    backend, precision and batch: both images/s and their ratio."""
    def key(row: dict[str, Any], family: str, sampler: str) -> tuple[str, str, str, str, int]:
        return family, sampler, row["backend"], row["precision"], row["batch"]

    speeds = {key(row, row["family"], base_sampler(row["sampler"])): row["images_per_s"] for row in rows}
    ratios = []
    for row in rows:
        baseline = getattr(FAMILIES.get(row["family"]), "speed_baseline", None)
        if baseline is not None and key(row, *baseline) in speeds:
            speed = speeds[key(row, *baseline)]
            ratios.append({"backend": row["backend"], "precision": row["precision"], "batch": row["batch"],
                           "family": row["family"], "images_per_s": row["images_per_s"], "baseline": " ".join(baseline),
                           "baseline_images_per_s": speed, "ratio": row["images_per_s"] / speed})  # fmt: skip
    return ratios


def write_json(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The rows as a JSON list, written atomically."""
    return write_file(path, JSON, lambda staging: staging.write_text(json.dumps(list(rows), indent=2) + "\n"))


def write_plot(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """PNG: images/s against batch per family/sampler/backend (log-log), and GFLOPs per image per sampler (log)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    figure, (speed, work) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    # One colour per family and sampler, one line style and marker per backend: 10+ series stay distinguishable.
    samplers = list(dict.fromkeys(f"{row['family']} {row['sampler']}" for row in rows))
    backends = list(dict.fromkeys(row["backend"] for row in rows))
    colours = plt.get_cmap("tab20" if len(samplers) > 10 else "tab10")
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in rows:
        series.setdefault((f"{row['family']} {row['sampler']}", row["backend"]), []).append((row["batch"], row["images_per_s"]))
    for (sampler, backend), points in series.items():
        batches, speeds = zip(*sorted(points), strict=True)
        style = backends.index(backend)
        speed.plot(batches, speeds, color=colours(samplers.index(sampler)), linestyle=("-", "--", ":", "-.")[style % 4],
                   marker="osD^"[style % 4], label=f"{sampler} · {backend}")  # fmt: skip
    batches = sorted({row["batch"] for row in rows})
    speed.set(yscale="log", ylabel="images / s", title="throughput")
    speed.set_xscale("log", base=2)
    speed.set_xticks(batches, [str(batch) for batch in batches], minor=False)
    speed.xaxis.set_minor_locator(NullLocator())
    speed.set_xlabel("batch")
    speed.grid(True, which="both", alpha=0.3)
    speed.legend(fontsize=7)
    gflops = {f"{row['family']}\n{base_sampler(row['sampler'])}": row["gflops_per_image"] for row in rows}
    work.bar(list(gflops), list(gflops.values()), color="tab:gray")
    work.set(yscale="log", ylabel="GFLOPs per image", title="work per image (2 FLOPs per MAC)")
    work.tick_params(axis="x", labelsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    try:
        return write_file(path, PNG, lambda staging: figure.savefig(staging, dpi=120, format="png"))
    finally:
        plt.close(figure)
