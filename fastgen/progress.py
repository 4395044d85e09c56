"""Progress bars that suit where they are written: a live bar on a terminal, a plain line every few seconds in a
file or pipe (CI logs, ``> log``), never a carriage-return line per step."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm

LOG_EVERY_SECONDS = 5.0


class _Lines:
    """A stream for tqdm that writes each refresh as a line of its own, without carriage returns or padding."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, **options: Any) -> tqdm:
    """``tqdm(iterable, **options)`` on stderr: live on a terminal, else one line every :data:`LOG_EVERY_SECONDS`."""
    stream = sys.stderr
    if not stream.isatty():
        options = {"mininterval": LOG_EVERY_SECONDS, "maxinterval": LOG_EVERY_SECONDS, "ncols": 100, "ascii": True,
                   "file": _Lines(stream), **options}  # fmt: skip
    return tqdm(iterable, **options)
