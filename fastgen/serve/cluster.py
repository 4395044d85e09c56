"""Joining or starting the Ray cluster that ``fastgen serve`` and ``fastgen sample --ray`` run on."""

from __future__ import annotations

import os
from typing import Any

from fastgen.errors import FastgenError

INSTALL_HINT = "pip install 'fastgen[serve]' (./setup.sh installs it)"


def require_ray() -> Any:
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FastgenError(f"serving and distributed sampling run on Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one ``ray start`` made on this machine; ``host:port``: that
    head node), or start a local one on 127.0.0.1 when ``address`` is None. Returns whether this call started Ray
    (so that the caller shuts it down again); an already connected process keeps its connection."""
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    settings: dict[str, Any] = {"log_to_driver": False}
    if address is None:
        # Without this Ray binds the machine's first network address; a local instance belongs on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        settings.update(num_cpus=num_cpus, include_dashboard=False)
    else:
        settings["address"] = address
    try:
        ray.init(**settings)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise FastgenError(f"could not start or join {where}: {str(error).splitlines()[0] if str(error) else error!r}") from None
    return True


def disconnect(started: bool) -> None:
    """Undo :func:`connect`: shut Ray down if that call started it."""
    if started:
        require_ray().shutdown()
