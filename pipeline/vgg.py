"""VGG-19 as a frozen feature extractor that returns activations by layer name."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch import nn

from pipeline.errors import SettingsError

# LAYER_NAMES: pure Python, so settings can check names without torch
from pipeline.settings import LAYER_NAMES, Pooling
from pipeline.weights import InputConvention, VGGWeights, vgg19_features


def layer_names() -> list[str]:
    """Names for each module of vgg19().features: conv1_1, relu1_1, ..., pool5 (equal to
    LAYER_NAMES)."""
    names, block, index = [], 1, 0
    for module in vgg19_features("meta"):
        if isinstance(module, nn.Conv2d):
            index += 1
            names.append(f"conv{block}_{index}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{index}")
        else:
            names.append(f"pool{block}")
            block, index = block + 1, 0
    return names


class Normalization(nn.Module):
    """RGB in [0, 1] to the input the weights were trained on (Caffe BGR 0-255, or ImageNet
    mean/std)."""

    def __init__(self, convention: InputConvention):
        super().__init__()
        self.bgr = convention.bgr
        self.scale = convention.scale
        self.register_buffer("mean", torch.tensor(convention.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(convention.std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            image = image.flip(1)
        return (image * self.scale - self.mean) / self.std


class VGGFeatures(nn.Module):
    """Frozen VGG-19 cut after the deepest layer in use.

    A layer named `convX_Y` yields the activation after its ReLU, as in the Caffe model Gatys
    et al. used, where ReLUs ran in place on the conv outputs.
    """

    def __init__(
        self,
        weights: VGGWeights,
        layers: Iterable[str],
        pooling: Pooling = "max",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.layers = list(dict.fromkeys(layers))
        unknown = [name for name in self.layers if name not in LAYER_NAMES]
        if unknown:
            raise SettingsError(
                f"unknown VGG-19 layer {unknown[0]!r}; known: "
                f"{', '.join(n for n in LAYER_NAMES if n.startswith('conv'))}"
            )
        if pooling not in ("max", "avg"):
            raise SettingsError(f"unknown pooling {pooling!r}: use max or avg")
        features = vgg19_features("meta")  # no random initialization to overwrite
        features.load_state_dict(weights.state_dict, assign=True)
        deepest = max(LAYER_NAMES.index(_output_module(name)) for name in self.layers)
        modules = []
        for name, module in zip(LAYER_NAMES[: deepest + 1], features):
            if isinstance(module, nn.MaxPool2d) and pooling == "avg":
                module = nn.AvgPool2d(kernel_size=2, stride=2)
            if isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=False)  # in place measured 3 % slower here
            modules.append((name, module))
        self.normalize = Normalization(weights.convention)
        # Weights stored in the compute dtype: autocast would cast every frozen weight again on
        # each forward (no cache for tensors without grad), a few ms a pass on 2 cores.
        self.body = nn.ModuleDict(dict(modules)).to(dtype)
        self.dtype = dtype
        self.eval().requires_grad_(False)

    def forward(
        self, image: torch.Tensor, only: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Activations by layer name: all the layers in use, or `only` those of them."""
        wanted = {_output_module(name): name for name in (self.layers if only is None else only)}
        out: dict[str, torch.Tensor] = {}
        x = self.normalize(image).to(self.dtype)
        for name, module in self.body.items():
            x = module(x)
            if name in wanted:
                out[wanted[name]] = x
                if len(out) == len(wanted):
                    break
        return out


# id(weights) -> (layers, pooling, dtype, device) -> network
_shared: dict[int, dict[tuple, VGGFeatures]] = {}


def shared_features(
    weights: VGGWeights,
    layers: Iterable[str],
    pooling: Pooling = "max",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> VGGFeatures:
    """One network per weights object, layers, pooling, dtype and device in this process, on
    `device` in channels-last: every Stylizer built from the same `VGGWeights` (one per style of a
    folder run) shares it. It is frozen and keeps no state between calls, so sharing changes no
    pixel. The entries of a weights object go when it does."""
    key = (tuple(dict.fromkeys(layers)), pooling, dtype, str(torch.device(device)))
    networks = _shared.get(id(weights))
    if networks is None:
        networks = _shared[id(weights)] = {}
        weakref.finalize(weights, _shared.pop, id(weights), None)
    if key not in networks:
        networks[key] = VGGFeatures(weights, key[0], pooling, dtype).to(
            device, memory_format=torch.channels_last
        )
    return networks[key]


def smallest_input_side(layers: Iterable[str]) -> int:
    """The smallest image side that leaves the deepest of `layers` one pixel: 2 ** poolings before
    it. Unknown names are left to VGGFeatures to report."""
    deepest = max(
        (LAYER_NAMES.index(_output_module(name)) for name in layers if name in LAYER_NAMES),
        default=0,
    )
    return 2 ** sum(name.startswith("pool") for name in LAYER_NAMES[: deepest + 1])


def layer_stride(layer: str) -> int:
    """Input pixels per feature pixel at `layer`: 2 ** poolings before it."""
    index = LAYER_NAMES.index(_output_module(layer))
    return 2 ** sum(name.startswith("pool") for name in LAYER_NAMES[:index])


def receptive_radius(layers: Iterable[str]) -> int:
    """How far (in input pixels) zero padding at a crop's edge can reach into the deepest of
    `layers`: each 3x3 conv widens the band by one feature pixel, each 2x2 pooling by one of its
    input's. A crop with this much margin gives the whole image's features inside the margin."""
    deepest = max(LAYER_NAMES.index(_output_module(name)) for name in layers)
    radius, stride = 0, 1
    for name in LAYER_NAMES[: deepest + 1]:
        if name.startswith("conv"):
            radius += stride
        elif name.startswith("pool"):
            radius += stride
            stride *= 2
    return radius


def _output_module(layer: str) -> str:
    return "relu" + layer[4:] if layer.startswith("conv") else layer
