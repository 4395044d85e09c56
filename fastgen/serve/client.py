"""A client of ``fastgen serve`` (standard library only): generate images over HTTP, retrying what a server may
lose while a replica restarts. A generate request is a pure function of (seed, index, n, options), so sending it
again is always safe."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from fastgen.errors import FastgenError
from fastgen.serve.protocol import decode_npy

RETRIED_STATUSES = frozenset({500, 502, 503, 504})
"""Replica died, proxy had no replica, or timed out: the request may not have run; run it again."""


class Client:
    """``Client("http://127.0.0.1:8000").generate(4, seed=7)`` → float32 images [4, C, H, W] in [-1, 1]."""

    def __init__(self, url: str, *, timeout: float = 120.0, retries: int = 8, backoff: float = 0.5) -> None:
        self.url = url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.retried = 0  # requests sent again after a lost answer (for tests and benches)
        self._answers = threading.local()

    def generate(self, n: int, *, seed: int = 0, index: int = 0, options: dict[str, Any] | None = None) -> np.ndarray:
        """Images ``index`` … ``index + n - 1`` of ``seed`` (``fastgen sample --seed SEED``'s, in order)."""
        return decode_npy(self.generate_raw(n, seed=seed, index=index, options=options, format="npy"))

    def generate_raw(self, n: int, *, seed: int = 0, index: int = 0, options: dict[str, Any] | None = None,
                     format: str = "npy") -> bytes:  # fmt: skip
        """The response body: ``npy`` bytes, or with ``format="png"`` a zip of PNGs."""
        body = json.dumps({"n": n, "seed": seed, "index": index, "format": format, "options": options or {}}).encode()
        return self.request("POST", "/generate", body)

    @property
    def last_batch(self) -> int:
        """Images in the server batch that answered this thread's last generate request (0 before one)."""
        return getattr(self._answers, "batch", 0)

    def info(self) -> dict[str, Any]:
        return json.loads(self.request("GET", "/info"))

    def health(self) -> bool:
        try:
            return json.loads(self.request("GET", "/health")).get("status") == "ok"
        except FastgenError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """The body of a 200 answer; a 4xx is a FastgenError with the server's one-line reason; lost answers
        (connection errors, 5xx) are retried with exponential back-off."""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=body, method=method,
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    self._answers.batch = int(response.headers.get("X-Fastgen-Batch", 0))
                    return response.read()
            except urllib.error.HTTPError as error:
                reason = _reason(error)
                if error.code not in RETRIED_STATUSES:
                    raise FastgenError(f"the server refused {method} {path} ({error.code}): {reason}") from None
                last = f"{error.code}: {reason}"
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError) as error:
                last = str(getattr(error, "reason", error))
            if attempt < self.retries:
                self.retried += 1
                time.sleep(self.backoff * 2**attempt)
        raise FastgenError(f"{method} {self.url}{path} failed {self.retries + 1} times; last: {last}")


def _reason(error: urllib.error.HTTPError) -> str:
    text = error.read().decode(errors="replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text.strip().splitlines()[0] if text.strip() else error.reason
