"""The sizes one stylization runs at (coarse-to-fine, halving) and each size's budget."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.errors import InputError
from pipeline.settings import StyleSettings
from pipeline.vgg import smallest_input_side


def smallest_side(settings: StyleSettings) -> int:
    """The smallest side an image may have at the settings' layers (16 px when conv5_1 is in
    use)."""
    return smallest_input_side([settings.content_layer, *settings.style_layers])


def check_size(
    height: int, width: int, settings: StyleSettings, source: Path | None = None
) -> None:
    """Refuse an image the network cannot see, naming `source` when the caller knows the file."""
    side = smallest_side(settings)
    if min(height, width) < side:
        prefix = f"{source}: " if source is not None else ""
        raise InputError(
            f"{prefix}{width}x{height} px is too small to stylize: VGG-19 needs {side} px or more "
            "a side at these layers (raise --size)"
        )


def scale_ladder(height: int, width: int, settings: StyleSettings) -> list[tuple[int, int]]:
    """Sizes (h, w) from coarsest to the full size; a single entry when coarse-to-fine is off."""
    long_side = max(height, width)
    enabled = settings.coarse_to_fine
    if enabled is None:
        enabled = long_side > settings.coarse_threshold
    count, side = 1, long_side
    while enabled and side / 2 >= settings.coarse_min_size:
        count, side = count + 1, round(side / 2)
    return halving_ladder(height, width, count, smallest_side(settings))


def halving_ladder(height: int, width: int, count: int, min_side: int) -> list[tuple[int, int]]:
    """Up to `count` sizes, each half the next, ending at (height, width); none with a side under
    `min_side`, where the network's deepest layer would have no pixel left."""
    ladder = [(height, width)]
    while len(ladder) < count and round(min(ladder[0]) / 2) >= min_side:
        h, w = ladder[0]
        ladder.insert(0, (round(h / 2), round(w / 2)))
    return ladder


# a carried start makes 10 count (make bench-print: 1024 px, total loss 51.5 -> 21.2)
MIN_RUNG_EVALUATIONS = 10


def rung_budget(
    size: tuple[int, int], iterations: int, settings: StyleSettings, ladder: list[tuple[int, int]]
) -> tuple[int, int]:
    """A scale's (iterations, evaluations). Up to coarse_threshold (512 px), and for the first
    scale, `iterations` with evaluations capped at 1.25x (a line search can take several an
    iteration). A larger scale of a ladder costs more an evaluation and needs fewer (the strokes are
    set at the coarse scales): it gets iterations x (threshold/side)^2 evaluations, at least 10,
    which keeps each scale's time about equal; counted in evaluations because its first line search
    after the resize takes several, and an evaluation is what costs minutes there."""
    side = max(size)
    if (
        len(ladder) == 1
        or size == ladder[0]
        or side <= settings.coarse_threshold
        or iterations == 0
    ):
        return iterations, max(1, iterations) * 5 // 4
    evaluations = max(
        min(MIN_RUNG_EVALUATIONS, iterations),
        round(iterations * (settings.coarse_threshold / side) ** 2),
    )
    return evaluations, evaluations


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(
        image, size=size, mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)
