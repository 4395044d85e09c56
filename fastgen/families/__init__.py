"""Model families: each ties one process of ``fastgen.diffusion`` to networks of ``fastgen.nets``."""

from __future__ import annotations

from fastgen.errors import FastgenError
from fastgen.families.base import CallSite, Family, ImageSpec, ModelConfig, Sites, TensorSpec, module_sites
from fastgen.families.blur import BlurFamily
from fastgen.families.ddpm import DDPMFamily
from fastgen.families.pddpm import PDDPMFamily
from fastgen.families.udpm import UDPMFamily

# The papers' order (the fast family first): listings, errors and bench rows follow it.
FAMILIES: dict[str, type[Family]] = {family.name: family for family in (UDPMFamily, DDPMFamily, PDDPMFamily, BlurFamily)}


def family_class(name: str) -> type[Family]:
    """The family called ``name`` (a clear error listing the known ones otherwise)."""
    if not isinstance(name, str) or name not in FAMILIES:
        raise FastgenError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def build_family(config: ModelConfig) -> Family:
    """The family object for a model config (its process built, its networks described)."""
    return family_class(config.family)(config)


__all__ = ["FAMILIES", "CallSite", "Family", "ImageSpec", "ModelConfig", "Sites", "TensorSpec", "build_family",
           "family_class", "module_sites"]  # fmt: skip
