"""Noise (beta) schedules shared by the DDPM-style families (DDPM/DDIM, PDDPM, blur diffusion)."""

import math

import torch

from fastgen.errors import FastgenError

BETA_SCHEDULES = ("linear", "cosine")


def make_betas(
    kind: str = "linear",
    num_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    cosine_s: float = 8e-3,
) -> torch.Tensor:
    """Betas of length ``num_steps`` in float64 (cast where used).

    ``linear``: Ho et al. 2020, ``beta_start..beta_end`` evenly spaced.
    ``cosine``: Nichol & Dhariwal 2021, alpha-bar = cos²((t/T + s)/(1 + s)·π/2), betas clipped at 0.999.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise FastgenError(f"num_steps must be a positive integer, got {num_steps!r}")
    if kind == "linear":
        if not 0 < beta_start <= beta_end < 1:
            raise FastgenError(f"linear schedule needs 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if kind == "cosine":
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        alpha_bar = torch.cos((steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
        return betas.clamp(max=0.999)
    raise FastgenError(f"unknown beta schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}")
