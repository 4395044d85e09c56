"""fastgen.accel: the program runner a CUDA graph captures (CPU: its options and errors; tests/test_program.py checks
it against the eager sampler) and the CUDA-graph sampler (GPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from fastgen.accel import GraphSampler, ProgramRunner, TorchSite, as_sites, prepare_sites
from fastgen.api import model_config_from_recipe
from fastgen.errors import FastgenError
from fastgen.families import Family, build_family, module_sites
from fastgen.nets.registry import build_network


def tiny_model(family: str, resolution: int = 16, model_fields: dict | None = None,
               **diffusion: object) -> tuple[Family, dict[str, nn.Module]]:
    """A family with its tiny network, whose head is rescaled so that samples depend on every network call.

    Freshly initialised heads are scaled by 1e-5 (EDM's init): their outputs are ~0 and would make a UDPM sample
    nearly independent of its noise, so an equality check would prove little.
    """
    model = {"family": family, "resolution": resolution, "channels": 3, "network": {"preset": "tiny"}}
    model.update(model_fields or {})
    config = model_config_from_recipe({"model": model, "diffusion": dict(diffusion)})
    torch.manual_seed(0)
    net = build_network(config.networks["model"]).eval()
    for name, module in net.named_modules():
        if name.endswith("head_conv"):
            module.weight.data.mul_(2e4)
    return build_family(config), {"model": net}


CASES = [
    ("udpm", {}, {}),
    ("udpm", {"kernel": "gaussian"}, {}),
    ("ddpm", {"num_steps": 20}, {}),
    ("ddpm", {"num_steps": 20}, {"sampler": "ddim", "steps": 5, "eta": 0.5}),
    ("ddpm", {"num_steps": 20}, {"sampler": "ddim", "steps": 4, "clip_x0": True}),
    ("blur", {"num_steps": 8}, {}),
    ("blur", {"num_steps": 8, "basis": "dct"}, {}),
    ("pddpm", {"num_steps": 20, "resolutions": [4, 8, 16]}, {"t_s": 10, "dt_s": 0.4}),
    ("pddpm", {"num_steps": 20, "resolutions": [8, 16]}, {"t_f": 6, "t_s": 5, "dt_s": 0.6, "eta": 0.0, "clip_x0": True}),
]
IDS = ["udpm-box", "udpm-gaussian", "ddpm-ancestral", "ddim-eta", "ddim-clip", "blur-fourier", "blur-dct",
       "pddpm-ancestral", "pddpm-ddim-clip"]


# ------------------------------------------------------------------------------------------------- CPU


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kernels": "fastest"}, "unknown kernels choice 'fastest'"),
        ({"kernels": "fused"}, "fused kernels requested"),
        ({"sampler": "heun"}, "unknown DDPM sampler 'heun'"),
        ({"sampler": "ddim", "steps": 5, "eta": 2.0}, "eta must lie in"),
        ({"guidance": 1.0}, "ddpm sampler has no option guidance"),
        ({"max_calls": 0}, "max_calls must be a positive integer"),
    ],
)
def test_runner_options_are_checked(arguments: dict, message: str) -> None:
    family, networks = tiny_model("ddpm", num_steps=20)
    with pytest.raises(FastgenError, match=message):
        ProgramRunner(family, networks, 2, **arguments)


def test_runner_errors_name_the_problem() -> None:
    family, networks = tiny_model("udpm")
    with pytest.raises(FastgenError, match="batch size must be a positive integer"):
        ProgramRunner(family, networks, 0)
    with pytest.raises(FastgenError, match="explicit latents are the draws of one run"):
        ProgramRunner(family, networks, 2, latents=None)
    runner = ProgramRunner(family, networks, 2, max_calls=2)
    assert (runner.nfe, runner.calls, runner.fused) == (3, 2, False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
def test_graph_sampler_without_cuda_is_one_clear_error() -> None:
    family, networks = tiny_model("udpm")
    with pytest.raises(FastgenError, match=r"CUDA graphs need a CUDA GPU.*is_available\(\) is False"):
        GraphSampler(family, networks, 4)
    with pytest.raises(FastgenError, match="CUDA graphs run on a CUDA device, got cpu"):
        GraphSampler(family, networks, 4, device="cpu")


def test_prepared_sites_cast_copy_and_keep_sharing() -> None:
    """bf16 modules behind float32 sites; the caller's networks untouched; shared weights still shared."""
    family, networks = tiny_model("udpm", model_fields={"layout": "shared"})  # one UNet for every level
    sites = as_sites(family, networks)
    assert sorted(sites) == ["level_1", "level_2", "level_3"]
    prepared = prepare_sites(sites, "cpu", "bf16")
    assert all(isinstance(site, TorchSite) and site.memory_format == torch.channels_last for site in prepared.values())
    assert next(networks["model"].parameters()).dtype == torch.float32
    nets = {id(site.module.net) for site in prepared.values()}
    assert len(nets) == 1 and id(networks["model"].nets[0]) not in nets
    x = torch.randn(2, 3, 2, 2)
    with torch.inference_mode():
        out = prepared["level_3"](x)
        reference = sites["level_3"](x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert torch.linalg.norm(out - reference) / torch.linalg.norm(reference) < 3e-2  # bf16
    assert as_sites(family, prepared) == prepared  # ready sites pass through
    with pytest.raises(FastgenError, match="unknown precision 'fp8'"):
        prepare_sites(sites, "cpu", "fp8")


# ------------------------------------------------------------------------------------------------- GPU


def _gpu_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU: torch.cuda.is_available() is False"
    return None


requires_gpu = pytest.mark.skipif(_gpu_skip_reason() is not None, reason=_gpu_skip_reason() or "")


def relative_error(got: Tensor, expected: Tensor) -> float:
    return (torch.linalg.norm(got.double() - expected.double()) / torch.linalg.norm(expected.double())).item()


def eager_on_gpu(family: Family, networks: dict[str, nn.Module], batch: int, seed: int, **options: object) -> Tensor:
    """The family's program run eagerly, fp32 on the GPU, with the noise of ``seed``."""
    on_gpu = {name: net.to("cuda") for name, net in networks.items()}
    sites = module_sites(family.call_sites(on_gpu))
    with torch.inference_mode():
        return family.sample(sites, batch, seed=seed, device="cuda", **options)


def eager_on_cpu(family: Family, networks: dict[str, nn.Module], batch: int, seed: int, **options: object) -> Tensor:
    """The same sample on the CPU: the noise contract makes it the GPU's to float32 rounding of the networks."""
    sites = module_sites(family.call_sites({name: copy.deepcopy(net).to("cpu") for name, net in networks.items()}))
    with torch.inference_mode():
        return family.sample(sites, batch, seed=seed, **options)


@requires_gpu
@pytest.mark.parametrize("kernels", ["reference", "fused"])
@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_graph_replay_equals_the_eager_sampler(family_name: str, diffusion: dict, options: dict, kernels: str) -> None:
    """fp32: a replay with seed s is the program run eagerly with seed s on the GPU (rel. error ≤ 1e-5) and on the
    CPU (the same noise contract; ≤ 1e-4 for the networks' float32 rounding on two devices)."""
    family, networks = tiny_model(family_name, 32, **diffusion)
    try:
        sampler = GraphSampler(family, networks, 3, kernels=kernels, **options)
    except FastgenError as error:
        if kernels == "fused" and "fused kernels requested" in str(error):
            pytest.skip(f"fused kernels unavailable: {error}")
        raise
    assert sampler.fused == (kernels == "fused")
    with torch.inference_mode():
        sampler.output.fill_(float("nan"))  # every element must be written by the replay
    got = sampler.sample(seed=5)
    assert torch.isfinite(got).all()
    assert relative_error(got, eager_on_gpu(family, networks, 3, 5, **options)) <= 1e-5
    assert relative_error(got, eager_on_cpu(family, networks, 3, 5, **options)) <= 1e-4


@requires_gpu
def test_seeds_reproduce_and_replays_differ() -> None:
    family, networks = tiny_model("udpm", 32)
    sampler = GraphSampler(family, networks, 4)
    first, again, other = sampler.sample(seed=1), sampler.sample(seed=1), sampler.sample(seed=2)
    fresh = sampler.sample()  # no seed: a fresh one
    assert torch.equal(first, again)
    assert relative_error(other, first) > 0.1 and relative_error(fresh, other) > 0.1


@requires_gpu
def test_bf16_graph_is_close_to_fp32() -> None:
    """bf16 weights + channels_last (ANCHORS' best row) against the fp32 eager sampler: rel. error ≤ 3e-2."""
    family, networks = tiny_model("udpm", 64)
    got = GraphSampler(family, networks, 8, precision="bf16").sample(seed=3)
    assert relative_error(got, eager_on_gpu(family, networks, 8, 3)) <= 3e-2


@requires_gpu
def test_compiled_networks_in_the_graph() -> None:
    """torch.compile (default mode) nests inside the outer graph; fp32 agrees to reassociation (≤ 1e-4)."""
    family, networks = tiny_model("udpm", 32)
    got = GraphSampler(family, networks, 4, compile=True).sample(seed=9)
    assert relative_error(got, eager_on_gpu(family, networks, 4, 9)) <= 1e-4


@requires_gpu
def test_max_calls_captures_the_first_calls() -> None:
    family, networks = tiny_model("ddpm", 32, num_steps=50)
    sampler = GraphSampler(family, networks, 2, max_calls=4)
    assert (sampler.nfe, sampler.calls) == (50, 4)
    assert torch.isfinite(sampler.sample(seed=0)).all()

