"""The optimizer loop: pixels of the image optimized with L-BFGS (or Adam) against Gatys losses."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import color
from pipeline.device import announce_precision, keep_freed_memory, resolve_device, resolve_precision
from pipeline.errors import InputError
from pipeline.image_io import load_rgb
from pipeline.losses import ContentLoss, StyleLoss, TVLoss, gram_matrix
from pipeline.settings import StyleSettings, check_style_count
from pipeline.vgg import VGGFeatures, smallest_input_side
from pipeline.weights import VGGWeights, load_weights


@dataclass
class Progress:
    """What the loop reports after each function evaluation."""

    scale: int  # 1-based index into the coarse-to-fine ladder
    scales: int
    iteration: int
    iterations: int
    evaluations: int
    losses: dict[str, float]  # weighted parts and "total"
    seconds: float
    image: torch.Tensor = field(repr=False)  # the current pixels (not a copy)


@dataclass
class Result:
    image: torch.Tensor  # 1 x 3 x H x W, float32 in [0, 1], on the CPU
    losses: dict[str, float]  # weighted parts and "total", of the returned image
    iterations: int
    evaluations: int
    seconds: float


ProgressCallback = Callable[[Progress], None]
ExtraLoss = tuple[float, nn.Module]  # (weight, module taking the image)


def smallest_side(settings: StyleSettings) -> int:
    """The smallest side an image may have at the settings' layers (16 px when conv5_1 is in use)."""
    return smallest_input_side([settings.content_layer, *settings.style_layers])


def check_size(height: int, width: int, settings: StyleSettings, source: Path | None = None) -> None:
    """Refuse an image the network cannot see, naming `source` when the caller knows the file."""
    side = smallest_side(settings)
    if min(height, width) < side:
        prefix = f"{source}: " if source is not None else ""
        raise InputError(f"{prefix}{width}x{height} px is too small to stylize: VGG-19 needs {side} px or more a side at these layers (raise --size)")


class _Stop(Exception):
    """Raised inside the closure to leave L-BFGS early (converged, or diverged)."""


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


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


class Stylizer:
    """VGG-19 and style targets, set up once, then used for any number of images or frames."""

    def __init__(self, settings: StyleSettings, styles: Sequence[torch.Tensor], weights: VGGWeights | str | None = None):
        check_style_count(settings, len(styles))  # the rest StyleSettings checked when it was built
        blend = settings.style_blend or tuple(1.0 for _ in styles)
        layer_weights = settings.style_layer_weights or tuple(1.0 for _ in settings.style_layers)
        self.settings = settings
        keep_freed_memory()
        self.device = resolve_device(settings.device)
        weights = weights if isinstance(weights, VGGWeights) else load_weights(weights)
        self.precision = resolve_precision(settings.precision, self.device)
        announce_precision(self.precision)  # after the weights: a bad weights file stays a one-line error
        self.dtype = self.precision.dtype
        layers = [settings.content_layer, *settings.style_layers]
        self.vgg = VGGFeatures(weights, layers, settings.pooling, self.dtype).to(self.device, memory_format=torch.channels_last)
        self.styles = [color.luminance(s) if settings.preserve_colors else s for s in styles]
        self.blend = [b / sum(blend) for b in blend]
        self.layer_weights = dict(zip(settings.style_layers, (w / sum(layer_weights) for w in layer_weights)))
        self._gram_cache: dict[int, dict[str, torch.Tensor]] = {}

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vgg(image.to(self.device).contiguous(memory_format=torch.channels_last))

    def style_grams(self, long_side: int) -> dict[str, torch.Tensor]:
        """Blended Gram targets for an output of this long side; computed once per size."""
        if long_side not in self._gram_cache:
            grams: dict[str, torch.Tensor] = {}
            target_side = max(16, round(long_side * self.settings.style_scale))
            for style, weight in zip(self.styles, self.blend):
                # a wide style at a small size would otherwise leave the deepest layer no pixel
                scale = max(target_side / max(style.shape[-2:]), smallest_side(self.settings) / min(style.shape[-2:]))
                size = (round(style.shape[-2] * scale), round(style.shape[-1] * scale))
                with torch.no_grad():
                    feats = self.features(resize_image(style, size))
                for layer in self.settings.style_layers:
                    grams[layer] = grams.get(layer, 0) + weight * gram_matrix(feats[layer])
            self._gram_cache[long_side] = grams  # a few MB a size; a ladder has at most a few
        return self._gram_cache[long_side]

    def loss_terms(self, content: torch.Tensor) -> list[tuple[str, float, str | None, nn.Module]]:
        """(name, weight, VGG layer or None for pixel losses, module) for one content image."""
        s = self.settings
        with torch.no_grad():
            target = self.features(content)[s.content_layer]
        grams = self.style_grams(max(content.shape[-2:]))
        terms = [("content", s.content_weight, s.content_layer, ContentLoss(target))]
        for layer in s.style_layers:
            terms.append((f"style:{layer}", s.style_weight * self.layer_weights[layer], layer, StyleLoss(grams[layer])))
        if s.tv_weight:
            terms.append(("tv", s.tv_weight, None, TVLoss()))
        return terms

    def evaluate(self, image: torch.Tensor, content: torch.Tensor, extra_losses: Sequence = ()) -> dict[str, float]:
        """Weighted losses of `image` against `content` and the styles, without optimizing."""
        content, image = self._prepare(content), self._prepare(image)
        terms = self.loss_terms(content)
        with torch.no_grad():
            return _summarize(self._losses(image, terms, extra_losses))

    def stylize(
        self,
        content: torch.Tensor,
        init: torch.Tensor | None = None,
        extra_losses: Sequence[tuple[str, float, nn.Module]] = (),
        iterations: int | None = None,
        callback: ProgressCallback | None = None,
        patience: int | None = None,
        scales: int | None = None,
    ) -> Result:
        """Stylize a 1 x 3 x H x W content image in [0, 1] at its own size.

        `init` (same size) starts the optimization there instead of the settings' init, and
        skips coarse-to-fine: a warm start is already close. `extra_losses` are
        (name, weight, module) terms on the image itself, such as a temporal loss. `iterations`
        and `patience` override the settings' budget and early-stop window for this call, `scales`
        the settings' coarse-to-fine ladder (up to that many sizes, each half the next, as small as
        the network allows; `iterations` at each).
        """
        s = self.settings
        iterations = s.iterations if iterations is None else iterations
        patience = s.patience if patience is None else patience
        check_size(*content.shape[-2:], s)
        original = content
        content = self._prepare(color.luminance(content) if s.preserve_colors else content)
        if init is not None:
            ladder = [tuple(content.shape[-2:])]
        elif scales is not None:
            ladder = halving_ladder(*content.shape[-2:], scales, smallest_side(s))
        else:
            ladder = scale_ladder(*content.shape[-2:], s)
        image = self._prepare(init) if init is not None else self._initial_image(content, ladder[0])
        start, total_iters, total_evals = time.perf_counter(), 0, 0
        for index, size in enumerate(ladder, start=1):
            scaled = resize_image(content, size)
            image = resize_image(image, size)
            extras = extra_losses if size == ladder[-1] else ()
            image, used_iters, used_evals, losses = self._optimize(
                image, scaled, extras, iterations, patience, (index, len(ladder)), start, callback)
            total_iters += used_iters
            total_evals += used_evals
        if not losses:  # no evaluation ran (a budget of 0 iterations)
            losses = self.evaluate(image, content, extra_losses)
        image = image.detach().clamp(0, 1).cpu()
        if s.preserve_colors:
            image = color.with_chroma_of(image, original)
        return Result(image, losses, total_iters, total_evals, time.perf_counter() - start)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        # contiguous: L-BFGS flattens the gradient with view(), which other layouts refuse
        return image.detach().to(self.device, torch.float32).contiguous()

    def _initial_image(self, content: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        init = self.settings.init
        if init == "content":
            return content.clone()
        if init == "noise":
            generator = torch.Generator().manual_seed(self.settings.seed)
            return torch.rand(content.shape, generator=generator).to(self.device)
        return resize_image(load_rgb(Path(init)).to(self.device), size)

    def _losses(self, image, terms, extra_losses) -> dict[str, torch.Tensor]:
        feats = self.features(image)
        parts: dict[str, torch.Tensor] = {}
        for name, weight, layer, module in terms:
            parts[name] = weight * module(feats[layer] if layer else image)
        for name, weight, module in extra_losses:
            parts[name] = weight * module(image)
        return parts

    def _optimize(self, image, content, extra_losses, iterations, patience, scale, start, callback):
        """Run one scale; return the best image seen, its losses, and the iterations and evaluations used."""
        s = self.settings
        terms = self.loss_terms(content)
        for *_, module in terms:
            module.to(self.device)
        for _, _, module in extra_losses:
            module.to(self.device)
        image = image.clone().requires_grad_(True)
        if s.optimizer == "lbfgs":
            optimizer = torch.optim.LBFGS(
                [image], lr=1.0, max_iter=max(1, iterations), max_eval=max(1, iterations) * 5 // 4,
                tolerance_grad=0.0, tolerance_change=0.0, history_size=100, line_search_fn="strong_wolfe",
            )
        else:  # "adam": StyleSettings refuses any other name
            optimizer = torch.optim.Adam([image], lr=s.learning_rate)
        best = {"loss": math.inf, "image": image.detach().clone(), "losses": {}}
        history: list[float] = []
        iteration_best: list[float] = []  # best loss when each iteration's first evaluation ended
        torch.manual_seed(s.seed)

        def iteration() -> int:
            if s.optimizer == "lbfgs":
                return optimizer.state[image].get("n_iter", 0) if image in optimizer.state else 0
            return len(history)

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            parts = self._losses(image, terms, extra_losses)
            loss = sum(parts.values())
            loss.backward()
            value = loss.item()
            history.append(value)
            losses = _summarize(parts)
            if value < best["loss"]:
                best.update(loss=value, image=image.detach().clone(), losses=losses)
            current = iteration()
            while len(iteration_best) <= current:
                iteration_best.append(best["loss"])
            if callback:
                callback(Progress(*scale, current, iterations, len(history), losses, time.perf_counter() - start, image.detach()))
            if not math.isfinite(value) or self._converged(iteration_best, best["loss"], patience):
                raise _Stop
            return loss

        with contextlib.suppress(_Stop):
            if iterations <= 0:
                pass
            elif s.optimizer == "lbfgs":
                optimizer.step(closure)
            else:
                for _ in range(iterations):
                    closure()
                    optimizer.step()
        return best["image"], iteration(), len(history), best["losses"]

    def _converged(self, iteration_best: list[float], now: float, patience: int) -> bool:
        """True when the best loss improved by less than `tolerance` (relative) over the last `patience`
        iterations. Counted in iterations, not evaluations: the first L-BFGS line search may take
        several small evaluations before the optimizer has any curvature to go on."""
        tolerance = self.settings.tolerance
        if tolerance <= 0 or len(iteration_best) <= patience:
            return False
        return (iteration_best[-1 - patience] - now) <= tolerance * abs(now)


def _summarize(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {name: value.item() for name, value in parts.items()}
    out["style"] = sum(v for k, v in out.items() if k.startswith("style:"))
    out["total"] = sum(v for k, v in out.items() if k != "style")
    return out
