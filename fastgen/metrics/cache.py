"""Where metrics keep what is computed once (reference features, trained classifiers), keyed by content hash.

The folder is ``$FASTGEN_CACHE``, else ``~/.cache/fastgen``. Entries are written atomically
(:func:`fastgen.outputs.write_file`), so an interrupted run leaves no half-written one behind; deleting the folder
only costs recomputation.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_ENV = "FASTGEN_CACHE"


def cache_dir(kind: str) -> Path:
    """``$FASTGEN_CACHE/kind`` (default ``~/.cache/fastgen/kind``), created if missing."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastgen"
    folder = Path(root) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def content_hash(*parts: Any) -> str:
    """SHA-256 (hex) of tensors / arrays (dtype, shape and bytes) and JSON-able values, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()
