"""The one interpreter of sampling programs: eager on any device, and capturable in a CUDA graph.

:class:`Interpreter` prepares a program for one batch size, device and dtype — every constant moved to the
device once, so :meth:`Interpreter.run` copies nothing from the host and reads nothing back (what a CUDA graph
capture needs) — and runs it over call sites with a noise source (:mod:`fastgen.sampling.noise`). Step ops run
as the torch references of :mod:`fastgen.diffusion`, or as the fused kernels of :mod:`fastgen.kernels` where
``fused`` is on and the kernel handles the op.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgen.diffusion import blur, pddpm, udpm
from fastgen.diffusion.ddpm import AffineStepConstants
from fastgen.errors import FastgenError
from fastgen.progress import progress_bar
from fastgen.sampling.noise import NoiseSource, Row, RowKeys, check_rows, philox_source, seed_rows
from fastgen.sampling.program import (
    AffineSteps,
    BlurSteps,
    Call,
    DenoiseChain,
    Noise,
    Program,
    Renoise,
    UDPMMatheron,
    UDPMPosterior,
    Upsample,
)

Sites = Mapping[str, Callable[..., Tensor]]
KERNEL_CHOICES = ("auto", "fused", "reference")


def use_fused(kernels: str, device: torch.device) -> bool:
    """Whether step ops run the fused kernels: ``auto`` where they can, ``fused`` or an error, ``reference`` never."""
    if kernels not in KERNEL_CHOICES:
        raise FastgenError(f"unknown kernels choice {kernels!r}; choose one of {', '.join(KERNEL_CHOICES)}")
    if kernels == "reference":
        return False
    reason = _kernels_unavailable(device)
    if reason is not None and kernels == "fused":
        raise FastgenError(f"fused kernels requested, but {reason}")
    return reason is None


def _kernels_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"they run on CUDA tensors and this sampler runs on {device}"
    from fastgen.kernels import loader

    try:
        loader.cuda_core()
    except FastgenError as error:
        return str(error)
    return None


class _Stop(Exception):
    """Raised inside a run when ``max_calls`` network calls have been made."""


class Interpreter:
    """``program`` prepared for ``batch_size`` images on ``device`` with buffers in ``dtype``."""

    def __init__(self, program: Program, batch_size: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, *, fused: bool = False) -> None:  # fmt: skip
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FastgenError(f"batch size must be a positive integer, got {batch_size!r}")
        self.program = program
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.dtype = dtype
        self.fused = fused
        self._prepared = [self._prepare(op) for op in program.ops]

    @property
    def nfe(self) -> int:
        """Network calls of one run."""
        return self.program.site_calls

    def shape(self, buffer: str) -> tuple[int, ...]:
        return (self.batch_size, *self.program.buffers[buffer])

    def run(self, sites: Sites, noise: NoiseSource, *, max_calls: int | None = None, progress: bool = False) -> Tensor:
        """The program's output [B, C, H, W]; ``max_calls`` stops after that many network calls (for timing
        chains too long to run in full, never for images), returning the state reached."""
        if max_calls is not None and (isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1):
            raise FastgenError(f"max_calls must be a positive integer or None, got {max_calls!r}")
        missing = sorted({op.site for op in self.program.ops if isinstance(op, Call | DenoiseChain)} - set(sites))
        if missing:
            raise FastgenError(f"the program calls site(s) {', '.join(missing)}, which the model does not have")
        self._sites, self._noise, self._progress = sites, noise, progress
        self._buffers: dict[str, Tensor] = {}
        self._calls_left = self.nfe if max_calls is None else max_calls
        self._last: Tensor | None = None
        # Whether each op's output is finite: one reduction per op (not per step), kept on the device and read back once
        # at the end, so the hot path gains no synchronisation; none while a CUDA graph is captured (no read-back there).
        check = not (self.device.type == "cuda" and torch.cuda.is_current_stream_capturing())
        finite: list[Tensor] = []
        try:
            for index, (op, prepared) in enumerate(zip(self.program.ops, self._prepared)):
                handler = getattr(self, f"_run_{op.kind}")
                self._write(op.out, handler(op, prepared, index))
                if check:
                    finite.append(torch.isfinite(self._last).all())
        except _Stop:
            pass
        if finite:
            flags = torch.stack(finite)
            if not bool(flags.all()):
                first = int((~flags).nonzero()[0])
                raise FastgenError(_non_finite(first, self.program.ops[first]))
        return self._buffers.get(self.program.output, self._last)

    def _write(self, name: str, value: Tensor) -> None:
        self._buffers[name] = self._last = value

    def _call(self, site: Callable[..., Tensor], name: str, *inputs: Tensor) -> Tensor:
        if self._calls_left == 0:
            raise _Stop
        self._calls_left -= 1
        out = site(*inputs)
        if not isinstance(out, Tensor) or out.dim() != 4 or out.shape[0] != self.batch_size:
            raise FastgenError(f"site {name} returned {getattr(out, 'shape', type(out).__name__)}, expected a batch of "
                               f"{self.batch_size} images")  # fmt: skip
        return out.to(self.dtype)

    # ----------------------------------------------------------------------------------------------- prepare

    def _on_device(self, array: Tensor) -> Tensor:
        return array.to(device=self.device, dtype=_complex(self.dtype) if array.is_complex() else self.dtype)

    def _prepare(self, op: Any) -> Any:
        """What an op needs on the device, made once (None when nothing)."""
        if isinstance(op, Noise) and op.filter is not None:
            return self._on_device(op.filter.values)
        if isinstance(op, UDPMPosterior):
            return self._on_device(op.taps)[None, None]
        if isinstance(op, UDPMMatheron):
            constants = udpm.MatheronConstants(op.alpha, op.sigma, op.prior_scale, op.transfer, op.prior_cov)
            if self._fused_for(op, self.program.buffers[op.x]):
                from fastgen.kernels import ops

                return constants, ops.matheron_spectra(constants, self.device)
            return constants, (self._on_device(op.transfer), self._on_device(op.prior_cov))
        if isinstance(op, DenoiseChain):
            return self._prepare_chain(op)
        return None

    def _fused_for(self, op: Any, low_shape: tuple[int, ...]) -> bool:
        """The UDPM kernels handle γ = 2 only."""
        if not self.fused:
            return False
        if isinstance(op, UDPMPosterior | UDPMMatheron):
            return self.program.buffers[op.out][-1] == 2 * low_shape[-1]
        return True

    def _prepare_chain(self, op: DenoiseChain) -> dict[str, Any]:
        prepared: dict[str, Any] = {
            "t": op.timesteps.to(device=self.device, dtype=torch.float32)[:, None].repeat(1, self.batch_size),
            "noise": op.noise.tolist(),
        }
        if isinstance(op.step, AffineSteps):
            columns = [getattr(op.step, name).tolist() for name in ("a", "b", "p", "q", "r", "s")]
            prepared["constants"] = [AffineStepConstants(a, b, op.step.clip, p, q, r, s)
                                     for a, b, p, q, r, s in zip(*columns)]  # fmt: skip
        else:
            step = op.step
            factors = blur.StepFactors(step.log_alpha, step.power, step.log_alpha_cumprod, step.power_cumsum,
                                       step.log_eigenvalues)  # fmt: skip
            tables = blur.step_tables(factors)
            coefficients = blur.coefficients_from_tables(
                tables["alphas"], tables["one_minus_alphas"], tables["one_minus_alphas_cumprod"]
            )
            stacked = torch.stack(coefficients, dim=1)  # [n, 3, rows, columns]
            if self.fused:
                prepared["coefficients"] = stacked.to(device=self.device, dtype=torch.float32).contiguous()
            else:
                prepared["coefficients"] = self._on_device(stacked)[:, :, None, None]  # [n, 3, 1, 1, rows, columns]
        return prepared

    # ------------------------------------------------------------------------------------------------- ops

    def _run_noise(self, op: Noise, values: Tensor | None, index: int) -> Tensor:
        z = self._draw(index, 0, op.out)
        if values is not None:
            z = blur.spectral_filter(z, values, op.filter.basis)
        return z if op.scale == 1 else op.scale * z

    def _run_call(self, op: Call, _: None, index: int) -> Tensor:
        return self._call(self._sites[op.site], op.site, self._buffers[op.x])

    def _run_udpm_posterior(self, op: UDPMPosterior, taps: Tensor, index: int) -> Tensor:
        x_l, x_hat = self._buffers[op.x], self._buffers[op.x_hat]
        e = self._draw(index, 0, op.out) if op.noisy else None
        if self._fused_for(op, tuple(x_l.shape[1:])):
            from fastgen.kernels import ops

            constants = udpm.BlockPosteriorConstants(op.taps, op.kx, op.kp, op.ky, op.ke, op.kep)
            return ops.udpm_posterior_step(constants, x_l, x_hat, e)
        gamma = taps.shape[-1]

        def down(v: Tensor) -> Tensor:  # Σ taps·v per block
            return F.conv2d(v.flatten(0, 1)[:, None], taps, stride=gamma).reshape(*v.shape[:2], *x_l.shape[-2:])

        def up(y: Tensor) -> Tensor:  # taps·y per block
            return F.conv_transpose2d(y.flatten(0, 1)[:, None], taps, stride=gamma).reshape(x_hat.shape)

        out = op.kx * x_hat + up(op.kp * down(x_hat) + op.ky * x_l)
        if e is not None:
            out = out + op.ke * e + up(op.kep * down(e))
        return out

    def _run_udpm_matheron(self, op: UDPMMatheron, prepared: tuple, index: int) -> Tensor:
        constants, (transfer, prior_cov) = prepared
        x_l, x_hat = self._buffers[op.x], self._buffers[op.x_hat]
        pair = (self._draw(index, 0, op.out), self._draw(index, 1, op.x)) if op.noisy else None
        if self._fused_for(op, tuple(x_l.shape[1:])):
            from fastgen.kernels import ops

            return ops.udpm_matheron_step(constants, (transfer, prior_cov), x_l, x_hat, pair)
        if pair is None:
            pair = (torch.zeros_like(x_hat), torch.zeros_like(x_l))
        return udpm.kalman_update(constants, transfer, prior_cov, x_l, x_hat, *pair)

    def _run_denoise_chain(self, op: DenoiseChain, prepared: dict[str, Any], index: int) -> Tensor:
        site = self._sites[op.site]
        x = self._buffers[op.x]
        affine = isinstance(op.step, AffineSteps)
        steps = range(len(prepared["noise"]))
        for i in progress_bar(steps, desc=op.site, disable=not self._progress):
            model_out = self._call(site, op.site, x, prepared["t"][i])
            z = self._draw(index, i, op.x) if prepared["noise"][i] else None
            if affine:
                x = self._affine_step(prepared["constants"][i], x, model_out, z)
            else:
                x = self._blur_step(op.step, prepared["coefficients"][i], x, model_out, z)
            self._last = x
        return x

    def _affine_step(self, c: AffineStepConstants, x: Tensor, model_out: Tensor, z: Tensor | None) -> Tensor:
        if self.fused:
            from fastgen.kernels import ops

            return ops.affine_step(c, x, model_out, z)
        x0 = c.a * x + c.b * model_out
        if c.clip:
            x0 = x0.clamp(-1, 1)
        out = c.p * x0 + c.q * x + c.r * model_out
        return out if z is None else out + c.s * z

    def _blur_step(self, step: BlurSteps, coefficients: Tensor, x: Tensor, eps_hat: Tensor, z: Tensor | None) -> Tensor:
        if self.fused:
            from fastgen.kernels import ops

            return ops.blur_step(coefficients, step.basis, x, eps_hat, z)
        return blur.combine_step(tuple(coefficients), step.basis, x, eps_hat, z)

    def _run_upsample(self, op: Upsample, _: None, index: int) -> Tensor:
        return pddpm.upsample(self._buffers[op.x])

    def _run_renoise(self, op: Renoise, _: None, index: int) -> Tensor:
        return op.signal * self._buffers[op.x] + op.noise_scale * self._draw(index, 0, op.x)

    def _draw(self, index: int, draw: int, like: str) -> Tensor:
        z = self._noise(index, draw, self.shape(like))
        return z.to(device=self.device, dtype=self.dtype)


def _non_finite(index: int, op: Any) -> str:
    """The message of a sampler whose op ``index`` made NaN/inf: which op, and what to change."""
    site = f" at site {op.site}" if isinstance(op, Call | DenoiseChain) else ""
    steps = f", {op.timesteps.numel()} steps" if isinstance(op, DenoiseChain) else ""
    return (f"sampling diverged: program op {index} ({op.kind}{site}{steps}) produced non-finite (NaN/inf) values; "
            "check the model's weights, the sampler options and any explicit latents")


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def random_seed() -> int:
    """A fresh seed when none is given (from the OS, so runs differ)."""
    return random.SystemRandom().getrandbits(63)


Draws = Mapping[tuple[int, int], Tensor]
"""Explicit noise: (op index, draw) → the normals [B, *shape] that draw uses instead of the seed's."""


class _ExplicitNoise:
    """A noise source giving ``draws`` where they are named and ``fallback``'s noise elsewhere; it records which
    draws the run took, so that one the program never makes is an error, not silently ignored."""

    def __init__(self, draws: Draws, fallback: NoiseSource) -> None:
        for key, value in draws.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in key)):
                raise FastgenError(f"explicit draws are keyed by (op index, draw) integer pairs, got {key!r}")
            if not isinstance(value, Tensor) or not value.is_floating_point():
                kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
                raise FastgenError(f"explicit draw {key} must be a floating-point tensor of normals, got {kind}")
        self.draws, self.fallback, self.taken = draws, fallback, set()

    def __call__(self, op_index: int, draw: int, shape: tuple[int, ...]) -> Tensor:
        value = self.draws.get((op_index, draw))
        if value is None:
            return self.fallback(op_index, draw, shape)
        if tuple(value.shape) != shape:
            raise FastgenError(f"explicit draw {draw} of op {op_index} has shape {list(value.shape)}, but the program draws "
                               f"{list(shape)} there (batch first)")  # fmt: skip
        self.taken.add((op_index, draw))
        return value

    def check_all_taken(self) -> None:
        unused = sorted(set(self.draws) - self.taken)
        if unused:
            raise FastgenError(f"explicit draws {unused} (op index, draw) are not draws this program makes")


def sample(program: Program, sites: Sites, batch_size: int, *, seed: int | None = None, first_image: int = 0,
           **arguments: Any) -> Tensor:  # fmt: skip
    """Run ``program`` eagerly with the Philox noise of ``seed`` (the contract of export/PROGRAM.md; None: a fresh
    seed): images ``first_image`` … ``first_image + batch_size - 1`` of that seed's sequence. ``arguments`` as
    :func:`sample_rows`."""
    return sample_rows(program, sites, seed_rows(random_seed() if seed is None else seed, batch_size, first_image),
                       **arguments)  # fmt: skip


def sample_rows(program: Program, sites: Sites, rows: Sequence[Row], *, draws: Draws | None = None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                progress: bool = False) -> Tensor:  # fmt: skip
    """Run ``program`` eagerly for a batch of ``rows``: row r is image ``index`` of seed ``seed`` for its (seed,
    index) — the same image as in that seed's own sample, whatever else shares the batch. ``draws`` replace the
    rows' noise where they are given (e.g. UDPM latents)."""
    rows = check_rows(rows)
    interpreter = Interpreter(program, len(rows), device, dtype)
    noise = philox_source(RowKeys.of(rows, interpreter.device), dtype)
    explicit = _ExplicitNoise(draws, noise) if draws else None
    with torch.inference_mode():
        images = interpreter.run(sites, explicit or noise, progress=progress)
    if explicit is not None:
        explicit.check_all_taken()
    return images
