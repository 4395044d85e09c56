"""The one guard every verb puts in front of what it writes, and the one atomic file writer.

Rules, checked before any work (:func:`check_output`):

* nothing a verb writes replaces or deletes a run, a checkpoint or a bundle, or goes inside a checkpoint, a bundle
  or a run's checkpoints folder; nor can it be (or contain) one of the verb's own inputs;
* an existing output is replaced only by an output of the same kind (a PNG by a PNG, a bundle by a bundle — with
  ``overwrite`` where the verb asks for ``--force``); anything else there is refused;
* a file output that is a directory, a path below a file, a folder that cannot be written: refused.

:func:`write_file` then writes a hidden sibling and renames it into place, so no half-written file (and no
``.tmp`` leftover) is ever seen.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fastgen import layout
from fastgen.errors import FastgenError
from fastgen.schema import load_json


def _starts_with(signature: bytes) -> Callable[[Path], bool]:
    def check(path: Path) -> bool:
        with open(path, "rb") as file:
            return file.read(len(signature)) == signature

    return check


def _is_json(path: Path) -> bool:
    try:
        load_json(path.read_bytes(), str(path), finite=False)  # recognised as JSON, NaN scores and all
    except FastgenError:
        return False
    return True


def _holds_only(suffix: str) -> Callable[[Path], bool]:
    return lambda path: all(entry.is_file() and entry.suffix == suffix for entry in path.iterdir())


@dataclass(frozen=True)
class OutputKind:
    """A kind of output: its name in messages, whether it is a folder, how to recognise an existing one, and the
    file name suffix it must have ('' for any)."""

    name: str
    directory: bool
    recognise: Callable[[Path], bool]
    suffix: str = ""


PNG = OutputKind("PNG image", False, _starts_with(b"\x89PNG\r\n\x1a\n"), ".png")
JSON = OutputKind("JSON file", False, _is_json, ".json")
MARKDOWN = OutputKind("Markdown file", False, Path.is_file, ".md")  # text: any existing .md file is one
EVAL_MARKER = "<!-- fastgen eval -->"
# An output the user did not name (eval's Markdown beside --json) replaces only what that verb wrote there before.
EVAL_MARKDOWN = OutputKind("fastgen eval Markdown file", False, _starts_with(EVAL_MARKER.encode()), ".md")
NPY = OutputKind("NumPy .npy file", False, _starts_with(b"\x93NUMPY"), ".npy")
TORCH_FILE = OutputKind("torch .pt file", False, _starts_with(b"PK\x03\x04"), ".pt")  # torch.save's zip container
BUNDLE = OutputKind("bundle", True, layout.is_bundle)
RUN = OutputKind("run directory", True, layout.is_run)
TIMING_CACHE = OutputKind("TensorRT timing cache", False, Path.is_file)  # opaque bytes: any file TensorRT may reread
PROFILES = OutputKind("folder of profile tables", True, _holds_only(".txt"))
SHARDS = OutputKind("folder of sample shards", True, lambda path: (path / layout.SHARDS_FILE).is_file())


def check_output(path: str | Path, kind: OutputKind, *, overwrite: bool | None = None, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse ``path`` as an output of ``kind`` unless writing it is safe (module docstring); returns it as a Path.

    ``overwrite``: None replaces an existing output of the same kind; False refuses any existing path; True is
    ``--force`` (replace an output of the same kind, never anything else). ``inputs``: the verb's own inputs.
    """
    path = Path(path)
    target = path.resolve()
    _check_parent(path, target)
    for folder in target.parents:
        what = layout.artefact(folder)
        if what is not None and what != "run directory":
            raise FastgenError(f"{path} is inside the {what} {folder}; write it somewhere else")
    if target.name in layout.RUN_FILES and layout.is_run(target.parent):
        raise FastgenError(f"{path} is part of the run {target.parent}; write it somewhere else")
    for source in inputs:
        source = Path(source).resolve()
        if target == source or target in source.parents:
            raise FastgenError(f"{path} would replace this command's own input {source}; choose another output path")
    if kind.suffix and path.suffix.lower() != kind.suffix and not target.is_dir():
        raise FastgenError(f"{path}: a {kind.name} is written to a file ending in {kind.suffix}; name it so")
    if not (target.exists() or target.is_symlink()):
        return path
    what = layout.artefact(target)
    if kind.directory:
        if not target.is_dir():
            raise FastgenError(f"{path} is a file; a {kind.name} is a folder: choose another path")
        if overwrite is False:
            raise FastgenError(f"{path} already exists; choose another folder, or replace it with --force")
        if any(target.iterdir()) and not kind.recognise(target):
            raise FastgenError(f"{path} is a {what or 'folder with other files'}, not a {kind.name}: refusing to replace it; "
                               "choose another folder")  # fmt: skip
        if what is not None and kind is not RUN and what != kind.name:
            raise FastgenError(f"{path} is a {what}: refusing to replace it; choose another folder")
        return path
    if target.is_dir():
        raise FastgenError(f"{path} is a folder; give a file name for the {kind.name}, e.g. {path / ('out' + kind.suffix)}")
    if overwrite is False:
        raise FastgenError(f"{path} already exists; choose another file, or replace it with --force")
    if not kind.recognise(target):
        raise FastgenError(f"{path} exists and is not a {kind.name}: refusing to overwrite it; choose another file name")
    return path


def _check_parent(path: Path, target: Path) -> None:
    """The nearest existing folder above ``target`` is a folder and takes new files (probed: permissions, read-only
    file systems and pseudo file systems all answer the same way)."""
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise FastgenError(f"{path} lies below {folder}, which is a file, not a folder; choose another path")
    probe = folder / f".fastgen-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        raise FastgenError(f"cannot write in {folder} ({error.strerror or error}); choose a writable location for {path}") from None


def write_file(path: str | Path, kind: OutputKind, write: Callable[[Path], None]) -> Path:
    """Check ``path`` as an output of ``kind``, then ``write(staging)`` a hidden sibling and rename it into place."""
    path = check_output(path, kind)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(staging)
        os.replace(staging, path)
    except OSError as error:
        raise FastgenError(f"cannot write {path} ({error.strerror or error})") from None
    finally:
        staging.unlink(missing_ok=True)
    return path
