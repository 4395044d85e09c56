"""Exponential moving average of a network's weights (what ``fastgen sample``/``export`` use by default)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastgen.errors import FastgenError


class EMA:
    """Shadow copy of a module's state: parameters follow ``shadow ← decay·shadow + (1−decay)·live``
    after every update; buffers (e.g. norm statistics) are copied as they are."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise FastgenError(f"EMA decay must be in [0, 1), got {decay}; set optim.ema_decay")
        self.decay = decay
        self.shadow: dict[str, Tensor] = {name: value.detach().clone() for name, value in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the shadow one step toward the module's current state."""
        live = module.state_dict(keep_vars=True)
        params = [name for name, value in live.items() if isinstance(value, nn.Parameter)]
        if params:
            # One fused kernel per dtype/device group instead of one launch per tensor.
            torch._foreach_lerp_([self.shadow[n] for n in params], [live[n].detach() for n in params], 1.0 - self.decay)
        for name, value in live.items():
            if not isinstance(value, nn.Parameter):
                self.shadow[name].copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow weights, keyed like the module's own state dict."""
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore shadow weights saved by ``state_dict`` (copied in place, onto the shadow's device)."""
        if state.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() - state.keys())
            extra = sorted(state.keys() - self.shadow.keys())
            raise FastgenError(f"EMA weights do not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
        for name, value in state.items():
            if value.shape != self.shadow[name].shape:
                raise FastgenError(f"EMA weight {name} has shape {tuple(value.shape)}, the model's is {tuple(self.shadow[name].shape)}")
            self.shadow[name].copy_(value)
