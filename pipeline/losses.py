"""The losses of Gatys et al., as the talk states them, each a small module that keeps its target.

Every module returns its loss divided by the loss of an all-zero feature map (the target's own
energy), so weights mean the same at any size and for either weights' input scale.
"""

from __future__ import annotations

import torch
from torch import nn


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F F^T / M for features of shape (1, N, H, W), M = H*W; computed in fp32.

    Dividing by M lets a style image of another size supply the target; the talk's
    E_l = 1/(4 N^2 M^2) sum (G - A)^2 on unnormalized Grams equals 1/(4 N^2) sum (G - A)^2 here.
    """
    _, channels, height, width = features.shape
    flat = features.float().reshape(channels, height * width)
    return flat @ flat.T / (height * width)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_content = 1/2 sum (F - P)^2."""
    return 0.5 * (features.float() - target.float()).pow(2).sum()


def style_layer_loss(gram: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2, with G and A already divided by M."""
    channels = gram.shape[0]
    return (gram - target_gram).pow(2).sum() / (4 * channels**2)


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target.detach().float())
        self.zero_loss = content_loss(torch.zeros_like(self.target), self.target).clamp_min(1e-12).item()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_loss(features, self.target) / self.zero_loss


class StyleLoss(nn.Module):
    """One layer's Gram target (blended over several style images by the caller)."""

    def __init__(self, target_gram: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target_gram.detach().float())
        self.zero_loss = style_layer_loss(torch.zeros_like(self.target), self.target).clamp_min(1e-12).item()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return style_layer_loss(gram_matrix(features), self.target) / self.zero_loss


class TVLoss(nn.Module):
    """Total variation: mean squared difference of neighbouring pixels; smooths high-frequency noise."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        return dx.pow(2).mean() + dy.pow(2).mean()


class TemporalLoss(nn.Module):
    """Ruder et al.: mean(c * (x - warped_prev)^2), c the flow's consistency mask in [0, 1]."""

    def __init__(self, warped_previous: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("target", warped_previous.detach().float())
        self.register_buffer("mask", mask.detach().float())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.mask * (image.float() - self.target).pow(2)).mean()
