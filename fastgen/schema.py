"""Type-check JSON-like data against a dataclass's type hints before it is trusted (manifests, and anything read back).

``check_schema(data, Cls, "manifest")`` walks ``data`` along ``Cls``'s fields and raises one ``FastgenError`` that names
the first wrong place (``manifest.sites[1].inputs[0].shape``): a missing or unknown key, or a value of the wrong type.
Supported hints: dataclasses, ``str``, ``int``, ``float``, ``bool``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``,
``X | None`` and ``Any``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
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


# ------------------------------------------------------------------------------------------ the one JSON reader

MAX_JSON_DEPTH = 64
"""Nesting a fastgen JSON file may have (manifests and programs nest < 10 deep): deeper is refused before any
recursive code (the parser, the schema walk, ``torch.tensor``) can overflow the stack."""
MAX_JSON_BYTES = 256 * 2**20
"""Largest JSON file fastgen reads (a program's constants of a 64×64 blur model are a few MiB)."""


def load_json(text: str | bytes, what: str, *, finite: bool = True, advice: str = "re-create it") -> Any:
    """``text`` parsed as JSON, with its nesting and size bounded; ``what`` names it in messages ("bundle X's manifest"),
    ``advice`` says what to do.
    ``finite``: refuse NaN and ±Infinity (JSON extensions Python accepts) and numbers beyond float range (``1e999``),
    wherever they are: no number of a fastgen file is meant to be non-finite."""
    if len(text) > MAX_JSON_BYTES:
        raise FastgenError(f"{what} is {len(text) / 2**20:.0f} MiB, more than the {MAX_JSON_BYTES // 2**20} MiB a fastgen "
                           f"JSON file may have; {advice}")  # fmt: skip
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FastgenError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start}); {advice}") from None
    depth = _nesting(text)
    if depth > MAX_JSON_DEPTH:
        raise FastgenError(f"{what} nests {depth} levels deep, more than the {MAX_JSON_DEPTH} a fastgen JSON file may; {advice}")

    def refuse(token: str) -> float:
        raise FastgenError(f"{what} holds the number {token[:40]}, which is not finite; every number must be finite: {advice}")

    def number(token: str) -> float:
        value = float(token)
        return value if math.isfinite(value) else refuse(token)

    hooks = {"parse_constant": refuse, "parse_float": number} if finite else {}
    try:
        return json.loads(text, **hooks)
    except json.JSONDecodeError as exc:
        raise FastgenError(f"{what} is not readable JSON ({exc}); {advice}") from None
    except RecursionError:  # unreachable after the depth check; a last guard, not a traceback
        raise FastgenError(f"{what} nests too deeply; {advice}") from None


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nesting(text: str) -> int:
    """The deepest bracket nesting of JSON ``text`` outside strings (one regex pass: no recursion, linear time)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


# ------------------------------------------------------------------------------------------ numbers that enter

def finite_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False) -> float:  # fmt: skip
    """``value`` as a float, refused unless it is a finite real number in [low, high] (``low_open``: (low, high]).
    The one check for every number that enters fastgen from a file or an option."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value):
        raise FastgenError(f"{name} must be a finite number, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        if high is None:
            bounds = f"be {'>' if low_open else '≥'} {low}"
        else:
            bounds = f"lie in {'(' if low_open else '['}{'-inf' if low is None else low}, {high}]"
        raise FastgenError(f"{name} must {bounds}, got {value!r}")
    return float(value)


def count(value: Any, name: str, *, low: int = 1, high: int | None = None, unit: str = "") -> int:
    """``value`` as an integer in [low, high]: the one check of counts and sizes (images, steps, reference images)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"≥ {low}" if high is None else f"from {low} to {high}"
        raise FastgenError(f"{name} must be an integer {bounds}{unit}, got {value!r}")
    return value


def all_finite(tensor: Any, name: str, advice: str = "every number must be finite") -> None:
    """Refuse a tensor holding NaN or ±inf (explicit latents, a program's arrays, a sampler's result)."""
    import torch

    if tensor.is_floating_point() or tensor.is_complex():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise FastgenError(f"{name} holds {bad} non-finite (NaN/inf) value(s); {advice}")
