"""The styles' Gram-matrix targets: blended over the style images, per output size, kept for the
last few sizes used."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

from pipeline.ladder import resize_image, smallest_side
from pipeline.losses import gram_matrix
from pipeline.settings import StyleSettings
from pipeline.tiles import MemoryPlan, whole_grams

GRAM_CACHE_SIZES = 8  # style targets kept for this many output sizes (the last used)

Features = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class StyleTargets:
    """Blended Gram targets of `styles` (each weighted by `blend`, summing to 1) at the style
    layers, for an output of a given long side."""

    def __init__(
        self,
        settings: StyleSettings,
        styles: Sequence[torch.Tensor],
        blend: Sequence[float],
        features: Features,
        memory_plan: Callable[[int, int], MemoryPlan],
        device: torch.device,
    ):
        self.settings, self.styles, self.blend = settings, list(styles), list(blend)
        self.features, self.memory_plan, self.device = features, memory_plan, device
        self._cache: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()

    def __call__(self, long_side: int) -> dict[str, torch.Tensor]:
        """The targets for an output of this long side; computed once per size."""
        if long_side in self._cache:
            self._cache.move_to_end(long_side)
            return self._cache[long_side]
        grams: dict[str, torch.Tensor] = {}
        target_side = max(16, round(long_side * self.settings.style_scale))
        for style, weight in zip(self.styles, self.blend):
            # a wide style at a small size would otherwise leave the deepest layer no pixel
            scale = max(
                target_side / max(style.shape[-2:]),
                smallest_side(self.settings) / min(style.shape[-2:]),
            )
            size = (round(style.shape[-2] * scale), round(style.shape[-1] * scale))
            for layer, gram in self._grams(resize_image(style, size)).items():
                grams[layer] = grams.get(layer, 0) + weight * gram
        # a few MB a size; a ladder has a few, a --size full folder many
        self._cache[long_side] = grams
        if len(self._cache) > GRAM_CACHE_SIZES:
            self._cache.popitem(last=False)
        return grams

    def _grams(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gram matrices of an image at the style layers (in tiles where its activations do not
        fit)."""
        layers = self.settings.style_layers
        tiles = self.memory_plan(*image.shape[-2:]).tiles
        if tiles is not None:
            return whole_grams(image.to(self.device), layers, self.features, tiles)
        with torch.no_grad():
            feats = self.features(image)
            return {layer: gram_matrix(feats[layer]) for layer in layers}
