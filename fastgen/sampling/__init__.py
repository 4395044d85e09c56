"""Sampling programs (export/PROGRAM.md): what a family's sampler is, as data, and the one interpreter that runs it.

* :mod:`fastgen.sampling.program` — the typed ops, their JSON form and validation.
* :mod:`fastgen.sampling.noise` — the noise contract: Philox4x32-10 keyed by (seed, op, draw, element).
* :mod:`fastgen.sampling.interpreter` — runs a program over call sites, eagerly or captured in a CUDA graph.

The families build programs (``Family.program``) with constants from :mod:`fastgen.diffusion`; this package
knows no family and no network.
"""
