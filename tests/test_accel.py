"""fastgen.accel: capturable plans (checked on CPU against the family samplers) and the CUDA-graph sampler (GPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from fastgen.accel import GraphSampler, ProgramRunner, TorchSite, as_sites, prepare_sites
from fastgen.api import model_config_from_recipe
from fastgen.errors import FastgenError
from fastgen.families import FAMILIES, Family, build_family, module_sites
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


@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_plan_reproduces_the_family_sampler(family_name: str, diffusion: dict, options: dict) -> None:
    """Same noise in the same order, the reference steps: the plan's sample is the family's, bit for bit."""
    family, networks = tiny_model(family_name, **diffusion)
    sites = module_sites(family.call_sites(networks))
    plan = plan_for(family, 2, "cpu", **options)
    assert not plan.fused  # no CUDA here: the reference steps
    generator = torch.Generator().manual_seed(11)
    with torch.inference_mode():
        expected = family.sample(sites, 2, generator=torch.Generator().manual_seed(11), **options)
        got = plan.run(sites, lambda shape: torch.randn(shape, generator=generator))
    assert expected.std() > 0.1  # a sample that depends on the network and the noise
    assert torch.equal(got, expected)


def test_max_calls_cuts_the_chain_not_the_count() -> None:
    family, networks = tiny_model("ddpm", num_steps=20)
    sites = module_sites(family.call_sites(networks))
    calls = []

    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        calls.append(t[0].item())
        return sites["denoiser"](x, t)

    plan = plan_for(family, 1, "cpu", max_calls=3)
    with torch.inference_mode():
        plan.run({"denoiser": denoiser}, lambda shape: torch.randn(shape))
    assert (plan.nfe, plan.calls, calls) == (20, 3, [19.0, 18.0, 17.0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kernels": "fastest"}, "unknown kernels choice 'fastest'"),
        ({"kernels": "fused"}, "fused kernels requested"),
        ({"sampler": "heun"}, "unknown DDPM sampler 'heun'"),
        ({"eta": 2.0}, "eta must lie in"),
        ({"guidance": 1.0}, "ddpm sampler has no option guidance"),
        ({"max_calls": 0}, "max_calls must be a positive integer"),
    ],
)
def test_plan_options_are_checked(arguments: dict, message: str) -> None:
    family, _ = tiny_model("ddpm", num_steps=20)
    with pytest.raises(FastgenError, match=message):
        plan_for(family, 2, "cpu", **arguments)


def test_plan_errors_name_the_problem() -> None:
    family, _ = tiny_model("udpm")
    with pytest.raises(FastgenError, match="batch size must be a positive integer"):
        plan_for(family, 0, "cpu")
    with pytest.raises(FastgenError, match="latents in the graph"):
        plan_for(family, 2, "cpu", latents=None)
    ddpm_family, _ = tiny_model("ddpm", num_steps=20)
    unplanned = copy.copy(ddpm_family)
    unplanned.name = "unplanned"  # a family the plans do not know
    with pytest.raises(FastgenError, match="no graph plan for the unplanned family"):
        plan_for(unplanned, 2, "cpu")
    assert set(PLANS) == set(FAMILIES)  # every built-in family has one


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
    """The family's own sampler, fp32 on the GPU, noise from a CUDA generator seeded like the graph's."""
    on_gpu = {name: net.to("cuda") for name, net in networks.items()}
    sites = module_sites(family.call_sites(on_gpu))
    generator = torch.Generator("cuda").manual_seed(seed)
    with torch.inference_mode():
        return family.sample(sites, batch, generator=generator, device="cuda", **options)


def plan_on_gpu(family: Family, networks: dict[str, nn.Module], batch: int, seed: int, **options: object) -> Tensor:
    """The graph's plan run eagerly on the GPU, with the noise of a CUDA generator seeded like the graph's."""
    sites = module_sites(family.call_sites({name: net.to("cuda") for name, net in networks.items()}))
    generator = torch.Generator("cuda").manual_seed(seed)
    with torch.inference_mode():
        return plan_for(family, batch, "cuda", **options).run(
            sites, lambda shape: torch.randn(shape, generator=generator, device="cuda"))


@requires_gpu
@pytest.mark.parametrize("kernels", ["reference", "fused"])
@pytest.mark.parametrize(("family_name", "diffusion", "options"), CASES, ids=IDS)
def test_graph_replay_equals_the_eager_sampler(family_name: str, diffusion: dict, options: dict, kernels: str) -> None:
    """fp32: a replay with seed s is the family sampler with a CUDA generator seeded s (rel. error ≤ 1e-5).

    The one exception is the circulant UDPM: its graph runs the fused Matheron step, which draws two noise maps
    per level where the family's step draws one; it is checked against its own plan run eagerly.
    """
    family, networks = tiny_model(family_name, 32, **diffusion)
    circulant = diffusion.get("kernel") == "gaussian"
    try:
        sampler = GraphSampler(family, networks, 3, kernels=kernels, **options)
    except FastgenError as error:
        if kernels == "fused" and "fused kernels requested" in str(error):
            pytest.skip(f"fused kernels unavailable: {error}")
        if circulant and kernels == "reference":
            assert "capturable only with the fused kernels" in str(error)
            return
        raise
    assert sampler.fused == (kernels == "fused")
    with torch.inference_mode():
        sampler.output.fill_(float("nan"))  # every element must be written by the replay
    got = sampler.sample(seed=5)
    if circulant:
        expected = plan_on_gpu(family, networks, 3, 5, kernels=kernels, **options)
    else:
        expected = eager_on_gpu(family, networks, 3, 5, **options)
    assert torch.isfinite(got).all()
    assert relative_error(got, expected) <= 1e-5


@requires_gpu
def test_seeds_reproduce_and_replays_differ() -> None:
    family, networks = tiny_model("udpm", 32)
    sampler = GraphSampler(family, networks, 4)
    first, again, other = sampler.sample(seed=1), sampler.sample(seed=1), sampler.sample(seed=2)
    following = sampler.sample()  # no reseed: the noise stream goes on
    assert torch.equal(first, again)
    assert relative_error(other, first) > 0.1 and relative_error(following, other) > 0.1


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

