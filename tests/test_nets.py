"""fastgen.nets: shapes of every option, the UDPM paper net's size and cost, config round trips, gradients, errors."""

import json

import pytest
import torch

import fastgen.nets as nets
from fastgen.errors import FastgenError
from fastgen.nets import (
    Discriminator,
    DiscriminatorConfig,
    LevelNetworks,
    LevelNetworksConfig,
    UNet,
    UNetConfig,
    build_network,
)



def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the near-identity init (residual convs start at 1e-5) so outputs depend visibly on every input."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return module.eval()


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("config", "in_shape", "out_shape"),
    [
        (nets.tiny_unet(), (2, 3, 8, 8), (2, 3, 8, 8)),
        (
            nets.tiny_unet().replace(
                noise_embedding="positional", noise_channel_mult=1, encoder="standard", resample_filter=(1, 1)
            ),
            (2, 3, 8, 8),
            (2, 3, 8, 8),
        ),
        (
            UNetConfig.ddpmpp(
                base_channels=8,
                channel_mults=(1, 2, 2),
                blocks_per_resolution=1,
                resolution=16,
                attention_resolutions=(8, 4),
            ),
            (1, 3, 16, 16),
            (1, 3, 16, 16),
        ),
        (nets.tiny_unet(upscale=2), (2, 3, 4, 8), (2, 3, 8, 16)),
        (nets.tiny_unet(upscale=3, out_channels=1), (2, 3, 8, 8), (2, 1, 24, 24)),
        (nets.tiny_unet(extra_in_channels=24), (2, 27, 8, 8), (2, 3, 8, 8)),
        (nets.tiny_unet(attention_heads=2, attention_resolutions=(8, 4)), (2, 3, 8, 8), (2, 3, 8, 8)),
    ],
    ids=["ncsnpp", "ddpmpp", "ddpmpp-3-depths", "upscale-2-rectangular", "upscale-3", "extra-in-channels", "two-heads"],
)
def test_unet_output_shapes(config: UNetConfig, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    net = randomize_(UNet(config))
    with torch.no_grad():
        out = net(torch.randn(in_shape), torch.rand(in_shape[0]))
    assert out.shape == out_shape
    assert torch.isfinite(out).all()


def test_unet_class_labels_as_indices_or_rows() -> None:
    net = randomize_(UNet(nets.tiny_unet(label_dim=5)))
    x, noise = torch.randn(3, 3, 8, 8), torch.rand(3)
    labels = torch.tensor([0, 4, 2])
    with torch.no_grad():
        by_index = net(x, noise, labels)
        by_row = net(x, noise, torch.nn.functional.one_hot(labels, 5).float())
        other = net(x, noise, torch.tensor([1, 4, 2]))
    assert by_index.shape == (3, 3, 8, 8)
    torch.testing.assert_close(by_index, by_row)
    assert not torch.allclose(by_index[0], other[0]) and torch.allclose(by_index[1:], other[1:])


@pytest.mark.parametrize("layout", ["per_level", "shared"])
def test_level_networks_layouts(layout: str) -> None:
    config = nets.tiny_udpm(layout)
    levels = randomize_(LevelNetworks(config))
    assert len(levels.nets) == (1 if layout == "shared" else 3)
    assert param_count(levels) == len(levels.nets) * param_count(UNet(config.unet))
    assert config.input_resolutions(32) == [16, 8, 4]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        outputs = [levels(x, level) for level in (1, 2, 3)]
        per_level = [f(x) for f in levels.per_level()]
    for out, bound in zip(outputs, per_level, strict=True):
        assert out.shape == (2, 3, 16, 16)
        torch.testing.assert_close(out, bound)
    # Shared: one net told apart by the level label; per level: separate nets.
    assert not torch.allclose(outputs[0], outputs[1])
    assert (levels.net_for(1) is levels.net_for(3)) == (layout == "shared")


def test_shared_layout_feeds_the_level_index_as_noise_label() -> None:
    levels = randomize_(LevelNetworks(nets.tiny_udpm("shared")))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(levels(x, 2), levels.nets[0](x, torch.full((2,), 2.0)))


def test_discriminator_shapes_and_level_conditioning() -> None:
    disc = randomize_(Discriminator(nets.tiny_discriminator(cond_channels=3, label_dim=4, levels=3)))
    x, cond, labels = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        logits = disc(x, 2, cond, labels)
        per_sample = disc(x, torch.tensor([2, 2, 2, 2]), cond, labels)
        other_level = disc(x, 3, cond, labels)
    assert logits.shape == (4,)
    torch.testing.assert_close(logits, per_sample)
    assert not torch.allclose(logits, other_level)


def test_discriminator_without_minibatch_std_scores_each_sample_alone() -> None:
    disc = randomize_(Discriminator(nets.tiny_discriminator(minibatch_std_group=0)))
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(disc(x, 1)[:1], disc(x[:1], 1))


# ---------------------------------------------------------------------------------------------- paper config


@pytest.fixture(scope="module")
def paper_levels() -> LevelNetworks:
    with torch.device("meta"):
        return LevelNetworks(nets.udpm_paper_64(layout="shared"))


def test_udpm_paper_64_parameter_count(paper_levels: LevelNetworks) -> None:
    assert param_count(paper_levels) == pytest.approx(65.41e6, rel=0.005)
    with torch.device("meta"):
        per_level = LevelNetworks(nets.udpm_paper_64())
        cifar = LevelNetworks(nets.udpm_paper_cifar10(layout="shared"))
    assert param_count(per_level) == 3 * param_count(paper_levels)
    assert param_count(cifar) == pytest.approx(57.73e6, rel=0.005)


def test_udpm_paper_64_flops_match_the_official_network(paper_levels: LevelNetworks) -> None:
    level_gflops = [f / 1e9 for f in nets.level_flops_per_image(paper_levels, 64)]
    assert level_gflops == pytest.approx([22.27, 5.53, 1.40], rel=0.05)
    assert sum(level_gflops) == pytest.approx(29.21, rel=0.05)
    with torch.device("meta"):
        ddpm_step = UNet(nets.ddpm_step_64())
    assert nets.flops_per_image(ddpm_step, 64) / 1e9 == pytest.approx(85.05, rel=0.05)


def test_flops_on_meta_equal_flops_on_cpu() -> None:
    config = nets.tiny_udpm("per_level")
    with torch.device("meta"):
        on_meta = LevelNetworks(config)
    assert nets.level_flops_per_image(on_meta, 32) == nets.level_flops_per_image(LevelNetworks(config), 32)


def test_op_counts_skip_views_and_are_the_same_on_meta() -> None:
    block = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.GroupNorm(2, 8), torch.nn.SiLU())

    def call(x: torch.Tensor) -> torch.Tensor:
        return block(x.view(1, 4, 8, 8).permute(0, 1, 3, 2)).flatten(1) * 2

    assert nets.count_ops(call, torch.randn(256)) == {"convolution": 1, "native_group_norm": 1, "silu": 1, "mul": 1}
    config = nets.tiny_udpm("per_level")
    with torch.device("meta"):
        on_meta = LevelNetworks(config)
    net = LevelNetworks(config).per_level()[0]
    meta_net = on_meta.per_level()[0]
    on_cpu = nets.count_ops(net, *net.example_inputs(16))
    assert on_cpu["convolution"] > 0 and on_cpu == nets.count_ops(meta_net, *meta_net.example_inputs(16))


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "config",
    [
        nets.tiny_unet(label_dim=3, extra_in_channels=2),
        nets.tiny_udpm("per_level"),
        nets.tiny_discriminator(cond_channels=3),
    ],
    ids=["unet", "level-networks", "discriminator"],
)
def test_json_round_trip_rebuilds_an_identical_network(config: nets.NetConfig) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert nets.config_from_dict(data) == config
    original, rebuilt = randomize_(build_network(config)), build_network(data).eval()
    assert type(rebuilt) is type(original) and rebuilt.config == config
    shapes = {name: t.shape for name, t in original.state_dict().items()}
    assert {name: t.shape for name, t in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(original.state_dict())  # includes the random Fourier frequencies (a buffer)
    if isinstance(original, LevelNetworks):
        inputs: tuple = (torch.randn(2, 3, 8, 8), 2)
    else:
        inputs = original.example_inputs(8, batch_size=2)
        inputs = tuple(torch.randn_like(t) if isinstance(t, torch.Tensor) else t for t in inputs)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(*inputs), original(*inputs), rtol=0, atol=0)


def test_fourier_frequencies_are_a_saved_buffer() -> None:
    net = UNet(nets.tiny_unet())
    assert "noise_features.freqs" in net.state_dict()
    assert all("freqs" not in name for name, _ in net.named_parameters())


def test_presets_are_valid_configs() -> None:
    for name in nets.PRESETS:
        config = nets.preset(name)
        assert type(config).from_dict(config.to_dict()) == config


# The input checks become trace-time constants, as intended; the legacy exporter is what runs without onnxscript.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_level_network_exports_to_onnx_with_dynamic_batch(tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    levels = randomize_(LevelNetworks(nets.tiny_udpm("per_level", label_dim=4)))
    network = levels.level_network(2)
    path = tmp_path / "level_2.onnx"
    names = ["x", "class_labels"]
    torch.onnx.export(
        network,
        network.example_inputs(8, batch_size=2),
        str(path),
        opset_version=17,
        input_names=names,
        output_names=["out"],
        dynamic_axes={name: {0: "batch"} for name in [*names, "out"]},
        dynamo=False,
    )
    x, labels = torch.randn(5, 3, 8, 8), torch.nn.functional.one_hot(torch.arange(5) % 4, 4).float()
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {"x": x.numpy(), "class_labels": labels.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), network(x, labels), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "make",
    [
        lambda: (UNet(nets.tiny_unet(label_dim=3)), (torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 2]))),
        lambda: (
            UNet(
                nets.tiny_unet(upscale=2).replace(
                    noise_embedding="positional", noise_channel_mult=1, encoder="standard", resample_filter=(1, 1)
                )
            ),
            (torch.randn(2, 3, 8, 8), torch.rand(2)),
        ),
        lambda: (LevelNetworks(nets.tiny_udpm("shared")), (torch.randn(2, 3, 8, 8), 1)),
        # Every level appears once so every row of the level embedding is used.
        lambda: (
            Discriminator(nets.tiny_discriminator(cond_channels=3)),
            (torch.randn(3, 3, 8, 8), torch.tensor([1, 2, 3]), torch.randn(3, 3, 4, 4)),
        ),
    ],
    ids=["ncsnpp-labels", "ddpmpp-upscale", "level-networks", "discriminator"],
)
def test_gradients_reach_every_parameter(make) -> None:
    torch.manual_seed(0)
    net, inputs = make()
    out = net.train()(*inputs)
    (out * torch.randn_like(out)).sum().backward()
    dead = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches {dead}"


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: UNetConfig(channel_mults=()), "channel_mults"),
        (lambda: UNetConfig(channel_mults=(1, 0)), "channel_mults"),
        (lambda: UNetConfig(resolution=32, attention_resolutions=(16, 3)), "attention resolution 3"),
        (lambda: UNetConfig(resolution=20, channel_mults=(1, 2, 2)), "resolution 20"),
        (lambda: UNetConfig(resample_filter=(1, 2, 1)), "resample_filter"),
        (lambda: UNetConfig(noise_embedding="gaussian"), "noise_embedding"),
        (lambda: UNetConfig(encoder="skip"), "encoder"),
        (lambda: UNetConfig(dropout=1.5), "dropout"),
        (lambda: UNetConfig(label_dropout=0.1), "label_dropout"),
        (lambda: UNetConfig(upscale=0), "upscale"),
        (lambda: UNetConfig(base_channels=True), "base_channels"),
        (lambda: UNetConfig(attention_heads=3, base_channels=64), "attention_heads"),
        (lambda: UNetConfig.from_dict({"base_channels": "128"}), "base_channels"),
        (lambda: UNetConfig.from_dict({"base_chanels": 128}), "base_chanels"),
        (lambda: UNetConfig.from_dict({"kind": "discriminator"}), "kind"),
        (lambda: LevelNetworksConfig(levels=0), "levels"),
        (lambda: LevelNetworksConfig(layout="per_step"), "layout"),
        (lambda: LevelNetworksConfig.from_dict({"unet": {"channel_mults": []}}), "channel_mults"),
        (lambda: nets.tiny_udpm().input_resolutions(20), "image resolution 20"),
        (lambda: DiscriminatorConfig(channels=()), "channels"),
        (lambda: DiscriminatorConfig(dropout=-0.1), "dropout"),
        (lambda: build_network({"kind": "transformer"}), "transformer"),
        (lambda: build_network({"base_channels": 8}), "kind"),
        (lambda: nets.preset("udpm_paper_128"), "udpm_paper_128"),
    ],
)
def test_bad_configs_raise_fastgen_error(make, message: str) -> None:
    with pytest.raises(FastgenError, match=message):
        make()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: UNet(nets.tiny_unet())(torch.zeros(1, 4, 8, 8), torch.zeros(1)), r"\[B, 3, H, W\]"),
        (lambda: UNet(nets.tiny_unet())(torch.zeros(1, 3, 8, 7), torch.zeros(1)), "divisible by 2"),
        (lambda: UNet(nets.tiny_unet(label_dim=2))(torch.zeros(1, 3, 8, 8), torch.zeros(1)), "class_labels"),
        (
            lambda: UNet(nets.tiny_unet(label_dim=2))(torch.zeros(1, 3, 8, 8), torch.zeros(1), torch.zeros(1, 3)),
            "class_labels",
        ),
        (lambda: UNet(nets.tiny_unet())(torch.zeros(1, 3, 8, 8), torch.zeros(1), torch.zeros(1)), "unconditional"),
        (lambda: LevelNetworks(nets.tiny_udpm())(torch.zeros(1, 3, 8, 8), 4), "level must be in 1..3"),
        (lambda: Discriminator(nets.tiny_discriminator())(torch.zeros(1, 3, 1, 1), 1), "H, W ≥ 2"),
        (lambda: Discriminator(nets.tiny_discriminator())(torch.zeros(1, 3, 8, 8), 0), "level must be in 1..3"),
        (lambda: Discriminator(nets.tiny_discriminator(cond_channels=3))(torch.zeros(1, 3, 8, 8), 1), "cond"),
        (lambda: Discriminator(nets.tiny_discriminator())(torch.zeros(6, 3, 8, 8), 1), "minibatch-stddev group 4"),
    ],
)
def test_bad_inputs_raise_fastgen_error(call, message: str) -> None:
    with pytest.raises(FastgenError, match=message):
        call()
