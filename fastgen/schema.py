"""Type-check JSON-like data against a dataclass's type hints before it is trusted (manifests, and anything read back).

``check_schema(data, Cls, "manifest")`` walks ``data`` along ``Cls``'s fields and raises one ``FastgenError`` that names
the first wrong place (``manifest.sites[1].inputs[0].shape``): a missing or unknown key, or a value of the wrong type.
Supported hints: dataclasses, ``str``, ``int``, ``float``, ``bool``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``,
``X | None`` and ``Any``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, get_args, get_origin, get_type_hints

from fastgen.errors import FastgenError


def check_schema(data: Any, hint: Any, where: str) -> None:
    """Raise ``FastgenError`` unless ``data`` fits ``hint`` (see the module docstring)."""
    problem = _problem(data, hint, where)
    if problem is not None:
        raise FastgenError(problem)


def _problem(data: Any, hint: Any, where: str) -> str | None:
    if hint is Any:
        return None
    if dataclasses.is_dataclass(hint):
        return _dataclass_problem(data, hint, where)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [_problem(data, option, where) for option in args]
        return None if None in problems else problems[0]
    if hint is type(None):
        return None if data is None else _wrong(where, "null", data)
    if origin is list:
        if not isinstance(data, list):
            return _wrong(where, "a list", data)
        return _first(_problem(item, args[0], f"{where}[{index}]") for index, item in enumerate(data))
    if origin is tuple:
        if not isinstance(data, list | tuple):
            return _wrong(where, "a list", data)
        items = args[:1] * len(data) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(data):
            return _wrong(where, f"a list of {len(items)} items", data)
        return _first(_problem(item, kind, f"{where}[{index}]") for index, (kind, item) in enumerate(zip(items, data)))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data):
            return _wrong(where, "an object with string keys", data)
        value_hint = args[1] if args else Any
        return _first(_problem(value, value_hint, f"{where}.{key}") for key, value in data.items())
    if hint is bool:
        return None if isinstance(data, bool) else _wrong(where, "true or false", data)
    if hint is int:
        return None if isinstance(data, int) and not isinstance(data, bool) else _wrong(where, "an integer", data)
    if hint is float:
        number = isinstance(data, int | float) and not isinstance(data, bool)
        return None if number and math.isfinite(data) else _wrong(where, "a finite number", data)
    if hint is str:
        return None if isinstance(data, str) else _wrong(where, "a string", data)
    raise TypeError(f"check_schema does not know the type hint {hint!r}")  # a programming error, not bad input


def _dataclass_problem(data: Any, cls: type, where: str) -> str | None:
    if not isinstance(data, Mapping):
        return _wrong(where, "an object", data)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(repr(key) for key in data if key not in fields)
    if unknown:
        return f"{where} has unknown keys {', '.join(unknown)}; known: {', '.join(fields)}"
    hints = get_type_hints(cls)
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                return f"{where} is missing {name}"
            continue
        problem = _problem(data[name], hints[name], f"{where}.{name}")
        if problem is not None:
            return problem
    return None


def _first(problems: typing.Iterable[str | None]) -> str | None:
    return next((problem for problem in problems if problem is not None), None)


def _wrong(where: str, wanted: str, data: Any) -> str:
    return f"{where} must be {wanted}, got {_short(data)}"


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 60 else text[:57] + "..."
