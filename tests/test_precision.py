"""fastgen.nets.precision: fp16/bf16 networks whose noise features stay exact (the graph sampler's and exporter's rule)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fastgen.accel import prepare_sites
from fastgen.nets import UNet, tiny_unet
from fastgen.export.onnx_export import PRECISIONS, ReducedPrecision
from fastgen.nets.layers import FIRResample, FourierFeatures, PositionalFeatures, SinusoidalFeatures
from fastgen.nets.precision import float32_modules, to_precision

TIMESTEPS = torch.arange(0.0, 1000.0, 37.0)  # DDPM labels: phases up to ~1000 rad


def _unet(embedding: str) -> UNet:
    torch.manual_seed(0)
    return UNet(tiny_unet(noise_embedding=embedding)).eval()


@pytest.mark.parametrize("embedding", ["positional", "fourier"])
def test_noise_features_stay_float32_and_exact(embedding: str) -> None:
    net = _unet(embedding)
    reduced = to_precision(copy.deepcopy(net), torch.bfloat16)
    assert reduced.stem.weight.dtype == torch.bfloat16
    assert reduced.noise_features.freqs.dtype == torch.float32
    assert torch.equal(reduced.noise_features.freqs, net.noise_features.freqs)
    features = reduced.noise_features(TIMESTEPS)  # labels stay float32 (TorchSite casts images only)
    assert features.dtype == torch.bfloat16  # what the bf16 layers after it take
    assert torch.equal(features, net.noise_features(TIMESTEPS).to(torch.bfloat16))


def test_a_plain_cast_would_scramble_the_timestep_features() -> None:
    """Why the rule exists: cast with everything else, sin/cos of t·f at t ≈ 1000 are off by O(1)."""
    reference = _unet("positional").noise_features(TIMESTEPS)
    naive = copy.deepcopy(_unet("positional")).to(torch.bfloat16).noise_features(TIMESTEPS.to(torch.bfloat16))
    ours = to_precision(_unet("positional"), torch.bfloat16).noise_features(TIMESTEPS)
    assert (naive.float() - reference).abs().max() > 0.5
    assert (ours.float() - reference).abs().max() <= 2**-8  # one bf16 rounding of values in [-1, 1]


def test_the_whole_network_runs_in_bf16_close_to_float32() -> None:
    net = _unet("positional")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([999.0, 12.0])
    reference = net(x, labels)
    out = to_precision(copy.deepcopy(net), torch.bfloat16)(x.to(torch.bfloat16), labels).float()
    assert ((out - reference).norm() / reference.norm()).item() < 5e-2


def test_float32_changes_nothing_and_adds_no_hooks() -> None:
    net = _unet("fourier")
    same = to_precision(copy.deepcopy(net), torch.float32)
    for (name, a), (_, b) in zip(net.state_dict().items(), same.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in same.modules())


def test_graph_sampler_sites_use_the_rule() -> None:
    """The CUDA-graph sampler's site preparation (testable on CPU) keeps the features float32 in bf16."""
    net = _unet("positional")
    prepared = prepare_sites({"denoiser": net}, "cpu", "bf16")["denoiser"]
    features = [m for m in prepared.module.modules() if isinstance(m, SinusoidalFeatures)]
    assert features and all(m.freqs.dtype == torch.float32 for m in features)
    assert all(p.dtype == torch.bfloat16 for p in prepared.module.parameters())
    assert net.noise_features.freqs.dtype == torch.float32 and next(net.parameters()).dtype == torch.float32  # untouched
    out = prepared(torch.randn(1, 3, 8, 8), torch.tensor([999.0]))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 8, 8)


@pytest.mark.parametrize(("dtype", "fir_dtype"), [(torch.float16, torch.float16), (torch.bfloat16, torch.float32)])
def test_one_rule_for_export_and_the_graph_sampler(dtype: torch.dtype, fir_dtype: torch.dtype) -> None:
    """The noise features stay float32 in any reduced precision, the FIR resampling filters in bf16 (what TensorRT
    needs): the graph sampler's sites follow the exporter's rule."""
    assert set(float32_modules(torch.float16)) == {FourierFeatures, PositionalFeatures}
    prepared = prepare_sites({"denoiser": _unet("fourier")}, "cpu", dtype)["denoiser"]
    filters = [m for m in prepared.module.modules() if isinstance(m, FIRResample)]
    assert filters and all(m.kernel.dtype == fir_dtype for m in filters)
    exported = ReducedPrecision(_unet("fourier"), PRECISIONS["bf16" if dtype == torch.bfloat16 else "fp16"])
    assert all(m.kernel.dtype == fir_dtype for m in exported.module.modules() if isinstance(m, FIRResample))
    out = prepared(torch.randn(1, 3, 8, 8), torch.tensor([999.0]))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
