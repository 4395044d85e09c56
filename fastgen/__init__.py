"""fastgen: train, export, sample and benchmark fast image diffusion models (UDPM, PDDPM, blur, DDPM)."""

from fastgen.errors import FastgenError

__version__ = "0.1.0"
__all__ = ["FastgenError", "__version__"]
