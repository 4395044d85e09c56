"""The sampling program (export/PROGRAM.md): typed ops over named buffers, with their JSON form and validation.

A family's builder (``Family.program``) fills the ops with constants computed in float64 by ``fastgen.diffusion``;
:mod:`fastgen.sampling.interpreter` runs them. Arrays are float64 (complex128 for spectra) CPU tensors; buffer
shapes exclude the batch dimension, which is chosen at run time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from fastgen.errors import FastgenError
from fastgen.schema import all_finite, finite_number, load_json

FORMAT = "fastgen-program"
VERSION = 1
BASES = ("fourier", "dct")

Shape = tuple[int, ...]


def spectrum_shape(basis: str, height: int, width: int) -> Shape:
    """The stored spectrum of an H×W image: (H, W//2+1) for the real DFT, (H, W) for the DCT."""
    return (height, width // 2 + 1) if basis == "fourier" else (height, width)


class _Op:
    """Common behaviour of the ops: buffers read and written, and the shape rules of :meth:`check`."""

    kind: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("out",)

    def check(self, shapes: Mapping[str, Shape]) -> None:
        """Raise FastgenError (without the op's position, which the caller adds) when a shape does not fit."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise FastgenError(message)


def _array_shape(array: Tensor, name: str, shape: Shape) -> None:
    _expect(tuple(array.shape) == tuple(shape), f"{name} has shape {list(array.shape)}, expected {list(shape)}")


@dataclass(frozen=True)
class SpectralFilter:
    """U diag(values) Uᵀ in ``basis`` (values: the real scalars of the stored spectrum)."""

    basis: str
    values: Tensor


@dataclass(frozen=True)
class Noise(_Op):
    """``out = scale · z`` or ``scale · U diag(values) Uᵀ z``; z is the op's draw 0."""

    kind: ClassVar[str] = "noise"
    out: str
    scale: float
    filter: SpectralFilter | None

    def check(self, shapes: Mapping[str, Shape]) -> None:
        if self.filter is not None:
            _expect(self.filter.basis in BASES, f"filter basis must be one of {', '.join(BASES)}, got {self.filter.basis!r}")
            _array_shape(self.filter.values, "filter values", spectrum_shape(self.filter.basis, *shapes[self.out][-2:]))


@dataclass(frozen=True)
class _Unary(_Op):
    """An op from buffer ``x`` to buffer ``out``."""

    reads: ClassVar[tuple[str, ...]] = ("x",)
    x: str
    out: str

    def check_same_shape(self, shapes: Mapping[str, Shape]) -> None:
        _expect(shapes[self.x] == shapes[self.out], "x and out must have the same shape")


@dataclass(frozen=True)
class Call(_Unary):
    """``out = site(x)``: a network call without a timestep."""

    kind: ClassVar[str] = "call"
    site: str


@dataclass(frozen=True)
class _UDPMStep(_Op):
    """A UDPM reverse step x_l → x_{l-1} given the network's x̂ (x_hat and out: x at γ times its size)."""

    reads: ClassVar[tuple[str, ...]] = ("x", "x_hat")
    x: str
    x_hat: str
    out: str

    def check(self, shapes: Mapping[str, Shape]) -> None:
        _expect(shapes[self.x_hat] == shapes[self.out], "x_hat and out must have the same shape")
        high, low = shapes[self.out], shapes[self.x]
        gamma = high[-1] // low[-1]
        _expect(gamma >= 2 and tuple(high) == (*low[:-2], low[-2] * gamma, low[-1] * gamma),
                f"x_hat/out {list(high)} must be x {list(low)} with both sides times the same stride γ ≥ 2")  # fmt: skip
        self.check_constants(gamma, high[-2:])

    def check_constants(self, gamma: int, grid: Shape) -> None:
        """The step's arrays against the stride γ and x_{l-1}'s grid."""


@dataclass(frozen=True)
class UDPMPosterior(_UDPMStep):
    """UDPM's exact posterior step for a γ×γ Lemma-1 kernel, per block (``udpm_posterior.cu``)."""

    kind: ClassVar[str] = "udpm_posterior"
    taps: Tensor
    kx: float
    kp: float
    ky: float
    ke: float
    kep: float
    noisy: bool

    def check_constants(self, gamma: int, grid: Shape) -> None:
        _array_shape(self.taps, "taps", (gamma, gamma))


@dataclass(frozen=True)
class UDPMMatheron(_UDPMStep):
    """UDPM's exact posterior step for a circulant kernel by Matheron's rule (draws: 0 = e, 1 = e′)."""

    kind: ClassVar[str] = "udpm_matheron"
    alpha: float
    sigma: float
    prior_scale: float
    transfer: Tensor  # complex, [H, W] on x_hat's grid
    prior_cov: Tensor  # [H, W]
    noisy: bool

    def check_constants(self, gamma: int, grid: Shape) -> None:
        _array_shape(self.transfer, "transfer", grid)
        _array_shape(self.prior_cov, "prior_cov", grid)


@dataclass(frozen=True)
class AffineSteps:
    """Per step i: x0 = a·x + b·m (clamped if ``clip``), x ← p·x0 + q·x + r·m + s·z (``ddpm_step.cu``)."""

    kind: ClassVar[str] = "affine"
    a: Tensor
    b: Tensor
    p: Tensor
    q: Tensor
    r: Tensor
    s: Tensor
    clip: bool

    def check(self, steps: int, shape: Shape) -> None:
        for name in ("a", "b", "p", "q", "r", "s"):
            _array_shape(getattr(self, name), name, (steps,))


@dataclass(frozen=True)
class BlurSteps:
    """Per step i and frequency k: ln a = log_alpha + 2·power·ln d_k, ln ā likewise from the cumulative arrays."""

    kind: ClassVar[str] = "blur"
    basis: str
    log_eigenvalues: Tensor
    log_alpha: Tensor
    power: Tensor
    log_alpha_cumprod: Tensor
    power_cumsum: Tensor

    def check(self, steps: int, shape: Shape) -> None:
        _expect(self.basis in BASES, f"blur basis must be one of {', '.join(BASES)}, got {self.basis!r}")
        _array_shape(self.log_eigenvalues, "log_eigenvalues", spectrum_shape(self.basis, *shape[-2:]))
        for name in ("log_alpha", "power", "log_alpha_cumprod", "power_cumsum"):
            _array_shape(getattr(self, name), name, (steps,))


STEPS: dict[str, type[AffineSteps] | type[BlurSteps]] = {step.kind: step for step in (AffineSteps, BlurSteps)}


@dataclass(frozen=True)
class DenoiseChain(_Unary):
    """n reverse steps: m = site(x, timesteps[i]), z = draw i if noise[i], x ← step i."""

    kind: ClassVar[str] = "denoise_chain"
    site: str
    timesteps: Tensor
    noise: Tensor  # bool [n]
    step: AffineSteps | BlurSteps

    def check(self, shapes: Mapping[str, Shape]) -> None:
        self.check_same_shape(shapes)
        steps = self.timesteps.numel()
        _expect(self.timesteps.dim() == 1 and steps >= 1, "timesteps must be a non-empty list")
        _array_shape(self.noise, "noise", (steps,))
        self.step.check(steps, shapes[self.x])


@dataclass(frozen=True)
class Upsample(_Unary):
    """×2 bilinear resize (half-pixel centres, edges clamped)."""

    kind: ClassVar[str] = "upsample"

    def check(self, shapes: Mapping[str, Shape]) -> None:
        low = shapes[self.x]
        _expect(shapes[self.out] == (*low[:-2], 2 * low[-2], 2 * low[-1]), "out must be x at twice its size")


@dataclass(frozen=True)
class Renoise(_Unary):
    """``out = signal·x + noise_scale·z`` (CCDF restart); z is draw 0."""

    kind: ClassVar[str] = "renoise"
    signal: float
    noise_scale: float

    def check(self, shapes: Mapping[str, Shape]) -> None:
        self.check_same_shape(shapes)


Op = Noise | Call | UDPMPosterior | UDPMMatheron | DenoiseChain | Upsample | Renoise
OPS: dict[str, type[_Op]] = {op.kind: op for op in (Noise, Call, UDPMPosterior, UDPMMatheron, DenoiseChain, Upsample, Renoise)}


@dataclass(frozen=True)
class Program:
    """``ops`` over ``buffers`` (name → shape without the batch); the images end in ``output``."""

    buffers: dict[str, Shape]
    ops: tuple[Op, ...]
    output: str

    def __post_init__(self) -> None:
        validate(self)

    @property
    def site_calls(self) -> int:
        """Network calls of one run (its NFE)."""
        return sum(op.timesteps.numel() if isinstance(op, DenoiseChain) else isinstance(op, Call) for op in self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "buffers": {name: list(shape) for name, shape in self.buffers.items()},
            "ops": [_encode(op) for op in self.ops],
            "output": self.output,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> Program:
        _expect(isinstance(data, Mapping), f"a program must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise FastgenError(f"not a fastgen program (format {data.get('format')!r}, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise FastgenError(f"program version {data.get('version')!r} is not supported (this fastgen reads version "
                               f"{VERSION}); re-export the bundle with this fastgen")  # fmt: skip
        _expect(set(data) == {"format", "version", "buffers", "ops", "output"},
                f"a program has the keys format, version, buffers, ops, output; got {', '.join(sorted(data))}")  # fmt: skip
        buffers = data["buffers"]
        _expect(isinstance(buffers, Mapping) and all(_is_shape(s) for s in buffers.values()),
                f"program buffers must map names to shapes (1 to 4 positive integers, at most {MAX_BUFFER_ELEMENTS} elements)")  # fmt: skip
        _expect(isinstance(data["ops"], list), "program ops must be a list")
        _expect(isinstance(data["output"], str), f"program output must be a buffer name, got {data['output']!r}")
        ops = tuple(_decode_op(index, op) for index, op in enumerate(data["ops"]))
        return cls({name: tuple(shape) for name, shape in buffers.items()}, ops, data["output"])

    @classmethod
    def from_json(cls, text: str | bytes) -> Program:
        return cls.from_dict(load_json(text, "program", advice="re-export the bundle"))


MAX_BUFFER_ELEMENTS = 2**31
"""Elements one image of a buffer may have: far above any model's, and no product of sides overflows int64."""


def _is_shape(shape: object) -> bool:
    if not (isinstance(shape, list | tuple) and 1 <= len(shape) <= 4
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_BUFFER_ELEMENTS for n in shape)):  # fmt: skip
        return False
    return math.prod(shape) <= MAX_BUFFER_ELEMENTS


def validate(program: Program) -> None:
    """Every op's buffers exist and are written before they are read, and every shape fits (one error each)."""
    written: set[str] = set()
    for index, op in enumerate(program.ops):
        where = f"program op {index} ({op.kind})"
        for field in (*op.reads, *op.writes):
            name = getattr(op, field)
            _expect(name in program.buffers, f"{where}: buffer {name!r} is not declared")
            _expect(field in op.writes or name in written, f"{where}: buffer {name!r} is read before any op writes it")
        try:
            op.check(program.buffers)
        except FastgenError as error:
            raise FastgenError(f"{where}: {error}") from None
        written.update(getattr(op, field) for field in op.writes)
    _expect(program.output in written, f"program output {program.output!r} is never written")


# ------------------------------------------------------------------------------------------------------ JSON


def _encode(value: Any) -> Any:
    """An op (or its step/filter) as JSON: arrays as nested lists, complex arrays as ``<name>_re``/``<name>_im``."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # every number of an op is a float (ᾱ_0 = 1 comes as an int)
    if not dataclasses.is_dataclass(value):
        return value
    encoded: dict[str, Any] = {"op": value.kind} if isinstance(value, _Op) else {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if isinstance(item, AffineSteps | BlurSteps):
            encoded.update({"step": item.kind, **_encode(item)})
        elif isinstance(item, Tensor) and item.is_complex():
            encoded[f"{field.name}_re"], encoded[f"{field.name}_im"] = item.real.tolist(), item.imag.tolist()
        else:
            encoded[field.name] = _encode(item)
    return encoded


def _decode_op(index: int, data: object) -> Op:
    if not isinstance(data, Mapping):
        raise FastgenError(f"program op {index} must be a JSON object, got {type(data).__name__}")
    kind = data.get("op")
    if not isinstance(kind, str) or kind not in OPS:
        raise FastgenError(f"program op {index}: unknown op {kind!r}; known: {', '.join(OPS)}")
    fields = {key: value for key, value in data.items() if key != "op"}
    try:
        if kind == DenoiseChain.kind:
            step_kind = fields.pop("step", None)
            _expect(isinstance(step_kind, str) and step_kind in STEPS, f"unknown step {step_kind!r}; known: {', '.join(STEPS)}")
            step_fields = {field.name for field in dataclasses.fields(STEPS[step_kind])}
            fields["step"] = _decode(STEPS[step_kind], {k: fields.pop(k) for k in list(fields) if k in step_fields})
        return _decode(OPS[kind], fields)
    except FastgenError as error:
        raise FastgenError(f"program op {index} ({kind}): {error}") from None


def _decode(cls: type, data: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    remaining = dict(data)
    for field in dataclasses.fields(cls):
        name, hint = field.name, hints[field.name]
        if hint is Tensor and f"{name}_re" in remaining:
            real, imag = _array(remaining.pop(f"{name}_re"), name), _array(remaining.pop(f"{name}_im", None), name)
            _expect(real.shape == imag.shape, f"{name}_re and {name}_im differ in shape")
            values[name] = torch.complex(real, imag)
            continue
        _expect(name in remaining, f"missing field {name!r}")
        item = remaining.pop(name)
        if hint is Tensor:
            values[name] = _array(item, name)
        elif isinstance(item, AffineSteps | BlurSteps):  # a chain's step, decoded by the caller
            values[name] = item
        elif hint == SpectralFilter | None:
            _expect(item is None or isinstance(item, Mapping), "filter must be null or an object")
            values[name] = None if item is None else _decode(SpectralFilter, item)
        elif hint is bool:
            _expect(isinstance(item, bool), f"{name} must be true or false, got {item!r}")
            values[name] = item
        elif hint is float:
            values[name] = finite_number(item, name)
        else:  # str: a buffer, site or basis name
            _expect(isinstance(item, str), f"{name} must be a string, got {item!r}")
            values[name] = item
    _expect(not remaining, f"unknown field(s) {', '.join(sorted(remaining))}")
    if "noise" in values:  # a chain's per-step flags
        values["noise"] = values["noise"].bool()
    return cls(**values)


def _array(value: object, name: str) -> Tensor:
    try:
        array = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise FastgenError(f"{name} must be a (nested) list of numbers") from None
    all_finite(array, name)
    return array
