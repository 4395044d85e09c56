"""Loss curves of a run, drawn from its ``log.jsonl`` (people would rather look than read)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from fastgen.errors import FastgenError
from fastgen.layout import LOG_FILE
from fastgen.outputs import PNG, write_file


def plot_losses(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Plot every logged ``…loss`` series (one panel per update group) against the step; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    log = run_dir / LOG_FILE
    if not log.is_file():
        raise FastgenError(f"{log} not found: plot a run directory that has been trained")
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if "/" in key and (key.endswith("loss") or key.split("/")[1].startswith(("fid_", "mse"))):
                series[key].append((record["step"], value))
    if not series:
        raise FastgenError(f"{log} has no loss records yet")
    groups = sorted({key.split("/")[0] for key in series})
    figure, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for axis, group in zip(axes[0], groups, strict=True):
        for key in sorted(k for k in series if k.startswith(f"{group}/")):
            steps, values = zip(*series[key], strict=True)
            axis.plot(steps, values, label=key.split("/", 1)[1])
        axis.set(title=f"{run_dir.name}: {group}", xlabel="step", yscale="log")
        axis.legend(fontsize="small")
    figure.tight_layout()
    out = Path(out) if out is not None else run_dir / "losses.png"
    try:
        return write_file(out, PNG, lambda staging: figure.savefig(staging, dpi=100, format="png"))
    finally:
        plt.close(figure)
