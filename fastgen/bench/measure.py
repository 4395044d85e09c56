"""What a bench row measures: network calls and FLOPs of one full sample, and its latency.

Work is counted, never timed: the family's own sampler runs once on stand-in sites (zeros of each site's output
shape, so a 1000-step chain costs milliseconds) to count calls per call site, and each distinct call site is
FLOP-counted once, on a meta-device copy (no memory, no compute), for one image.

Latency is the median over repeats, timed in one of three ways; a row's sampler name says which unless direct:
* ``direct`` — whole samples (samplers of at most ``max_calls`` network calls);
* ``scaled`` — longer chains of one call site, whose steps all cost the same: the first ``max_calls`` calls with
  their steps (torch backend: the family's own sampler, ended after that many calls; graph backend: a graph of
  that many), times nfe / max_calls;
* ``summed`` — longer samplers over several call sites (PDDPM's pyramid), torch backend: the whole sampler with
  every network call answered by a cached output of its site, plus per call site its number of calls times
  the time of one real call. Exact for eager execution, where work runs one op after another.
"""

from __future__ import annotations

import contextlib
import copy
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastgen.accel import GraphSampler
from fastgen.families import CallSite, Family, Sites
from fastgen.nets.flops import count_flops
from fastgen.sampling.program import Call, DenoiseChain


@dataclass(frozen=True)
class Workload:
    """One full sample's network work: calls per call site and FLOPs of one call per image."""

    calls: dict[str, int]
    flops_per_call: dict[str, int]

    @property
    def nfe(self) -> int:
        """Network function evaluations of one sample."""
        return sum(self.calls.values())

    @property
    def gflops_per_image(self) -> float:
        """FLOPs of one image's network calls (2 per multiply-accumulate), in units of 1e9."""
        return sum(count * self.flops_per_call[name] for name, count in self.calls.items()) / 1e9

    @property
    def single_site(self) -> bool:
        """Whether every call goes to one call site (a chain of identical steps)."""
        return len(self.calls) == 1


def count_calls(family: Family, call_sites: list[CallSite], **options: Any) -> dict[str, int]:
    """Calls per call site (those called at least once) of one sample: read off the family's program for ``options``."""
    names = {site.name for site in call_sites}
    counts: dict[str, int] = {}
    for op in family.sampling_program(**options).ops:
        if isinstance(op, Call | DenoiseChain) and op.site in names:
            counts[op.site] = counts.get(op.site, 0) + (op.timesteps.numel() if isinstance(op, DenoiseChain) else 1)
    return counts


def flops_per_call(site: CallSite) -> int:
    """FLOPs of one call of ``site`` on one image, counted on a meta-device copy of its module."""
    module = copy.deepcopy(site.module).to("meta")
    return count_flops(module, *site.example_inputs(1, device="meta"))


def workload(family: Family, call_sites: list[CallSite], **options: Any) -> Workload:
    """Calls and per-call FLOPs of one sample (each distinct call site counted once)."""
    calls = count_calls(family, call_sites, **options)
    return Workload(calls, {site.name: flops_per_call(site) for site in call_sites if site.name in calls})


class Timer:
    """Median milliseconds of ``repeats`` runs after ``warmup`` runs: CUDA events on a GPU, the wall clock on CPU."""

    def __init__(self, device: torch.device, warmup: int, repeats: int) -> None:
        self.device = device
        self.warmup = warmup
        self.repeats = repeats

    def __call__(self, fn: Callable[[], Any]) -> float:
        for _ in range(self.warmup):
            fn()
        return statistics.median(self._once(fn) for _ in range(self.repeats))

    def _once(self, fn: Callable[[], Any]) -> float:
        if self.device.type != "cuda":
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3
        # Events bracket the run on the stream: gaps while the host is still launching count, as latency should.
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


@dataclass(frozen=True)
class Timing:
    """Milliseconds per sample, how they were timed (``direct``, ``scaled`` or ``summed``) and calls timed per run."""

    latency_ms: float
    method: str
    calls: int

    @property
    def note(self) -> str:
        """What a row's sampler name gets appended: nothing for a direct timing."""
        if self.method == "scaled":
            return f" (scaled: {self.calls} calls)"
        return " (summed)" if self.method == "summed" else ""


class _BudgetSpent(Exception):
    """Ends a sampler run once its call budget is spent (see :class:`CallBudget`)."""


class CallBudget:
    """Sites that end the sampler after ``limit`` network calls: times the start of any sampler, unchanged."""

    def __init__(self, sites: Sites, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.sites = {name: self._counted(site) for name, site in sites.items()}

    def _counted(self, site: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def call(*inputs: Tensor) -> Tensor:
            out = site(*inputs)
            self.used += 1
            if self.used == self.limit:
                raise _BudgetSpent
            return out

        return call

    def run(self, sample: Callable[[Sites], Any]) -> None:
        """``sample(sites)`` until the budget is spent."""
        self.used = 0
        with contextlib.suppress(_BudgetSpent):
            sample(self.sites)


def _sampler(family: Family, batch: int, device: torch.device, **options: Any) -> Callable[[Sites], None]:
    """``sample(sites)``: one eager run of the family's program on ``batch`` images (seed 0)."""

    def sample(run_sites: Sites) -> None:
        with torch.inference_mode():
            family.sample(run_sites, batch, seed=0, device=device, **options)

    return sample


def time_eager(timer: Timer, family: Family, sites: Sites, call_sites: list[CallSite], work: Workload, batch: int,
               max_calls: int, **options: Any) -> Timing:  # fmt: skip
    """The family's own sampler on ``sites`` (the torch backend), timed ``direct``, ``scaled`` or ``summed``."""
    device = timer.device
    sample = _sampler(family, batch, device, **options)
    if work.nfe <= max_calls:
        return Timing(timer(lambda: sample(sites)), "direct", work.nfe)
    if work.single_site:
        budget = CallBudget(sites, max_calls)
        return Timing(timer(lambda: budget.run(sample)) * work.nfe / max_calls, "scaled", max_calls)
    with torch.inference_mode():
        seed = torch.Generator().manual_seed(0)
        inputs = {site.name: site.example_inputs(batch, device, seed) for site in call_sites if site.name in work.calls}
        cached = {name: sites[name](*args) for name, args in inputs.items()}

    def call(name: str) -> None:
        with torch.inference_mode():
            sites[name](*inputs[name])

    chain = timer(lambda: sample({name: lambda *_, out=out: out for name, out in cached.items()}))
    calls = sum(count * timer(lambda name=name: call(name)) for name, count in work.calls.items())
    return Timing(chain + calls, "summed", work.nfe)


def time_graph(timer: Timer, family: Family, sites: Sites, work: Workload, batch: int, max_calls: int, *,
               precision: str | torch.dtype, kernels: str, **options: Any) -> tuple[Timing, bool]:  # fmt: skip
    """One CUDA graph of the sample (``direct``, or ``scaled`` for long one-site chains), and whether it is fused."""
    scaled = work.single_site and work.nfe > max_calls
    sampler = GraphSampler(family, sites, batch, precision=precision, kernels=kernels, device=timer.device,
                           warmup=1, max_calls=max_calls if scaled else None, **options)  # fmt: skip
    timing = Timing(timer(sampler.replay) * work.nfe / sampler.calls, "scaled" if scaled else "direct", sampler.calls)
    return timing, sampler.fused


def profile_eager(family: Family, sites: Sites, batch: int, device: torch.device, max_calls: int, path: str | Path,
                  **options: Any) -> Path:  # fmt: skip
    """One sample of the family's own sampler (its first ``max_calls`` network calls) under ``torch.profiler``,
    after one untimed run; writes the op table, heaviest first (device time on a GPU, CPU time on a CPU), to ``path``.

    Eager, so every kernel shows under the op that launched it (a CUDA graph replay shows as one launch).
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    budget = CallBudget(sites, max_calls)
    sample = _sampler(family, batch, device, **options)
    budget.run(sample)
    with torch.profiler.profile(activities=activities) as profiler:
        budget.run(sample)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path = Path(path)
    header = f"{family.name} · batch {batch} · first {min(max_calls, budget.used)} network call(s) · sorted by {sort_by}\n"
    path.write_text(header + profiler.key_averages().table(sort_by=sort_by, row_limit=40) + "\n")
    return path


def profile_file_name(family: str, sampler: str, precision: str, batch: int) -> str:
    """``udpm_levels_bf16_b256.txt``: a profile's file name, safe on any file system."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{family}_{sampler}_{precision}_b{batch}") + ".txt"
