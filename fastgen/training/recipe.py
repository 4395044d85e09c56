"""Training recipes: a TOML file → typed engine settings plus the family's own sections.

A recipe is a nested dict. The engine owns two sections and checks every key in them:

    [run]    name, steps, batch_size (required); max_minutes, out_dir, seed, checkpoint_every,
             keep_checkpoints, log_every, device ('auto' | 'cpu' | 'cuda')
    [optim]  lr (required); warmup_steps, betas, eps, grad_clip (0 = off), ema_decay
    [optim.<group>]  per-update-group overrides of lr, warmup_steps, betas, eps, grad_clip
                     (e.g. [optim.discriminator] lr = 1e-4)

Every other section ([model], [data], [diffusion], [loss] …) is passed through untouched in
``Recipe.sections`` for the family code to read. ``--set key=value`` overrides use dotted keys and
TOML literals (``optim.lr=2e-4``, ``run.steps=10``, ``model.channels=[32,64]``); a value that is not
a TOML literal is taken as a bare string (``run.device=cpu``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from fastgen.errors import FastgenError
from fastgen.schema import load_json

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; TOML's and the CLI's integers are signed


def _setting(
    default: Any = dataclasses.MISSING,
    *,
    check: Callable[[Any], bool],
    rule: str,
    per_group: bool = False,
) -> Any:
    """A recipe key: its default (none = required), the rule its value must follow, and whether
    an [optim.<group>] table may override it."""
    return field(default=default, metadata={"check": check, "rule": rule, "per_group": per_group})


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """[run]: what to train, for how long, and where the run directory goes."""

    name: str = _setting(
        check=lambda v: v not in ("", ".", "..") and "/" not in v and "\\" not in v,
        rule="a non-empty name without path separators",
    )
    steps: int = _setting(check=_positive, rule="> 0")
    # A wall-clock budget for this invocation (0 = none): the run stops at the first log point past it and
    # checkpoints there, so `--resume` continues it. For "train for 8 minutes" on a machine of unknown speed.
    max_minutes: float = _setting(0.0, check=_non_negative, rule=">= 0 (0 = no time limit)")
    batch_size: int = _setting(check=_positive, rule="> 0 (the global batch, over all ranks)")
    out_dir: str = _setting("runs", check=bool, rule="a non-empty path")
    seed: int = _setting(0, check=lambda v: 0 <= v <= MAX_SEED, rule="from 0 to 2**63 - 1")
    checkpoint_every: int = _setting(1000, check=_positive, rule="> 0")
    keep_checkpoints: int = _setting(3, check=_positive, rule="> 0")
    log_every: int = _setting(100, check=_positive, rule="> 0")
    device: str = _setting("auto", check=lambda v: v in ("auto", "cpu", "cuda"), rule="'auto', 'cpu' or 'cuda'")

    @property
    def directory(self) -> Path:
        """The run directory when none is given: ``out_dir/name``."""
        return Path(self.out_dir) / self.name


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """[optim]: Adam (weight decay 0) with linear warmup, gradient clipping and the model's EMA."""

    lr: float = _setting(check=_positive, rule="> 0", per_group=True)
    warmup_steps: int = _setting(0, check=_non_negative, rule=">= 0", per_group=True)
    betas: tuple[float, float] = _setting(
        (0.9, 0.999), check=lambda b: all(0 <= x < 1 for x in b), rule="two numbers in [0, 1)", per_group=True
    )
    eps: float = _setting(1e-8, check=_positive, rule="> 0", per_group=True)
    grad_clip: float = _setting(1.0, check=_non_negative, rule=">= 0 (0 turns clipping off)", per_group=True)
    ema_decay: float = _setting(0.9999, check=lambda v: 0 <= v < 1, rule="in [0, 1)")
    # [optim.<group>] tables: group name → the keys it overrides (already checked).
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_group(self, group: str) -> OptimConfig:
        """The settings of one update group: these, with its [optim.<group>] overrides applied."""
        return dataclasses.replace(self, **self.groups.get(group, {}), groups={})


@dataclass(frozen=True)
class Recipe:
    """An effective recipe: ``sections`` is the whole nested dict (engine defaults filled in, overrides
    applied) — what the run records; ``run`` and ``optim`` are its typed engine sections."""

    sections: dict[str, Any]
    run: RunConfig
    optim: OptimConfig

    def save(self, path: str | Path) -> None:
        """Write the effective recipe as JSON; ``load_recipe`` reads it back."""
        # TOML allows dates, which JSON does not: record them as their ISO text.
        Path(path).write_text(json.dumps(self.sections, indent=2, default=str) + "\n")


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read a TOML recipe (or a recorded ``recipe.json``), apply ``--set key=value`` overrides, check it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FastgenError(f"cannot read recipe {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise FastgenError(f"recipe {path} is not UTF-8 text (byte {error.start}); save it as UTF-8 TOML") from None
    try:
        data = load_json(text, f"recipe {path}") if path.suffix == ".json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise FastgenError(f"recipe {path} is malformed: {error}; fix that line") from None
    except RecursionError:  # tomllib parses nested arrays recursively
        raise FastgenError(f"recipe {path} nests too deeply; a recipe's tables and lists are a few levels deep") from None
    if not isinstance(data, dict):
        raise FastgenError(f"recipe {path} must hold tables ([run], [optim] …), not a {type(data).__name__}")
    return parse_recipe(apply_overrides(data, overrides))


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.key=value`` set (creating tables on the way)."""
    result = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise FastgenError(f"--set {item!r}: expected dotted.key=value, e.g. optim.lr=2e-4")
        table = result
        for depth, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise FastgenError(f"--set {item!r}: {'.'.join(parts[: depth + 1])} is a value, not a table")
        table[parts[-1]] = parse_value(text)
    return result


def parse_value(text: str) -> Any:
    """A TOML literal (number, bool, array, quoted string …), else the text itself as a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_recipe(data: Mapping[str, Any]) -> Recipe:
    """Check the engine sections of a recipe dict and fill in their defaults; no value anywhere may be NaN or ±inf."""
    for key, value in data.items():
        if not isinstance(value, dict):
            raise FastgenError(f"recipe key {key} is outside any [table]; move it into its section, e.g. [run]")
    _check_finite(data, "")
    for section in ("run", "optim"):
        if not isinstance(data.get(section), dict):
            raise FastgenError(f"recipe has no [{section}] table; add one (see fastgen.training.recipe)")
    run = RunConfig(**_parse_table(RunConfig, data["run"], "run"))
    optim_table: dict[str, Any] = data["optim"]
    groups = {
        name: _parse_table(OptimConfig, table, f"optim.{name}", per_group_only=True)
        for name, table in optim_table.items()
        if isinstance(table, dict)
    }
    keys = {key: value for key, value in optim_table.items() if key not in groups}
    optim = OptimConfig(**_parse_table(OptimConfig, keys, "optim"), groups=groups)
    sections = {**copy.deepcopy(dict(data)), "run": _as_table(run), "optim": _as_table(optim)}
    sections["optim"].update({name: _plain(dict(table)) for name, table in groups.items()})
    return Recipe(sections=sections, run=run, optim=optim)


def _check_finite(value: Any, key: str) -> None:
    """TOML has inf and nan literals; no setting of a recipe means them (a learning rate of inf trains to NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise FastgenError(f"recipe key {key} = {value} is not a finite number; give a finite value")
    if isinstance(value, Mapping):
        for name, item in value.items():
            _check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_finite(item, f"{key}[{index}]")


def _schema(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "check" in f.metadata]


def _parse_table(cls: type, table: Mapping[str, Any], section: str, per_group_only: bool = False) -> dict[str, Any]:
    """Type-check and coerce one engine table; unknown or missing keys name themselves."""
    hints = get_type_hints(cls)
    specs = {f.name: f for f in _schema(cls) if f.metadata["per_group"] or not per_group_only}
    for key in table:
        if key not in specs:
            raise FastgenError(f"unknown recipe key {section}.{key}; known keys: {', '.join(specs)}")
    values = {}
    for name, spec in specs.items():
        key = f"{section}.{name}"
        if name not in table:
            if spec.default is dataclasses.MISSING and not per_group_only:
                raise FastgenError(f"recipe is missing the required key {key}")
            continue
        value = _coerce(table[name], hints[name], key)
        if not spec.metadata["check"](value):
            raise FastgenError(f"recipe key {key} = {table[name]!r} is invalid: it must be {spec.metadata['rule']}")
        values[name] = value
    return values


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """The value as the field's type; TOML ints pass as floats, nothing else is converted."""
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    numbers = isinstance(value, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    if kind == tuple[float, float] and numbers and len(value) == 2:
        return (float(value[0]), float(value[1]))
    wanted = {float: "a number", int: "an integer", str: "a string"}.get(kind, "an array of two numbers")
    raise FastgenError(f"recipe key {key} must be {wanted}, got {value!r}")


def _as_table(config: RunConfig | OptimConfig) -> dict[str, Any]:
    return _plain({f.name: getattr(config, f.name) for f in _schema(type(config))})


def _plain(table: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, so the recorded recipe reads back (TOML/JSON) as it was written."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in table.items()}
