"""``fastgen bench``: GFLOPs per image, latency and images/s of every family's sampler, per backend and batch.

* :func:`run_bench` — the whole bench: rows (:data:`ROW_KEYS`), a printed table with the UDPM / DDPM-step
  ratio, JSON and a PNG plot.
* :func:`workload` — calls and FLOPs of one sample (each distinct call site counted once, on the meta device).
* :func:`kernel_bandwidth` — the fused step kernels' GB/s against a device-to-device copy (``--bandwidth``).
"""

from fastgen.bench.bandwidth import BANDWIDTH_KEYS, kernel_bandwidth, print_bandwidth
from fastgen.bench.measure import CallBudget, Timer, Timing, Workload, count_calls, flops_per_call, workload
from fastgen.bench.report import ROW_KEYS, speed_over_baselines, write_json, write_plot
from fastgen.bench.run import BACKENDS, CPU_DEFAULTS, GPU_DEFAULTS, PRESETS, preset_family, run_bench, samplers

__all__ = [
    "BACKENDS",
    "BANDWIDTH_KEYS",
    "CPU_DEFAULTS",
    "CallBudget",
    "GPU_DEFAULTS",
    "PRESETS",
    "ROW_KEYS",
    "Timer",
    "Timing",
    "Workload",
    "count_calls",
    "flops_per_call",
    "kernel_bandwidth",
    "preset_family",
    "print_bandwidth",
    "run_bench",
    "samplers",
    "speed_over_baselines",
    "workload",
    "write_json",
    "write_plot",
]
