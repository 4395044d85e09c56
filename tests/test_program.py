"""Sampling programs (export/PROGRAM.md): each family's program equals its math module's reference sampler, the
captured-path interpretation equals the eager one, the JSON form round-trips and bad programs are one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_accel import CASES, IDS, tiny_model
from torch import Tensor

from fastgen.accel import ProgramRunner
from fastgen.diffusion import blur, ddpm, pddpm, udpm
from fastgen.errors import FastgenError
from fastgen.families import Family, module_sites
from fastgen.families.ddpm import schedule_from
from fastgen.kernels import philox as mirror
from fastgen.sampling import interpreter
from fastgen.sampling.interpreter import Interpreter
from fastgen.sampling.noise import normals, philox4x32_10, seed_words
from fastgen.sampling.program import Program

F64 = torch.float64


def sequential_noise(seed: int, dtype: torch.dtype = torch.float32):
    """A noise source that draws torch.randn in call order, as the reference samplers draw from their generator."""
    generator = torch.Generator().manual_seed(seed)
    return lambda op, draw, shape: torch.randn(shape, generator=generator, dtype=dtype).to(F64)


def reference_sample(family: Family, sites: dict, batch: int, seed: int, options: dict) -> Tensor:
    """The math module's own sampler in float64, its noise drawn from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    image = family.image
    shape = (batch, image.channels, image.resolution, image.resolution)
    if family.name == "ddpm":
        schedule = schedule_from(family.config.diffusion, F64)
        common = dict(generator=generator, dtype=F64, clip_x0=options.get("clip_x0", False))
        if options.get("sampler") == "ddim":
            return ddpm.sample_ddim(sites["denoiser"], schedule, shape, num_steps=options["steps"],
                                    eta=options.get("eta", 0.0), **common)  # fmt: skip
        return ddpm.sample_ancestral(sites["denoiser"], schedule, shape, **common)
    if family.name == "pddpm":
        schedule = schedule_from({k: v for k, v in family.config.diffusion.items() if k != "resolutions"}, F64)
        return pddpm.sample_pyramidal(family.coordinate_predictor(sites), schedule, family.resolutions, batch,
                                      image.channels, generator=generator, dtype=F64,
                                      **family.pyramid_settings(options))  # fmt: skip
    if family.name == "blur":
        schedule = blur.make_blur_schedule(image.resolution, image.resolution, **family.config.diffusion, dtype=F64)
        return blur.sample(schedule, sites["denoiser"], batch, image.channels, generator=generator)
    # The program draws as udpm.draw_latents does (x_L, then e_L (, e'_L) … ), less the level-1 step's maps it
    # skips: they come last and change nothing.
    return udpm.sample(family.process, udpm_predictors(family, sites), generator, shape=shape, dtype=F64).image


def udpm_predictors(family: Family, sites: dict) -> list:
    return [sites[f"level_{level}"] for level in range(1, family.schedule.levels + 1)]


@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_program_equals_the_reference_sampler(family_name: str, diffusion: dict, options: dict) -> None:
    """Same networks, same noise in the same order, float64: the program's run is the reference's to 1e-12."""
    family, networks = tiny_model(family_name, **diffusion)
    sites = module_sites(family.call_sites({name: net.double() for name, net in networks.items()}))
    noise_dtype = F64 if family_name == "udpm" else torch.float32  # what the reference draws
    with torch.inference_mode():
        expected = reference_sample(family, sites, 2, 11, options)
        got = Interpreter(family.program(**options), 2, "cpu", F64).run(sites, sequential_noise(11, noise_dtype))
    assert expected.std() > 0.1  # a sample that depends on the network and the noise
    assert (got - expected).abs().max() <= 1e-12


@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_graph_path_equals_eager_and_seeds_reproduce(family_name: str, diffusion: dict, options: dict) -> None:
    """The runner a CUDA graph captures (seed in a tensor, prepared sites) gives the eager images bit for bit."""
    family, networks = tiny_model(family_name, **diffusion)
    sites = module_sites(family.call_sites(networks))
    runner = ProgramRunner(family, networks, 2, kernels="reference", **options)
    with torch.inference_mode():
        eager = family.sample(sites, 2, seed=5, **options)
        runner.reseed(5)
        captured_path = runner.run()
        runner.reseed(6)
        other = runner.run()
    assert torch.equal(captured_path, eager)
    assert not torch.allclose(other, eager)


UDPM_KERNELS = pytest.mark.parametrize("kernel", ["box", "gaussian"])


@UDPM_KERNELS
def test_udpm_program_with_explicit_latents_equals_the_oracle(kernel: str) -> None:
    """Explicit latents are the program's draws: its run is udpm.sample's on the same latents, float64, to 1e-12."""
    family, networks = tiny_model("udpm", kernel=kernel)
    sites = module_sites(family.call_sites({name: net.double() for name, net in networks.items()}))
    image = family.image
    shape = (3, image.channels, image.resolution, image.resolution)
    latents = udpm.draw_latents(family.schedule, shape, torch.Generator().manual_seed(2), F64,
                                observation_noise=family.process.observation_noise)  # fmt: skip
    with torch.inference_mode():
        expected = udpm.sample(family.process, udpm_predictors(family, sites), latents).image
        got = interpreter.sample(family.program(), sites, 3, draws=family.latent_draws(latents), dtype=F64)
    assert expected.std() > 0.1
    assert (got - expected).abs().max() <= 1e-12


@UDPM_KERNELS
def test_a_seeds_latents_replay_its_images(kernel: str) -> None:
    """draw_latents(n, seed) are the draws the seeded program makes: sampling them gives its images bit for bit;
    edits of level 1 change nothing."""
    family, networks = tiny_model("udpm", kernel=kernel)
    sites = module_sites(family.call_sites(networks))
    with torch.inference_mode():
        seeded = family.sample(sites, 3, seed=4)
        latents = family.draw_latents(3, 4)
        assert torch.equal(family.sample(sites, 3, latents=latents), seeded)
        level_one = udpm.perturb_noise(latents, 1, 1.0, torch.Generator().manual_seed(0))
        assert torch.equal(family.sample(sites, 3, latents=level_one), seeded)
    assert len(latents.maps()) == (7 if kernel == "gaussian" else 4)


@pytest.mark.parametrize(
    ("draws", "message"),
    [
        (lambda d: d.update({(0, 0): torch.zeros(2, 3, 4, 4)}),
         r"explicit draw 0 of op 0 has shape \[2, 3, 4, 4\], but the program draws \[2, 3, 2, 2\] there"),
        (lambda d: d.update({(0, 0): torch.zeros(2, 3, 2, 2, dtype=torch.int64)}),
         r"explicit draw \(0, 0\) must be a floating-point tensor of normals, got torch.int64"),
        (lambda d: d.update({(0, 0): [[0.0]]}), r"explicit draw \(0, 0\) must be a floating-point tensor of normals, got list"),
        (lambda d: d.update({"x_top": torch.zeros(2, 3, 2, 2)}), r"keyed by \(op index, draw\) integer pairs, got 'x_top'"),
        (lambda d: d.update({(6, 0): torch.zeros(2, 3, 16, 16)}), r"explicit draws \[\(6, 0\)\] \(op index, draw\) are not draws"),
    ],
    ids=["shape", "dtype", "not-a-tensor", "key", "not-drawn"],
)  # fmt: skip
def test_bad_explicit_draws_are_one_clear_error(draws, message: str) -> None:
    family, networks = tiny_model("udpm")
    good = dict(family.latent_draws(family.draw_latents(2, 0)))
    draws(good)
    with pytest.raises(FastgenError, match=message):
        interpreter.sample(family.program(), module_sites(family.call_sites(networks)), 2, draws=good)


def test_a_batch_is_a_prefix_of_a_larger_one() -> None:
    family, networks = tiny_model("ddpm", num_steps=20)
    sites = module_sites(family.call_sites(networks))
    with torch.inference_mode():
        small, large = (family.sample(sites, n, seed=9, sampler="ddim", steps=5, eta=1.0) for n in (2, 3))
    torch.testing.assert_close(small, large[:2], rtol=1e-5, atol=1e-5)  # the network batches differently


@pytest.mark.parametrize("first", [0, 1, 3, 6, 13])
def test_noise_from_any_element_is_that_slice_of_the_whole(first: int) -> None:
    key = seed_words(4, torch.device("cpu"))
    whole = normals(key, 2, 1, (5, 3, 3), torch.float64).reshape(-1)
    part = normals(key, 2, 1, (7,), torch.float64, first=first)
    torch.testing.assert_close(part, whole[first:first + 7], rtol=0, atol=0)


@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_chunks_of_a_sample_are_its_images(family_name: str, diffusion: dict, options: dict) -> None:
    """Images 3 … 4 of a seed, sampled alone (first_image=3), are images 3 … 4 of the 5-image sample."""
    family, networks = tiny_model(family_name, **diffusion)
    sites = module_sites(family.call_sites(networks))
    with torch.inference_mode():
        whole = family.sample(sites, 5, seed=8, **options)
        chunk = family.sample(sites, 2, seed=8, first_image=3, **options)
    torch.testing.assert_close(chunk, whole[3:], rtol=1e-5, atol=1e-5)  # the network batches differently


def test_max_calls_cuts_the_chain_not_the_count() -> None:
    family, networks = tiny_model("ddpm", num_steps=20)
    sites = module_sites(family.call_sites(networks))
    calls = []

    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        calls.append(t[0].item())
        return sites["denoiser"](x, t)

    interpreter = Interpreter(family.program(), 1)
    with torch.inference_mode():
        interpreter.run({"denoiser": denoiser}, sequential_noise(0), max_calls=3)
    assert (interpreter.nfe, calls) == (20, [19.0, 18.0, 17.0])


# ------------------------------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_json_round_trip(family_name: str, diffusion: dict, options: dict) -> None:
    family, networks = tiny_model(family_name, **diffusion)
    program = family.program(**options)
    text = program.to_json()
    again = Program.from_json(text)
    assert again.to_json() == text
    sites = module_sites(family.call_sites(networks))
    with torch.inference_mode():
        first, second = (Interpreter(p, 2).run(sites, sequential_noise(3)) for p in (program, again))
    assert torch.equal(first, second)


def _ddpm_program() -> dict:
    family, _ = tiny_model("ddpm", num_steps=4)
    return json.loads(family.program().to_json())


def _broken(edit) -> dict:
    data = _ddpm_program()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "program version 2 is not supported .* re-export"),
        (lambda d: d.update(format="onnx"), "not a fastgen program"),
        (lambda d: d["ops"].append({"op": "teleport"}), r"program op 2: unknown op 'teleport'; known: noise, call"),
        (lambda d: d["ops"][1].pop("s"), r"program op 1 \(denoise_chain\): missing field 's'"),
        (lambda d: d["ops"][1].update(p=[1.0]), r"program op 1 \(denoise_chain\): p has shape \[1\], expected \[4\]"),
        (lambda d: d["ops"][0].update(scale="big"), r"program op 0 \(noise\): scale must be a finite number"),
        (lambda d: d["ops"][0].update(colour=1), r"program op 0 \(noise\): unknown field\(s\) colour"),
        (lambda d: d["ops"][1].update(step="heun"), "unknown step 'heun'"),
        (lambda d: d["ops"][1].update(x="y"), "buffer 'y' is not declared"),
        (lambda d: d["buffers"].update(y=[3, 8, 8]) or d["ops"][1].update(x="y", out="y"), "buffer 'y' is read before"),
        (lambda d: d.update(output="z"), "program output 'z' is never written"),
        (lambda d: d["buffers"].update(x=[3, -8, 8]), "buffers must map names to shapes"),
    ],
)
def test_bad_programs_are_one_clear_error(edit, message: str) -> None:
    with pytest.raises(FastgenError, match=message):
        Program.from_dict(_broken(edit))


def test_wrong_shapes_of_a_spectral_filter_and_a_posterior_are_errors() -> None:
    family, _ = tiny_model("blur", num_steps=4)
    data = json.loads(family.program().to_json())
    data["ops"][0]["filter"]["values"] = [[1.0, 2.0]]
    with pytest.raises(FastgenError, match=r"program op 0 \(noise\): filter values has shape \[1, 2\], expected \[16, 9\]"):
        Program.from_dict(data)
    udpm_family, _ = tiny_model("udpm")
    data = json.loads(udpm_family.program().to_json())
    data["buffers"]["x_hat_3"] = [3, 5, 5]
    with pytest.raises(FastgenError, match=r"program op 2 \(udpm_posterior\): x_hat and out must have the same shape"):
        Program.from_dict(data)
    with pytest.raises(FastgenError, match="program is not readable JSON"):
        Program.from_json("{")


def test_a_site_the_model_lacks_is_named() -> None:
    family, _ = tiny_model("udpm")
    with pytest.raises(FastgenError, match="calls site\\(s\\) level_1, level_2, level_3, which the model does not have"):
        Interpreter(family.program(), 1).run({}, sequential_noise(0))


# ------------------------------------------------------------------------------------------------ noise


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [  # Random123 kat_vectors for philox4x32_10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)  # fmt: skip
def test_torch_philox_known_answers(counter: tuple, key: tuple, expected: tuple) -> None:
    out = philox4x32_10(torch.tensor(counter)[:, None], torch.tensor(key))
    assert tuple(out[:, 0].tolist()) == expected


@pytest.mark.parametrize(("seed", "op", "draw"), [(0, 0, 0), (5, 1, 3), (2**64 - 1, 2**32 - 1, 2**32 - 1)])
def test_contract_equals_the_kernel_mirror(seed: int, op: int, draw: int) -> None:
    """Element e of (seed, op, draw) is the DDPM kernel's in-kernel noise at offset (op << 32) | draw."""
    shape = (2, 3, 5, 7)  # 210 elements: not a multiple of 4
    got = normals(seed_words(seed), op, draw, shape, F64)
    expected = mirror.elementwise_noise(seed, (op << 32) | draw, shape)
    assert (got - expected).abs().max() <= 1e-15


def test_normals_are_standard_and_independent_across_ops_and_draws() -> None:
    key = seed_words(2026)
    values = normals(key, 0, 0, (250_000,), F64)
    assert abs(float(values.mean())) < 0.01 and abs(float(values.var()) - 1) < 0.01
    assert float(values.abs().max()) < 5.8  # the 24-bit uniforms cut the tails at 5.77σ
    for other in (normals(key, 1, 0, (250_000,), F64), normals(key, 0, 1, (250_000,), F64),
                  normals(seed_words(2027), 0, 0, (250_000,), F64)):  # fmt: skip
        assert abs(float(np.corrcoef(values.numpy(), other.numpy())[0, 1])) < 0.01


def test_the_specs_known_answers() -> None:
    """export/PROGRAM.md lists normals of the contract for other implementations (the C++ kit) to check against."""
    spec = (Path(__file__).parents[1] / "export" / "PROGRAM.md").read_text()
    block = spec.split("```known-answers\n")[1].split("```")[0]
    for line in block.strip().splitlines():
        key, values = line.split(":")
        seed, op, draw = map(int, key.split())
        expected = torch.tensor([float(v) for v in values.split()], dtype=F64)
        got = normals(seed_words(seed), op, draw, expected.shape, F64)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)  # libm's last bit may differ between CPUs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: torch.cuda.is_available() is False")
def test_the_gpu_draws_the_cpus_noise() -> None:
    shape = (2, 3, 33, 17)
    on_gpu = normals(seed_words(7, "cuda"), 2, 3, shape, F64).cpu()
    torch.testing.assert_close(on_gpu, normals(seed_words(7), 2, 3, shape, F64), rtol=0, atol=1e-12)


def test_seeds_and_indices_are_checked() -> None:
    with pytest.raises(FastgenError, match="seed must be an integer in"):
        seed_words(-1)
    with pytest.raises(FastgenError, match="noise draw must be an integer"):
        normals(seed_words(0), 0, 2**32 + 1, (4,))
