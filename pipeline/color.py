"""Colour transfers of Gatys et al., "Preserving colour in neural artistic style transfer": the
luminance-only transfer, and the linear transfer of a palette (mean and covariance of RGB)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_EPSILON = 1e-5  # of a covariance's eigenvalues, in squared [0, 1] units
_PIXELS = 1 << 20  # of a style image, at most, that its palette reads

# ITU-R BT.601 luma and chroma, as in OpenCV's YCrCb.
_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _TO_YUV.to(image), image)


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_TO_YUV).to(image), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """A grey RGB image with the same luma: what the network sees when colours are preserved."""
    return rgb_to_yuv(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def with_chroma_of(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylized image's luma with the content's chroma."""
    luma = rgb_to_yuv(stylized)[:, :1]
    chroma = rgb_to_yuv(content)[:, 1:]
    return yuv_to_rgb(torch.cat([luma, chroma], dim=1)).clamp(0, 1)


@dataclass(frozen=True)
class Palette:
    """The colours of the style images: their mean and covariance in RGB, blended by weight."""

    mean: torch.Tensor  # 3
    covariance: torch.Tensor  # 3 x 3


def palette_of(styles: Sequence[torch.Tensor], weights: Sequence[float]) -> Palette:
    """The blend's moments are those of the pixels of all styles, each style weighted."""
    mean = torch.zeros(3, dtype=torch.float64)
    second = torch.zeros(3, 3, dtype=torch.float64)
    for style, weight in zip(styles, weights):
        # every step-th row and column: the moments of a large painting, without its float64 copy
        step = max(1, math.isqrt(style.shape[-2] * style.shape[-1] // _PIXELS))
        pixels = style[..., ::step, ::step].reshape(3, -1).to("cpu", torch.float64)
        mean += weight * pixels.mean(1)
        second += weight * (pixels @ pixels.T) / pixels.shape[1]
    return Palette(mean, second - torch.outer(mean, mean))


def _matrix_power(covariance: torch.Tensor, power: float) -> torch.Tensor:
    # a grey or flat image has a singular covariance: the floor keeps its inverse finite, and the
    # directions it lacks stay all but empty
    identity = torch.eye(3, dtype=covariance.dtype, device=covariance.device)
    values, vectors = torch.linalg.eigh(covariance + _EPSILON * identity)
    return vectors @ torch.diag(values.clamp_min(_EPSILON) ** power) @ vectors.T


def recoloured(content: torch.Tensor, palette: Palette) -> torch.Tensor:
    """`content` (1 x 3 x H x W) with the palette's mean and covariance, clipped to [0, 1]: the
    linear colour transfer of Gatys et al. ("Preserving colour", section 2.1), the other way round.
    L-BFGS then starts with the painting's colours in place (under --preserve-colors, grey: only
    brightness and contrast move). A near-grey photo's faint chroma noise is scaled up with it."""
    pixels = content.reshape(3, -1).double()
    centred = pixels - pixels.mean(1, keepdim=True)
    covariance = centred @ centred.T / pixels.shape[1]
    target = _matrix_power(palette.covariance.to(pixels), 0.5)
    transfer = target @ _matrix_power(covariance, -0.5)
    moved = transfer @ centred + palette.mean.to(pixels)[:, None]
    return moved.reshape(content.shape).to(content.dtype).clamp(0, 1)
