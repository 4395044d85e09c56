"""JSON-able, validated network configs: the base class every network config derives from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints

from fastgen.errors import FastgenError


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Frozen dataclass with a ``kind`` tag, JSON round trip and type checks.

    Subclasses declare typed fields (int, float, Literal, tuple[int, ...], nested ``NetConfig``) and override
    ``validate`` for the cross-field rules. Values are coerced on construction (lists become tuples, ints
    become floats where a float is declared) so a config read back from JSON compares equal to the one written.
    """

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(getattr(self, field.name), hints[field.name], f"{type(self).__name__}.{field.name}")
            object.__setattr__(self, field.name, value)
        self.validate()

    def validate(self) -> None:
        """Raise ``FastgenError`` naming the problem when fields contradict each other."""

    def require_at_least(self, minimum: int, *names: str) -> None:
        """Raise ``FastgenError`` for the first of the named fields below ``minimum``."""
        for name in names:
            if getattr(self, name) < minimum:
                raise FastgenError(f"{type(self).__name__}.{name} must be ≥ {minimum}, got {getattr(self, name)}")

    def require_positive_list(self, name: str) -> None:
        """Raise ``FastgenError`` unless the named tuple field is non-empty and all ≥ 1 (widths, multipliers)."""
        values = getattr(self, name)
        if not values or min(values) < 1:
            raise FastgenError(
                f"{type(self).__name__}.{name} must be a non-empty list of positive ints, got {list(values)}"
            )

    def require_probability(self, *names: str) -> None:
        """Raise ``FastgenError`` for the first of the named fields outside [0, 1) (dropout rates)."""
        for name in names:
            if not 0 <= getattr(self, name) < 1:
                raise FastgenError(f"{type(self).__name__}.{name} must be in [0, 1), got {getattr(self, name)}")

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated again); an unknown field is an error that names it."""
        self._check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def _check_names(cls, values: Mapping[str, Any]) -> None:
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise FastgenError(f"unknown {cls.__name__} keys: {', '.join(map(str, unknown))}; known: {', '.join(sorted(names))}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, tagged with ``kind`` so ``build_network`` knows what to build."""
        out: dict[str, Any] = {"kind": self.kind}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, NetConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of ``to_dict``; unknown keys or a wrong ``kind`` raise ``FastgenError``."""
        if not isinstance(data, Mapping):
            raise FastgenError(f"{cls.__name__} config must be a mapping, got {type(data).__name__}")
        values = dict(data)
        kind = values.pop("kind", cls.kind)
        if kind != cls.kind:
            raise FastgenError(f"{cls.__name__} config has kind {kind!r}, expected {cls.kind!r}")
        cls._check_names(values)
        return cls(**values)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``hint`` and normalise it (lists → tuples, int → float)."""
    origin = get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, NetConfig):
        return value if isinstance(value, hint) else hint.from_dict(value)
    if origin is Literal:
        if value not in get_args(hint):
            raise FastgenError(f"{name} must be one of {', '.join(map(repr, get_args(hint)))}, got {value!r}")
        return value
    if origin is tuple:
        item_hint = get_args(hint)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise FastgenError(f"{name} must be a list, got {value!r}")
        return tuple(_coerce(item, item_hint, f"{name}[{i}]") for i, item in enumerate(value))
    # bool is an int subclass; a flag where a count is expected is a mistake, not a 1.
    if hint is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise FastgenError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FastgenError(f"{name} must be a number, got {value!r}")
        return float(value)
    return value
