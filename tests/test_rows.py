"""Per-row seeds: row r of a batch is image ``index`` of seed ``seed`` for its (seed, index), the same image as in
that seed's own sample whatever else shares the batch — noise bit for bit, images through the same networks, for
every family on torch (eager and the graph runner's path) and on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_accel import CASES, IDS, tiny_model
from test_export import random_checkpoint

from fastgen import api
from fastgen.accel import ProgramRunner
from fastgen.errors import FastgenError
from fastgen.export import export_bundle
from fastgen.families import module_sites
from fastgen.runtime import load_bundle
from fastgen.sampling.noise import RowKeys, normals, philox_source, row_normals, seed_words

F64 = torch.float64
ROWS = [(8, 3), (2, 0), (8, 1), (2**64 - 1, 2), (5, 0)]  # seeds repeat, mix and reach the top of the 64-bit range


def seed_images(sample, rows) -> torch.Tensor:
    """Each row's image taken from its seed's own sample of enough images."""
    wanted = {}
    for seed, index in rows:
        wanted[seed] = max(wanted.get(seed, 0), index + 1)
    whole = {seed: sample(seed, count) for seed, count in wanted.items()}
    return torch.stack([whole[seed][index] for seed, index in rows])


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 2, 2, 2), (3, 1, 7)], ids=["75-per-image", "8-per-image", "7-per-image"])
def test_row_noise_is_the_seeds_noise_bit_for_bit(shape: tuple[int, ...]) -> None:
    """Elements per image that are and are not multiples of 4 (an image's first counter is shared with the last)."""
    rows = [(8, 3), (2, 0), (8, 1), (2**64 - 1, 2)][: shape[0]]
    got = philox_source(RowKeys.of(rows), F64)(5, 2, shape)
    expected = seed_images(lambda seed, n: normals(seed_words(seed), 5, 2, (n, *shape[1:]), F64), rows)
    assert torch.equal(got, expected)
    assert not torch.equal(got[0], got[2])  # one seed's two images differ


def test_row_normals_start_anywhere() -> None:
    key = seed_words(4)
    whole = normals(key, 1, 0, (40,), F64)
    starts = torch.tensor([0, 13, 6], dtype=torch.int64)
    got = row_normals(key[:, None].expand(2, 3), starts, 1, 0, 9)
    assert torch.equal(got, torch.stack([whole[s:s + 9] for s in starts.tolist()]))


@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_mixed_rows_are_each_seeds_images(family_name: str, diffusion: dict, options: dict) -> None:
    """Every family, torch, eager and through the runner a CUDA graph captures (on the CPU here)."""
    family, networks = tiny_model(family_name, **diffusion)
    sites = module_sites(family.call_sites(networks))
    with torch.inference_mode():
        got = family.sample_rows(sites, ROWS, **options)
        expected = seed_images(lambda seed, n: family.sample(sites, n, seed=seed, **options), ROWS)
        runner = ProgramRunner(family, networks, len(ROWS), kernels="reference", **options)
        runner.set_rows(ROWS)
        captured_path = runner.run()
    assert expected.std() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # the networks batch differently
    assert torch.equal(captured_path, got)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rows")
    return {family: export_bundle(random_checkpoint(family, root / f"{family}_run", seed=2), root / family, batch=(1, 4, 8)).bundle
            for family in ("udpm", "ddpm", "pddpm", "blur")}  # fmt: skip


BUNDLE_OPTIONS = {"ddpm": {"sampler": "ddim", "steps": 4}, "pddpm": {"t_f": 8, "t_s": 8}}


@pytest.mark.parametrize("family", ["udpm", "ddpm", "pddpm", "blur"])
def test_mixed_rows_from_a_bundle_on_onnxruntime(bundles, family: str) -> None:
    bundle = load_bundle(bundles[family])
    options = BUNDLE_OPTIONS.get(family, {})
    got = api.sample_rows(bundle, ROWS, **options)
    expected = seed_images(lambda seed, n: api.sample(bundle, n, seed=seed, **options), ROWS)
    assert expected.std() > 0.05
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # ONNX Runtime batches differently


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "non-empty sequence"),
        ("ab", "non-empty sequence"),
        ([(1, 2, 3)], r"row 0 must be a \(seed, image index\) pair"),
        ([(1, 0), (2**64, 0)], r"seed must be an integer in \[0, 2\^64\)"),
        ([(1, -1)], r"row 0: the image index must be an integer in \[0, 2\^63\)"),
        ([(1, True)], "the image index must be an integer"),
        ([(1.5, 0)], "seed must be an integer"),
    ],
    ids=["empty", "string", "triple", "seed-65-bits", "negative-index", "bool-index", "float-seed"],
)
def test_bad_rows_are_one_clear_error(rows, message: str) -> None:
    family, networks = tiny_model("udpm")
    with pytest.raises(FastgenError, match=message):
        family.sample_rows(module_sites(family.call_sites(networks)), rows)


def test_an_image_index_too_large_for_its_draw_is_refused() -> None:
    source = philox_source(RowKeys.of([(1, 2**62)]))
    with pytest.raises(FastgenError, match="too large for draws of 4 elements per image"):
        source(0, 0, (1, 4))
