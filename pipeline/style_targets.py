"""The styles' Gram-matrix targets: blended over the style images, per output size, kept for the
last few sizes used, and in the user cache between runs (keyed by the styles' pixels, the
settings that shape the targets, the network and the machine's arithmetic)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

from pipeline.ladder import resize_image, smallest_side
from pipeline.losses import gram_matrix
from pipeline.settings import StyleSettings
from pipeline.tiles import MemoryPlan, whole_grams
from pipeline.user_cache import GRAM_ENTRIES, load_tensors, save_tensors

GRAM_CACHE_SIZES = 8  # style targets kept for this many output sizes (the last used)
# part of every user-cache key: raise it when what a target holds or how it is computed changes
GRAM_FORMAT = 1

Features = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class StyleTargets:
    """Blended Gram targets of `styles` (each weighted by `blend`, summing to 1) at the style
    layers, for an output of a given long side. `network`: names the network and the machine's
    arithmetic for the user cache (None: computed in every process)."""

    def __init__(
        self,
        settings: StyleSettings,
        styles: Sequence[torch.Tensor],
        blend: Sequence[float],
        features: Features,
        memory_plan: Callable[[int, int], MemoryPlan],
        device: torch.device,
        network: str | None = None,
    ):
        self.settings, self.styles, self.blend = settings, list(styles), list(blend)
        self.features, self.memory_plan, self.device = features, memory_plan, device
        self._cache: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self._digest = (
            styles_digest(settings, self.styles, self.blend, network) if network else None
        )

    def __call__(self, long_side: int) -> dict[str, torch.Tensor]:
        """The targets for an output of this long side; computed once per size."""
        if long_side in self._cache:
            self._cache.move_to_end(long_side)
            return self._cache[long_side]
        sized = [
            (self._sized(style, long_side), weight)
            for style, weight in zip(self.styles, self.blend)
        ]
        key = self._key(sized)
        grams = load_tensors("grams", key) if key else None
        if grams is None:
            grams = {}
            for image, weight in sized:
                for layer, gram in self._grams(image).items():
                    grams[layer] = grams.get(layer, 0) + weight * gram
            if key:
                save_tensors("grams", key, grams, GRAM_ENTRIES)
        grams = {layer: gram.to(self.device) for layer, gram in grams.items()}
        # a few MB a size; a ladder has a few, a --size full folder many
        self._cache[long_side] = grams
        if len(self._cache) > GRAM_CACHE_SIZES:
            self._cache.popitem(last=False)
        return grams

    def _sized(self, style: torch.Tensor, long_side: int) -> torch.Tensor:
        """The style image at the size whose Grams serve an output of this long side."""
        target_side = max(16, round(long_side * self.settings.style_scale))
        # a wide style at a small size would otherwise leave the deepest layer no pixel
        scale = max(
            target_side / max(style.shape[-2:]),
            smallest_side(self.settings) / min(style.shape[-2:]),
        )
        return resize_image(style, (round(style.shape[-2] * scale), round(style.shape[-1] * scale)))

    def _key(self, sized: list[tuple[torch.Tensor, float]]) -> str | None:
        """The user cache's name for these targets: the styles and settings, each style's size
        and its tiles, if any (tiles round differently)."""
        if self._digest is None:
            return None
        shapes = [
            (tuple(image.shape[-2:]), self.memory_plan(*image.shape[-2:]).tiles)
            for image, _ in sized
        ]
        return hashlib.sha256(f"{GRAM_FORMAT} {self._digest} {shapes}".encode()).hexdigest()[:32]

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


def styles_digest(
    settings: StyleSettings, styles: Sequence[torch.Tensor], blend: Sequence[float], network: str
) -> str:
    """What every target of these styles depends on but the output's size: the styles' pixels,
    their blend, the style layers and the network."""
    digest = hashlib.sha256(f"{network} {settings.style_layers} {list(blend)}".encode())
    for style in styles:
        digest.update(str(tuple(style.shape)).encode())
        digest.update(style.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
