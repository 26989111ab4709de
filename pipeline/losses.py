"""The losses of Gatys et al., as the talk states them, each a small module that keeps its target.

Every module returns its loss divided by the loss of an all-zero feature map (the target's own
energy), so weights mean the same at any size and for either weights' input scale.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable


_PRECISION_SWITCH = threading.Lock()  # the switch is process-wide: one Gram at a time may hold it


@contextlib.contextmanager
def bf16_input_matmul(features: torch.Tensor) -> Iterator[None]:
    """Let fp32 matmuls on the CPU take their inputs in bf16 when the features already are bf16.

    Such inputs are exact in bf16, and the products still accumulate and land in fp32, so the
    Gram matrix is the fp32 one; on CPUs with AMX this runs about 3x faster than the fp32 path
    (torch has no bf16-in/fp32-out matmul of its own on the CPU). CUDA keeps plain fp32 (untested
    there, and the GPU's fp32 Gram is cheap next to its convolutions); so does torch before 2.9,
    which lacks the switch.
    """
    backend = getattr(torch.backends.mkldnn, "matmul", None)
    if (
        features.dtype != torch.bfloat16
        or features.device.type != "cpu"
        or not hasattr(backend, "fp32_precision")
    ):
        yield
        return
    with _PRECISION_SWITCH:
        previous = backend.fp32_precision
        backend.fp32_precision = "bf16"
        try:
            yield
        finally:
            backend.fp32_precision = previous


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F F^T / M for features of shape (1, N, H, W), M = H*W; accumulated and returned in fp32.

    Dividing by M lets a style image of another size supply the target; the talk's
    E_l = 1/(4 N^2 M^2) sum (G - A)^2 on unnormalized Grams equals 1/(4 N^2) sum (G - A)^2 here.
    """
    _, channels, height, width = features.shape
    flat = features.float().reshape(channels, height * width)
    with bf16_input_matmul(features):
        return flat @ flat.T / (height * width)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_content = 1/2 sum (F - P)^2."""
    difference = features.float() - target.float()
    # measured 4x faster than mse_loss (and than pow) here
    return 0.5 * (difference * difference).sum()


def style_layer_loss(gram: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2, with G and A already divided by M."""
    channels = gram.shape[0]
    return (gram - target_gram).pow(2).sum() / (4 * channels**2)


class _GramStyleLoss(torch.autograd.Function):
    """style_layer_loss(gram_matrix(F), A) with a one-matmul backward.

    Autograd would differentiate F F^T with two matmuls and an add; the gradient is
    F^T (D + D^T) / (2 N^2 M), D = G - A, in a single one, computed in the features' own dtype
    and channels-last layout, so no fp32 copy of the largest activations is made on the way back.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        gram = gram_matrix(features)
        ctx.save_for_backward(features, gram - target)
        return style_layer_loss(gram, target)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        features, difference = ctx.saved_tensors
        return gram_loss_gradient(
            features, difference, features.shape[-2] * features.shape[-1], grad_output
        ), None


class _StyleGradient(torch.autograd.Function):
    """Carries the gradient of a whole image's style loss into one tile's features.

    The whole image's Gram is the sum of its tiles' (each divided by the whole image's M), so
    the gradient at a tile's features is F_tile^T (D + D^T) / (2 N^2 M) with D = G_whole - A,
    known once every tile's Gram is summed. Its value is 0: the loss itself was added up then.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, difference: torch.Tensor, pixels: int) -> torch.Tensor:
        ctx.save_for_backward(features, difference)
        ctx.pixels = pixels
        return features.new_zeros((), dtype=torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        features, difference = ctx.saved_tensors
        return gram_loss_gradient(features, difference, ctx.pixels, grad_output), None, None


def gram_loss_gradient(
    features: torch.Tensor, difference: torch.Tensor, pixels: int, grad_output: torch.Tensor
) -> torch.Tensor:
    """d style_layer_loss / d features = F^T (D + D^T) / (2 N^2 M), M = `pixels` of the whole
    image."""
    _, channels, height, width = features.shape
    scale = grad_output / (2 * channels**2 * pixels)
    # A is a Gram (or a blend of them), symmetric but for rounding
    symmetric = difference + difference.T
    # (M, N) = F^T (D + D^T): contiguous in channels-last order, which is how VGG's activations lie
    pixels_by_channel = features.permute(0, 2, 3, 1).reshape(height * width, channels)
    grad = pixels_by_channel @ (symmetric * scale).to(features.dtype)
    return grad.reshape(1, height, width, channels).permute(0, 3, 1, 2)


def partial_gram(features: torch.Tensor, pixels: int) -> torch.Tensor:
    """A tile's share of the whole image's Gram matrix: F F^T divided by the whole image's M."""
    _, channels, height, width = features.shape
    return gram_matrix(features) * (height * width / pixels)


class Term(nn.Module):
    """One weighted loss term: the one shape of every loss (content, each style layer, TV,
    temporal).

    `layer` names the VGG activation the loss reads, None the image's own pixels; `group` adds
    terms up in reports ("style" is the sum of the style layers). A new loss is one more Term.
    """

    def __init__(
        self,
        name: str,
        loss: nn.Module,
        weight: float,
        layer: str | None = None,
        group: str | None = None,
    ):
        super().__init__()
        self.name, self.loss, self.weight, self.layer, self.group = name, loss, weight, layer, group

    def forward(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * self.loss(features[self.layer] if self.layer else image)


def weighted_parts(
    terms: Sequence[Term], image: torch.Tensor, features: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Each term's weighted loss, by name, in the terms' order (their sum is the total loss)."""
    return {term.name: term(image, features) for term in terms}


def summarize(terms: Sequence[Term], parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """The parts as numbers, each group's sum, and "total"."""
    values = {
        name: value.item() if isinstance(value, torch.Tensor) else float(value)
        for name, value in parts.items()
    }
    total = sum(values.values())
    for group in dict.fromkeys(term.group for term in terms if term.group):
        values[group] = sum(values[term.name] for term in terms if term.group == group)
    values["total"] = total
    return values


class _Normalized(nn.Module):
    """A loss against a target, divided by its value for an all-zero feature map: a dimensionless
    relative error, so that one pair of weights works at any size and with either weights."""

    def __init__(
        self, target: torch.Tensor, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ):
        super().__init__()
        self.register_buffer("target", target.detach().float())
        self.zero_loss = loss(torch.zeros_like(self.target), self.target).clamp_min(1e-12).item()


class ContentLoss(_Normalized):
    def __init__(self, target: torch.Tensor):
        super().__init__(target, content_loss)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_loss(features, self.target) / self.zero_loss

    def of_tile(self, features: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
        """A tile's share of the loss: its features against the same crop of the target."""
        return content_loss(features, self.target[..., rows, cols]) / self.zero_loss


class StyleLoss(_Normalized):
    """One layer's Gram target (blended over several style images by the caller)."""

    def __init__(self, target_gram: torch.Tensor):
        super().__init__(target_gram, style_layer_loss)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return _GramStyleLoss.apply(features, self.target) / self.zero_loss

    def of_gram(self, gram: torch.Tensor) -> torch.Tensor:
        """The loss of a whole image whose Gram (summed over tiles) is `gram`."""
        return style_layer_loss(gram, self.target) / self.zero_loss

    def tile_gradient(
        self, features: torch.Tensor, gram: torch.Tensor, pixels: int
    ) -> torch.Tensor:
        """0, with the gradient of `of_gram(gram)` at this tile's features (see
        `_StyleGradient`)."""
        return _StyleGradient.apply(features, gram - self.target, pixels) / self.zero_loss


class TVLoss(nn.Module):
    """Total variation: mean squared difference of neighbouring pixels; smooths high-frequency
    noise."""

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
