"""Luminance-only transfer (Gatys et al., "Preserving colour in neural artistic style transfer")."""

from __future__ import annotations

import torch

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
