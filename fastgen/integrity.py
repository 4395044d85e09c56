"""File integrity shared by checkpoints and bundles: SHA-256 of a file, and a listed file that must lie inside its folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastgen.errors import FastgenError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def contained_file(directory: Path, name: str, what: str) -> Path:
    """``directory / name`` as a plain file of ``directory``: no path separators, no symlink, nothing outside it.
    ``what`` names the folder in messages ("bundle X", "checkpoint Y")."""
    path = directory / name
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise FastgenError(f"{what} names {name!r}, which is not a file of it; it cannot be trusted: re-create it")
    if path.is_symlink() or (path.exists() and path.resolve().parent != directory.resolve()):
        raise FastgenError(f"{what}: {name} is a link that leads outside it; replace it with the file itself")
    if not path.is_file():
        raise FastgenError(f"{what} is missing {name}; copy the whole folder again or re-create it")
    return path
