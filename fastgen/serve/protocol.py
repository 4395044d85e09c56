"""The HTTP protocol of ``fastgen serve``, without Ray: requests parsed and checked against the model before they
are queued, images encoded for the response, errors as one-line JSON with an HTTP status.

``POST /generate`` takes ``{"n": 4, "seed": 7, "index": 0, "format": "png" | "npy", "options": {...}}``: images
``index`` … ``index + n - 1`` of ``seed`` (the images ``fastgen sample --seed 7`` gives in that order) with the
family's sampler ``options``. ``npy``: one float32 array [n, C, H, W] in [-1, 1]; ``png``: a zip of 8-bit PNGs
named ``<seed>-<index>.png``.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from fastgen.errors import FastgenError
from fastgen.sampling.noise import MAX_IMAGE_INDEX, Row, check_seed
from fastgen.schema import count

FORMATS = {"npy": "application/x-npy", "png": "application/zip"}
REQUEST_KEYS = ("n", "seed", "index", "format", "options")
MAX_BODY_BYTES = 64 * 1024
"""A generate request is a few numbers: anything longer is refused unread."""


class RequestError(FastgenError):
    """A request the server refuses, with the HTTP status that says why (4xx: the client's to fix)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_body(message: str) -> bytes:
    """The one-line JSON body of every refusal: ``{"error": "..."}``."""
    return json.dumps({"error": str(message)}).encode()


@dataclass(frozen=True)
class GenerateRequest:
    """A checked request: ``n`` images of ``seed`` from image ``index`` on, encoded as ``format``."""

    n: int
    seed: int
    index: int = 0
    format: str = "npy"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[Row]:
        return [(self.seed, self.index + offset) for offset in range(self.n)]

    @property
    def options_key(self) -> str:
        """Requests with equal keys run the same sampling program and so can share a batch."""
        return json.dumps(self.options, sort_keys=True)


def parse_generate(body: bytes, *, max_batch: int) -> GenerateRequest:
    """``body`` (JSON) as a :class:`GenerateRequest`, or a :class:`RequestError` saying what is wrong. ``max_batch``:
    the most images one request may ask for (the server's batch). Sampler options are checked by the model
    (:func:`check_options`)."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(f"the request body has {len(body)} bytes; a generate request is at most {MAX_BODY_BYTES}", 413)
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise RequestError("the request body is nested too deeply to be a generate request") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(f"the request body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise RequestError(f"the request body must be a JSON object like {{\"n\": 4, \"seed\": 0}}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(REQUEST_KEYS))
    if unknown:
        raise RequestError(f"unknown request field(s) {', '.join(unknown)}; known: {', '.join(REQUEST_KEYS)}")
    n = _integer(data, "n", None, 1, max_batch)
    seed = data.get("seed", 0)
    try:
        check_seed(seed)
    except FastgenError as error:
        raise RequestError(str(error)) from None
    index = _integer(data, "index", 0, 0, MAX_IMAGE_INDEX - n)
    output = data.get("format", "npy")
    if output not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(FORMATS)}, got {output!r}")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise RequestError(f"options must be a JSON object of sampler options, got {type(options).__name__}")
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"sampler option {name} must be finite, got {value}")
        if not isinstance(value, bool | int | float | str):
            raise RequestError(f"sampler option {name} must be a number, a boolean or a string, got {type(value).__name__}")
    return GenerateRequest(n=n, seed=seed, index=index, format=output, options=options)


def _refuse_constant(name: str) -> None:
    raise RequestError(f"the request holds {name}, which is not a number JSON allows")


def _integer(data: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = data.get(name, default)
    if value is None:
        raise RequestError(f"the request needs {name}, an integer from {low} to {high}")
    try:
        return count(value, name, low=low, high=high)
    except FastgenError as error:
        too_many = name == "n" and isinstance(value, int) and not isinstance(value, bool) and value > high
        if too_many:
            raise RequestError(f"{error}; split the request (this server batches at most that many images)", 413) from None
        raise RequestError(str(error)) from None


def encode_images(images: np.ndarray, request: GenerateRequest) -> bytes:
    """``images`` float32 [n, C, H, W] as the response body of ``request``'s format."""
    if request.format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(images, dtype=np.float32), allow_pickle=False)
        return buffer.getvalue()
    import torch

    from fastgen.data.images import images_to_uint8

    pixels = images_to_uint8(torch.from_numpy(images))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for (seed, index), image in zip(request.rows, pixels):
            png = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(png, format="PNG")
            archive.writestr(f"{seed}-{index}.png", png.getvalue())
    return buffer.getvalue()


def decode_npy(body: bytes) -> np.ndarray:
    """The images of an ``npy`` response."""
    return np.load(io.BytesIO(body), allow_pickle=False)
