"""Progress bars that suit where they are written: a live bar on a terminal, a plain line every few seconds in a
file or pipe (CI logs, ``> log``), never a carriage-return line per step."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import Progress, TaskID
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


class _LoggedProgress(Progress):
    """A rich progress off a terminal: its task as a plain line (``description: done/total``) at most every
    :data:`LOG_EVERY_SECONDS`, where a live bar would print nothing until the end."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._logged_at = -LOG_EVERY_SECONDS

    def update(self, task_id: TaskID, **fields: Any) -> None:
        super().update(task_id, **fields)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        now = time.monotonic()
        if self.disable or now - self._logged_at < LOG_EVERY_SECONDS:
            return
        self._logged_at = now
        task = next(task for task in self.tasks if task.id == task_id)
        total = f"/{task.total:g}" if task.total is not None else ""
        self.console.print(f"{task.description}: {task.completed:g}{total}", markup=False, highlight=False)


def task_progress(console: Console | None = None, *, disable: bool = False) -> Progress:
    """A rich progress for long multi-stage work: a transient live bar on a terminal, else a logged line every
    :data:`LOG_EVERY_SECONDS`."""
    console = console or Console()
    kind = Progress if console.is_terminal else _LoggedProgress
    return kind(console=console, transient=True, disable=disable)
