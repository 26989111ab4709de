"""Loss and gradient of a large image evaluated tile by tile, so that only one tile's activations
live at once; equal to the whole image's evaluation (up to rounding).

Each tile owns a core and is fed to VGG with a halo wide enough that its features equal the whole
image's inside the core (`vgg.receptive_radius`), its edges on the grid of the deepest pooling so
that pooling windows line up. The content loss is local, a sum over cores. The style loss needs
the whole image's Gram matrices, the sums of the cores' Gram matrices: a first pass adds them up
without gradients, a second pass backpropagates each tile against the whole image's Grams.
Losses on the pixels themselves (TV, temporal) are cheap and run on the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pipeline.device import MemoryBudget, memory_budget
from pipeline.losses import ContentLoss, StyleLoss, Term, partial_gram
from pipeline.vgg import layer_stride, receptive_radius, smallest_input_side

Features = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Tile:
    """Rows and columns (pixel slices) of the core a tile owns and of the window VGG sees."""

    core: tuple[slice, slice]
    window: tuple[slice, slice]
    image: tuple[int, int]  # the whole image's height and width

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        return image[..., self.window[0], self.window[1]]

    def core_at(self, stride: int) -> tuple[slice, slice]:
        """The core in the feature coordinates of a layer of this stride, within the window's
        features; open-ended where the core reaches the image's far edge (pooling drops the
        remainder there)."""
        return tuple(
            slice(
                (c.start - w.start) // stride,
                None if c.stop == length else (c.stop - w.start) // stride,
            )
            for c, w, length in zip(self.core, self.window, self.image)
        )

    def core_in_image(self, stride: int) -> tuple[slice, slice]:
        """The core in the feature coordinates of the whole image at that stride."""
        return tuple(
            slice(c.start // stride, None if c.stop == length else c.stop // stride)
            for c, length in zip(self.core, self.image)
        )


def plan_tiles(height: int, width: int, core: int, layers: Sequence[str]) -> list[Tile]:
    """Cores of about `core` px a side (multiples of the deepest pooling grid), each with its
    halo."""
    grid, halo = smallest_input_side(layers), halo_of(layers)
    rows, cols = _bands(height, core, grid), _bands(width, core, grid)
    return [
        Tile((r, c), (_widen(r, halo, height), _widen(c, halo, width)), (height, width))
        for r in rows
        for c in cols
    ]


def halo_of(layers: Sequence[str]) -> int:
    """The margin a tile needs: the receptive radius, rounded up to the pooling grid."""
    grid = smallest_input_side(layers)
    return math.ceil(receptive_radius(layers) / grid) * grid


def _bands(length: int, core: int, grid: int) -> list[slice]:
    count = max(1, math.ceil(length / max(core, grid)))
    edges = [
        0,
        *(min(length, round(i * length / count / grid) * grid) for i in range(1, count)),
        length,
    ]
    return [slice(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _widen(band: slice, halo: int, length: int) -> slice:
    return slice(max(0, band.start - halo), min(length, band.stop + halo))


def evaluate_tiled(
    image: torch.Tensor,
    terms: Sequence[Term],
    features: Features,
    tiles: Sequence[Tile],
    on_tile: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Each term's weighted loss of the whole `image`, its gradient added to `image.grad`;
    `on_tile(done, total)` after each of the two passes' tiles."""
    height, width = image.shape[-2:]
    on_pixels = [t for t in terms if t.layer is None]
    on_layers = [t for t in terms if t.layer is not None]
    for term in on_layers:
        if not isinstance(term.loss, (ContentLoss, StyleLoss)):
            raise TypeError(
                f"{term.name}: a tiled evaluation knows content and style losses on VGG layers"
            )
    styles = [t for t in on_layers if isinstance(t.loss, StyleLoss)]
    report = on_tile or (lambda done, total: None)
    grams = whole_grams(image, [t.layer for t in styles], features, tiles, report)
    pixels = {layer: _pixels(height, width, layer) for layer in grams}
    values = {t.name: t.weight * t.loss.of_gram(grams[t.layer]).item() for t in styles}
    for done, tile in enumerate(tiles, start=len(tiles) + 1):
        for name, part in _backpropagate_tile(
            image, tile, on_layers, features, grams, pixels
        ).items():
            values[name] = values.get(name, 0.0) + part
        report(done, 2 * len(tiles))
    if on_pixels:
        parts = {t.name: t(image, {}) for t in on_pixels}
        sum(parts.values()).backward()
        values.update({name: value.item() for name, value in parts.items()})
    return {t.name: values[t.name] for t in terms}


def whole_grams(
    image: torch.Tensor,
    layers: Sequence[str],
    features: Features,
    tiles: Sequence[Tile],
    report: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Pass 1: the whole image's Gram matrix at each layer, added up over the cores, without
    gradients."""
    height, width = image.shape[-2:]
    grams: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for done, tile in enumerate(tiles, start=1):
            feats = features(tile.crop(image))
            for layer in layers:
                rows, cols = tile.core_at(layer_stride(layer))
                share = partial_gram(feats[layer][..., rows, cols], _pixels(height, width, layer))
                grams[layer] = grams[layer] + share if layer in grams else share
            del feats
            if report:
                report(done, 2 * len(tiles))
    return grams


def _pixels(height: int, width: int, layer: str) -> int:
    """M of a layer's Gram matrix: its feature map's pixels for the whole image (pooling floors)."""
    stride = layer_stride(layer)
    return (height // stride) * (width // stride)


def _backpropagate_tile(
    image: torch.Tensor,
    tile: Tile,
    on_layers: Sequence[Term],
    features: Features,
    grams: dict[str, torch.Tensor],
    pixels: dict[str, int],
) -> dict[str, float]:
    """Pass 2, one tile: its features against the whole image's Grams (and its crop of the content
    target); the gradient lands in `image.grad`. Returns this tile's share of the content terms."""
    feats = features(tile.crop(image))
    surrogate = torch.zeros((), dtype=torch.float32, device=image.device)
    contents = {}
    for term in on_layers:
        stride = layer_stride(term.layer)
        rows, cols = tile.core_at(stride)
        core = feats[term.layer][..., rows, cols]
        if isinstance(term.loss, StyleLoss):
            surrogate = surrogate + term.weight * term.loss.tile_gradient(
                core, grams[term.layer], pixels[term.layer]
            )
        else:
            part = term.weight * term.loss.of_tile(core, *tile.core_in_image(stride))
            contents[term.name] = part.item()
            surrogate = surrogate + part
    surrogate.backward()
    return contents


def assemble_features(
    image: torch.Tensor, layer: str, features: Features, tiles: Sequence[Tile]
) -> torch.Tensor:
    """The whole image's activations at one layer, computed tile by tile (a content target)."""
    stride = layer_stride(layer)
    height, width = image.shape[-2:]
    whole = None
    with torch.no_grad():
        for tile in tiles:
            rows, cols = tile.core_at(stride)
            core = features(tile.crop(image))[layer][..., rows, cols]
            if whole is None:
                whole = core.new_empty((1, core.shape[1], height // stride, width // stride))
            rows, cols = tile.core_in_image(stride)
            whole[..., rows, cols] = core
    return whole


# Working memory of one evaluation, per input pixel, forward and backward through VGG-19 to
# conv5_1 (measured: docs/benchmarks.md, "Tiled evaluation"); fp32 RGB copies of the image that
# live beside it (the image, its gradient, the best so far, the content, its target's share, and
# L-BFGS's own vectors); the share of the budget L-BFGS's history may take.
ACTIVATION_BYTES = {
    torch.float32: 1800,
    torch.bfloat16: 1100,
}  # measured 1163-1520 and 758-876, plus a margin
IMAGE_COPIES = 14
HISTORY_SHARE = 0.3


@dataclass(frozen=True)
class MemoryPlan:
    tiles: list[Tile] | None  # None: the whole image at once
    history: int  # L-BFGS history pairs


def plan_memory(
    height: int,
    width: int,
    budget: MemoryBudget,
    layers: Sequence[str],
    dtype: torch.dtype,
    history: int = 100,
) -> MemoryPlan:
    """Untiled when the image fits the budget's work bytes; else tiles as large as fit. The L-BFGS
    history shrinks first where a whole image's pairs would not fit (a 12 MP image: 290 MB a
    pair). Where even the smallest tiles do not fit, the error names the bound that would do."""
    image_bytes = 12 * height * width
    pairs = int(max(2, min(history, HISTORY_SHARE * budget.work // (2 * image_bytes))))
    left = budget.work - (IMAGE_COPIES + 2 * pairs) * image_bytes
    per_pixel = ACTIVATION_BYTES.get(dtype, ACTIVATION_BYTES[torch.float32])
    if per_pixel * height * width <= left:
        return MemoryPlan(None, pairs)
    halo = halo_of(layers)
    core = math.isqrt(max(0, left // per_pixel)) - 2 * halo
    # smaller cores are mostly halo: a 32 px core evaluates a 224 px window, 49x its area
    if core < 2 * halo:
        needed = (IMAGE_COPIES + 4) * image_bytes + per_pixel * (4 * halo) ** 2
        raise budget.too_small(width, height, needed)
    return MemoryPlan(plan_tiles(height, width, core, layers), pairs)


class MemoryPlanner:
    """Plans images of any size within one memory budget (`device.memory_budget`)."""

    def __init__(
        self,
        max_memory: int | None,
        device: torch.device,
        layers: Sequence[str],
        dtype: torch.dtype,
    ):
        self.max_memory, self.device, self.layers, self.dtype = max_memory, device, layers, dtype
        self.budget = memory_budget(max_memory, device)

    def __call__(self, height: int, width: int) -> MemoryPlan:
        """Whole or in tiles, and how much L-BFGS history: what fits the budget."""
        return plan_memory(height, width, self.budget, self.layers, self.dtype)

    def check(self, height: int, width: int) -> MemoryPlan:
        """Before an image: under a CPU --max-memory, what the process holds now (more with each
        new image shape: compiled kernels) comes off the bound again, and the image's largest scale
        must fit, or the error names the bound that would."""
        if self.max_memory is not None and self.device.type == "cpu":
            self.budget = memory_budget(self.max_memory, self.device)
        return self(height, width)
