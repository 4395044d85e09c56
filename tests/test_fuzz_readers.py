"""Fuzzing the readers of untrusted files: a bundle manifest (and the model config inside it), a bundle's sampling
program and a training recipe.

Whatever the input, a reader returns or raises ``FastgenError``; never another exception. Bounded: a fixed number of
examples per property, no deadline, no example database.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgen.api import model_config_from_recipe
from fastgen.errors import FastgenError
from fastgen.export.manifest import BatchRange, Manifest, SiteRecord, read_manifest
from fastgen.families import ModelConfig, build_family
from fastgen.sampling.program import Program
from fastgen.training.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def valid_manifest() -> dict:
    """The manifest of a tiny UDPM bundle, as JSON would give it back (no files: the readers, not the hashes)."""
    model = model_config_from_recipe({"model": {"family": "udpm", "resolution": 16, "channels": 1, "network": {"preset": "tiny"}}})
    family = build_family(model)
    with torch.device("meta"):
        sites = family.call_sites(family.build_networks())
    manifest = Manifest(family="udpm", model=model.to_dict(), constants=family.process_constants(), precision="fp32",
                        batch=BatchRange(1, 8, 32), sites=[SiteRecord(s.name, f"{s.name}.onnx", list(s.inputs), s.output) for s in sites],
                        source={}, onnx={"opset": 17}, fastgen_version="0", files={f"{s.name}.onnx": "0" * 64 for s in sites})  # fmt: skip
    return json.loads(json.dumps(manifest.to_dict()))


VALID_MANIFEST = valid_manifest()
VALID_RECIPE = load_recipe(ROOT / "train" / "udpm_tiny.toml").sections
VALID_PROGRAM = build_family(ModelConfig.from_dict(VALID_MANIFEST["model"])).program().to_dict()


def read_bundle_description(data: object) -> None:
    """What loading a bundle does with its manifest before touching any file."""
    manifest = Manifest.from_dict(data) if isinstance(data, dict) else Manifest.from_dict({"format": data})
    build_family(ModelConfig.from_dict(manifest.model))


def read_recipe(data: dict) -> None:
    """What ``fastgen train`` does with a recipe before it loads data."""
    model_config_from_recipe(parse_recipe(data).sections)


@st.composite
def mutated(draw: st.DrawFn, valid: dict) -> dict:
    """``valid`` with one value somewhere inside replaced, removed, or a key added."""
    data = copy.deepcopy(valid)
    node = data
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if not isinstance(child, dict | list) or not child or draw(st.booleans()):
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace":
                node[key] = draw(json_values)
            elif action == "remove":
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(max_size=6))] = draw(json_values)
            else:
                node.append(draw(json_values))
            break
        node = child
    return data


def only_fastgen_errors(reader, data) -> None:
    try:
        reader(data)
    except FastgenError as error:
        assert str(error) and "\n" not in str(error)


def test_the_valid_examples_read() -> None:
    read_bundle_description(VALID_MANIFEST)
    read_recipe(VALID_RECIPE)
    Program.from_dict(VALID_PROGRAM)


@FUZZ
@given(json_values)
def test_any_json_as_a_manifest(data) -> None:
    only_fastgen_errors(read_bundle_description, data)


@FUZZ
@given(mutated(VALID_MANIFEST))
def test_a_mutated_manifest(data) -> None:
    only_fastgen_errors(read_bundle_description, data)


@FUZZ
@given(mutated(VALID_PROGRAM))
def test_a_mutated_program(data) -> None:
    only_fastgen_errors(Program.from_dict, data)


@FUZZ
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_any_tables_as_a_recipe(data) -> None:
    only_fastgen_errors(read_recipe, data)


@FUZZ
@given(mutated(VALID_RECIPE))
def test_a_mutated_recipe(data) -> None:
    only_fastgen_errors(read_recipe, data)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_recipe_and_manifest_files(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "recipe.toml").write_bytes(content)
    (folder / "manifest.json").write_bytes(content)
    only_fastgen_errors(load_recipe, folder / "recipe.toml")
    only_fastgen_errors(lambda path: read_manifest(path, verify=False), folder)


# --- nesting depth, sizes and non-finite numbers (issue 20) ------------------------------------------------------------

NON_FINITE = st.sampled_from([float("nan"), float("inf"), -float("inf")])
HUGE = st.sampled_from([2**31, 2**40, 2**63, 2**64 + 1, 10**30, 1e308, -(2**63)])


@st.composite
def nested_text(draw: st.DrawFn) -> str:
    """JSON text nested 1 … 300 000 levels (lists or objects), closed, unclosed or with a valid tail inside."""
    depth = draw(st.integers(1, 300_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = draw(st.sampled_from(["", "1", "NaN", "1e999", '"x"', "[]"]))
    closed = draw(st.booleans())
    if opener == "[" or inner:
        return opener * depth + (inner or "0") + (closer * depth if closed else "")
    return opener * depth + "0" + (closer * depth if closed else "")


@st.composite
def with_number(draw: st.DrawFn, valid: dict, numbers: st.SearchStrategy) -> dict:
    """``valid`` with one numeric leaf (anywhere, in lists too) replaced by one of ``numbers``."""
    data = copy.deepcopy(valid)
    places = []

    def walk(node) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, bool):
                continue
            if isinstance(child, int | float):
                places.append((node, key))
            elif isinstance(child, dict | list):
                walk(child)

    walk(data)
    node, key = draw(st.sampled_from(places))
    node[key] = draw(numbers)
    return data


@FUZZ
@given(nested_text())
def test_deeply_nested_json_files(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    folder = tmp_path_factory.mktemp("nested")
    (folder / "manifest.json").write_text(text)
    only_fastgen_errors(lambda path: read_manifest(path, verify=False), folder)
    only_fastgen_errors(Program.from_json, text)
    with pytest.raises(FastgenError):  # nothing nested this deep is a manifest or a program
        Program.from_json(text)


@FUZZ
@given(with_number(VALID_PROGRAM, NON_FINITE))
def test_non_finite_program_numbers_are_refused(data) -> None:
    with pytest.raises(FastgenError):  # every number of a program is read; none may be non-finite
        Program.from_dict(data)


@FUZZ
@given(with_number(VALID_PROGRAM, HUGE) | with_number(VALID_PROGRAM, NON_FINITE) | mutated(VALID_PROGRAM))
def test_a_program_against_its_manifest(data) -> None:
    """What opening a bundle does with its program: parse, then check it against the manifest's images and sites."""
    from fastgen.runtime import check_program

    manifest = Manifest.from_dict(VALID_MANIFEST)
    family = build_family(ModelConfig.from_dict(manifest.model))
    only_fastgen_errors(lambda d: check_program(Path("bundle"), manifest, family, Program.from_dict(d)), data)


@FUZZ
@given(with_number(VALID_MANIFEST, HUGE | NON_FINITE))
def test_huge_and_non_finite_manifest_numbers(data) -> None:
    only_fastgen_errors(read_bundle_description, data)


@FUZZ
@given(st.lists(st.integers(-3, 2**64), min_size=0, max_size=6))
def test_program_buffer_sizes_are_bounded(shape) -> None:
    data = copy.deepcopy(VALID_PROGRAM)
    data["buffers"]["extra"] = shape
    try:
        program = Program.from_dict(data)
    except FastgenError:
        return
    import math

    assert math.prod(program.buffers["extra"]) <= 2**31
