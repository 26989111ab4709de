"""The optimizer loop: pixels of the image optimized with L-BFGS (or Adam) against Gatys losses."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline import color
from pipeline.device import (
    announce_precision,
    keep_freed_memory,
    memory_budget,
    resolve_device,
    resolve_precision,
)
from pipeline.errors import InputError, SettingsError
from pipeline.image_io import load_rgb
from pipeline.losses import (
    ContentLoss,
    StyleLoss,
    Term,
    TVLoss,
    gram_matrix,
    summarize,
    weighted_parts,
)
from pipeline.settings import StyleSettings, check_style_count
from pipeline.tiles import MemoryPlan, assemble_features, evaluate_tiled, plan_memory, whole_grams
from pipeline.vgg import shared_features, smallest_input_side
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
    # the whole call's budget spent so far (iterations; evaluations at scales above
    # coarse_threshold)
    done: int = 0
    # the whole call's budget, every scale's summed (scales above coarse_threshold get fewer)
    budget: int = 0
    tile: tuple[int, int] | None = None  # (tiles done, tiles) inside a tiled evaluation


@dataclass
class Curvature:
    """What L-BFGS learnt of the loss's curvature by the end of a run, so that the next run (the
    next scale, the next video frame) starts well scaled instead of with a tiny first step and a
    line search that spends several evaluations finding the scale: its inverse-Hessian scale, and
    its last history pairs (used only at the same image size)."""

    scale: float
    size: tuple[int, int]
    steps: list[torch.Tensor] = field(default_factory=list, repr=False)  # s_k = x_k+1 - x_k, flat
    changes: list[torch.Tensor] = field(default_factory=list, repr=False)  # y_k = g_k+1 - g_k


@dataclass
class Result:
    image: torch.Tensor  # 1 x 3 x H x W, float32 in [0, 1], on the CPU
    losses: dict[str, float]  # weighted parts and "total", of the returned image
    iterations: int
    evaluations: int
    seconds: float
    curvature: Curvature | None = field(default=None, repr=False)  # of the last scale (L-BFGS only)


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Hold:
    """Pixels a warm start keeps: the image seen is weight * image + (1 - weight) * the optimized
    pixels, so a held pixel (weight 1) gets no gradient and L-BFGS does not move it, without a stiff
    loss term that would slow the optimization of the rest."""

    image: torch.Tensor  # 1 x 3 x H x W
    weight: torch.Tensor  # 1 x 1 x H x W, in [0, 1]

    def to(self, device: torch.device) -> Hold:
        return Hold(self.image.to(device, torch.float32), self.weight.to(device, torch.float32))

    def seen(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image the losses see, as a leaf of its own whose gradient `pass_back` hands on."""
        return (self.weight * self.image + (1 - self.weight) * pixels.detach()).requires_grad_(True)

    def pass_back(self, seen: torch.Tensor, pixels: torch.Tensor) -> None:
        pixels.grad = seen.grad * (1 - self.weight)


@dataclass(frozen=True)
class Plan:
    """How one `stylize` call runs where it differs from the settings: from where, at how many
    sizes, for how long, with which extra loss terms (such as a temporal loss)."""

    # a warm start of the content's size: one scale
    init: torch.Tensor | None = field(default=None, repr=False)
    # a halving ladder of up to this many sizes instead of the settings' ladder
    scales: int | None = None
    iterations: int | None = None  # per scale (None: the settings')
    evaluations: int | None = None  # loss evaluations per scale at most (None: as rung_budget says)
    patience: int | None = None  # early-stop window in iterations (None: the settings')
    extra_terms: tuple[Term, ...] = ()  # at the final size only
    # L-BFGS starts from it (the first scale)
    curvature: Curvature | None = field(default=None, repr=False)
    # pixels kept as they are (a warm start: one scale)
    hold: Hold | None = field(default=None, repr=False)
    # A scale above coarse_threshold starts L-BFGS from the curvature the scale below ended with:
    # with a budget of a few evaluations, a cold start spends them finding its step length (make
    # bench-print). Scales up to the threshold start cold: with a full iteration budget, finding it
    # costs them little. False: every scale starts cold (the benchmark's and a test's comparison).
    carry_between_scales: bool = True

    def __post_init__(self) -> None:
        if self.init is not None and self.scales is not None:
            raise SettingsError(
                "a warm start runs at the content's own size: give init or scales, not both"
            )
        if self.hold is not None and self.init is None:
            raise SettingsError("held pixels need a warm start (init) of the content's size")


@dataclass(frozen=True)
class _Run:
    """What every scale of one stylize call shares."""

    iterations: int  # this scale's budget
    evaluations: int  # and its cap on loss evaluations
    patience: int
    scales: int
    start: float
    callback: ProgressCallback | None
    done_before: int = 0  # iterations budgeted to the scales before this one
    budget: int = 0  # all scales' budgets
    # `evaluations` is never exceeded, not even inside a line search (a plan's own budget)
    hard_cap: bool = False

    def exhausted(self, evaluations: int) -> bool:
        """A plan's own budget is spent: torch checks max_eval only between iterations, and a
        line search could run past it."""
        return self.hard_cap and evaluations >= self.evaluations


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


# a carried start makes 10 count (make bench-print: 1024 px, total loss 51.5 -> 21.2)
MIN_RUNG_EVALUATIONS = 10
GRAM_CACHE_SIZES = 8  # style targets kept for this many output sizes (the last used)


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


SEEDED_ITERATIONS = 1  # a seeded L-BFGS state counts as one iteration done


def seed_curvature(
    optimizer: torch.optim.LBFGS, image: torch.Tensor, curvature: Curvature, history: int
) -> None:
    """Start `optimizer` as if it had run: its first direction uses the curvature's scale and, at
    the same size, its history pairs, and its first step length is 1 (torch's LBFGS state, as it
    keeps it). A zero last step adds no pair built from two different losses."""
    flat = image.numel()
    same_size = tuple(curvature.size) == tuple(image.shape[-2:]) and history > 0
    steps = [s.to(image.device) for s in curvature.steps[-history:]] if same_size else []
    changes = [y.to(image.device) for y in curvature.changes[-history:]] if same_size else []
    optimizer.state[image].update(
        func_evals=0,
        n_iter=SEEDED_ITERATIONS,
        d=image.new_zeros(flat),
        t=0.0,
        prev_flat_grad=image.new_zeros(flat),
        prev_loss=math.inf,
        old_stps=steps,
        old_dirs=changes,
        ro=[1.0 / y.dot(s) for s, y in zip(steps, changes)],
        H_diag=torch.tensor(curvature.scale, device=image.device),
    )


def read_curvature(
    optimizer: torch.optim.LBFGS, image: torch.Tensor, pairs: bool = True
) -> Curvature | None:
    """The curvature `optimizer` ended with; its history pairs (on the image's device) only if
    `pairs`. The scale is the newest pair's s.y / y.y, as torch would set it: a run left by an
    exception (a hard cap, an early stop) inside its step keeps the pairs it added but never stores
    their scale."""
    state = optimizer.state.get(image, {})
    if "H_diag" not in state:
        return None
    newest = list(zip(state["old_stps"], state["old_dirs"]))[-1:]
    scale = (
        float(newest[0][0].dot(newest[0][1]) / newest[0][1].dot(newest[0][1]))
        if newest
        else float(state["H_diag"])
    )
    steps, changes = (list(state["old_stps"]), list(state["old_dirs"])) if pairs else ([], [])
    return Curvature(scale, tuple(image.shape[-2:]), steps, changes)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(
        image, size=size, mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)


class Stylizer:
    """VGG-19 and style targets, set up once, then used for any number of images or frames."""

    def __init__(
        self,
        settings: StyleSettings,
        styles: Sequence[torch.Tensor],
        weights: VGGWeights | str | None = None,
    ):
        check_style_count(settings, len(styles))  # the rest StyleSettings checked when it was built
        blend = settings.style_blend or tuple(1.0 for _ in styles)
        layer_weights = settings.style_layer_weights or tuple(1.0 for _ in settings.style_layers)
        self.settings = settings
        keep_freed_memory()
        self.device = resolve_device(settings.device)
        weights = weights if isinstance(weights, VGGWeights) else load_weights(weights)
        self.precision = resolve_precision(settings.precision, self.device)
        # after the weights: a bad weights file stays a one-line error
        announce_precision(self.precision)
        self.dtype = self.precision.dtype
        if self.device.type == "cuda" and self.dtype == torch.float32:
            # fp32 means fp32: cuDNN's default TF32 convolutions (a 10-bit mantissa) make the tiled
            # and
            # the whole image's gradients differ by 2.5 %; without them, by 3e-7
            # (docs/benchmarks.md, "CUDA")
            torch.backends.cudnn.allow_tf32 = False
        self.layers = [settings.content_layer, *settings.style_layers]
        self.vgg = shared_features(weights, self.layers, settings.pooling, self.dtype, self.device)
        self.memory_budget = memory_budget(settings.max_memory, self.device)
        self.styles = [color.luminance(s) if settings.preserve_colors else s for s in styles]
        self.blend = [b / sum(blend) for b in blend]
        self.layer_weights = dict(
            zip(settings.style_layers, (w / sum(layer_weights) for w in layer_weights))
        )
        self._gram_cache: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vgg(image.to(self.device).contiguous(memory_format=torch.channels_last))

    def style_grams(self, long_side: int) -> dict[str, torch.Tensor]:
        """Blended Gram targets for an output of this long side; computed once per size."""
        if long_side in self._gram_cache:
            self._gram_cache.move_to_end(long_side)
        else:
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
            self._gram_cache[long_side] = grams
            if len(self._gram_cache) > GRAM_CACHE_SIZES:
                self._gram_cache.popitem(last=False)
        return self._gram_cache[long_side]

    def memory_plan(self, height: int, width: int) -> MemoryPlan:
        """Whole or in tiles, and how much L-BFGS history, so that an evaluation fits the memory
        budget."""
        return plan_memory(height, width, self.memory_budget, self.layers, self.dtype)

    def _grams(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gram matrices of an image at the style layers (in tiles where its activations do not
        fit)."""
        tiles = self.memory_plan(*image.shape[-2:]).tiles
        if tiles is not None:
            return whole_grams(
                image.to(self.device), self.settings.style_layers, self.features, tiles
            )
        with torch.no_grad():
            feats = self.features(image)
            return {layer: gram_matrix(feats[layer]) for layer in self.settings.style_layers}

    def loss_terms(self, content: torch.Tensor, memory: MemoryPlan | None = None) -> list[Term]:
        """The content, style and TV terms for one content image at its own size."""
        s = self.settings
        if memory is not None and memory.tiles is not None:
            target = assemble_features(content, s.content_layer, self.features, memory.tiles)
        else:
            with torch.no_grad():
                target = self.features(content)[s.content_layer]
        grams = self.style_grams(max(content.shape[-2:]))
        terms = [Term("content", ContentLoss(target), s.content_weight, s.content_layer)]
        for layer in s.style_layers:
            terms.append(
                Term(
                    f"style:{layer}",
                    StyleLoss(grams[layer]),
                    s.style_weight * self.layer_weights[layer],
                    layer,
                    "style",
                )
            )
        if s.tv_weight:
            terms.append(Term("tv", TVLoss(), s.tv_weight))
        return terms

    def evaluate(
        self, image: torch.Tensor, content: torch.Tensor, extra_terms: Sequence[Term] = ()
    ) -> dict[str, float]:
        """Weighted losses of `image` against `content` and the styles, without optimizing."""
        content, image = self._prepare(content), self._prepare(image)
        memory = self.memory_plan(*content.shape[-2:])
        terms = [*self.loss_terms(content, memory), *(term.to(self.device) for term in extra_terms)]
        if memory.tiles is not None:  # the tiled pass needs gradients; they are thrown away
            return summarize(
                terms,
                evaluate_tiled(image.requires_grad_(True), terms, self.features, memory.tiles),
            )
        with torch.no_grad():
            return summarize(terms, weighted_parts(terms, image, self.features(image)))

    def stylize(
        self, content: torch.Tensor, plan: Plan = Plan(), callback: ProgressCallback | None = None
    ) -> Result:
        """Stylize a 1 x 3 x H x W content image in [0, 1] at its own size, as `plan` says (default:
        the settings' init, coarse-to-fine ladder, budget and early stop)."""
        s = self.settings
        check_size(*content.shape[-2:], s)
        original = content
        content = self._prepare(color.luminance(content) if s.preserve_colors else content)
        ladder = self.ladder(content, plan)
        image = (
            self._prepare(plan.init)
            if plan.init is not None
            else self._initial_image(content, ladder[0])
        )
        iterations = s.iterations if plan.iterations is None else plan.iterations
        budgets = [rung_budget(size, iterations, s, ladder) for size in ladder]
        if plan.evaluations is not None:
            budgets = [(iters, plan.evaluations) for iters, _ in budgets]
        total_iters, total_evals, losses = 0, 0, {}
        start, curvature = time.perf_counter(), plan.curvature
        for index, size in enumerate(ladder, start=1):
            run = _Run(
                *budgets[index - 1],
                s.patience if plan.patience is None else plan.patience,
                len(ladder),
                start,
                callback,
                sum(iters for iters, _ in budgets[: index - 1]),
                sum(iters for iters, _ in budgets),
                hard_cap=plan.evaluations is not None,
            )
            extra = plan.extra_terms if size == ladder[-1] else ()
            memory = self.memory_plan(*size)
            hold = plan.hold.to(self.device) if plan.hold is not None else None
            terms = [
                *self.loss_terms(resize_image(content, size), memory),
                *(term.to(self.device) for term in extra),
            ]
            last = index == len(ladder)
            scale = self._optimize(
                resize_image(image, size),
                terms,
                run,
                index,
                memory,
                curvature,
                keep_pairs=last,
                hold=hold,
            )
            image, losses, curvature = scale.image, scale.losses or losses, scale.curvature
            total_iters += scale.iterations
            total_evals += scale.evaluations
            # the next scale's first step takes this one's scale (its pairs are of another size)
            if not last:
                carry = plan.carry_between_scales and max(ladder[index]) > s.coarse_threshold
                curvature = curvature if carry else None
        if not losses:  # no evaluation ran (a budget of 0 iterations)
            losses = self.evaluate(image, content, plan.extra_terms)
        image = image.detach().clamp(0, 1).cpu()
        if s.preserve_colors:
            image = color.with_chroma_of(image, original)
        return Result(
            image, losses, total_iters, total_evals, time.perf_counter() - start, curvature
        )

    def ladder(self, content: torch.Tensor, plan: Plan = Plan()) -> list[tuple[int, int]]:
        """The sizes one stylize call runs at: one for a warm start, else the plan's or the
        settings' ladder."""
        if plan.init is not None:
            return [tuple(content.shape[-2:])]
        if plan.scales is not None:
            return halving_ladder(*content.shape[-2:], plan.scales, smallest_side(self.settings))
        return scale_ladder(*content.shape[-2:], self.settings)

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

    def _optimizer(
        self,
        image: torch.Tensor,
        iterations: int,
        evaluations: int,
        history: int,
        curvature: Curvature | None,
    ) -> torch.optim.Optimizer:
        """One scale's optimizer, with the random state reset: the same settings give the same
        pixels."""
        torch.manual_seed(self.settings.seed)
        if self.settings.optimizer == "adam":
            return torch.optim.Adam([image], lr=self.settings.learning_rate)
        optimizer = torch.optim.LBFGS(
            [image],
            lr=1.0,
            max_iter=max(1, iterations),
            max_eval=max(1, evaluations),
            tolerance_grad=0.0,
            tolerance_change=0.0,
            history_size=history,
            line_search_fn="strong_wolfe",
        )
        if curvature is not None:
            seed_curvature(optimizer, image, curvature, history)
        return optimizer

    def _evaluate(
        self,
        image: torch.Tensor,
        terms: list[Term],
        memory: MemoryPlan,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> tuple[dict, float]:
        """Each term's weighted loss and the total; the gradient lands in `image.grad`."""
        if memory.tiles is not None:
            parts = evaluate_tiled(image, terms, self.features, memory.tiles, on_tile)
            return parts, sum(parts.values())
        parts = weighted_parts(terms, image, self.features(image))
        loss = sum(parts.values())
        loss.backward()
        return parts, loss.item()

    def _optimize(
        self,
        image: torch.Tensor,
        terms: list[Term],
        run: _Run,
        scale: int,
        memory: MemoryPlan,
        curvature: Curvature | None = None,
        keep_pairs: bool = True,
        hold: Hold | None = None,
    ) -> Result:
        """Run one scale: the best image seen and its losses, the iterations and evaluations
        used, the curvature learnt."""
        started, image = (
            time.perf_counter(),
            (hold.seen(image) if hold else image).detach().clone().requires_grad_(True),
        )
        optimizer = self._optimizer(
            image, run.iterations, run.evaluations, memory.history, curvature
        )
        lbfgs = isinstance(optimizer, torch.optim.LBFGS)
        seeded = SEEDED_ITERATIONS if lbfgs and curvature is not None else 0
        best = {"loss": math.inf, "image": image.detach().clone(), "losses": {}}
        history: list[float] = []
        iteration_best: list[float] = []  # best loss when each iteration's first evaluation ended
        last: dict[
            str, Progress
        ] = {}  # a tiled evaluation can take minutes: its tiles report on the last progress

        def on_tile(done: int, tiles: int) -> None:
            if run.callback and "progress" in last:
                run.callback(replace(last["progress"], tile=(done, tiles)))

        def iteration() -> int:
            return (
                optimizer.state[image].get("n_iter", 0) - seeded
                if lbfgs and image in optimizer.state
                else (0 if lbfgs else len(history))
            )

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            seen = hold.seen(image) if hold else image
            parts, value = self._evaluate(seen, terms, memory, on_tile)
            if hold:
                hold.pass_back(seen, image)
            history.append(value)
            losses = summarize(terms, parts)
            if value < best["loss"]:
                best.update(loss=value, image=seen.detach().clone(), losses=losses)
            current = iteration()
            while len(iteration_best) <= current:
                iteration_best.append(best["loss"])
            if run.callback:
                # what this scale's budget counts
                spent = len(history) if run.evaluations <= run.iterations else current
                last["progress"] = Progress(
                    scale,
                    run.scales,
                    current,
                    run.iterations,
                    len(history),
                    losses,
                    time.perf_counter() - run.start,
                    seen.detach(),
                    run.done_before + spent,
                    run.budget,
                )
                run.callback(last["progress"])
            if (
                not math.isfinite(value)
                or run.exhausted(len(history))
                or self._converged(iteration_best, best["loss"], run.patience)
            ):
                raise _Stop
            return torch.tensor(value)

        with contextlib.suppress(_Stop):
            if run.iterations > 0 and lbfgs:
                optimizer.step(closure)
            for _ in range(run.iterations if not lbfgs else 0):
                closure()
                optimizer.step()
        return Result(
            best["image"],
            best["losses"],
            iteration(),
            len(history),
            time.perf_counter() - started,
            read_curvature(optimizer, image, keep_pairs) if lbfgs and run.iterations > 0 else None,
        )

    def _converged(self, iteration_best: list[float], now: float, patience: int) -> bool:
        """True when the best loss improved by less than `tolerance` (relative) over the last
        `patience` iterations. Counted in iterations, not evaluations: the first L-BFGS line search
        may take several small evaluations before the optimizer has any curvature to go on."""
        tolerance = self.settings.tolerance
        if tolerance <= 0 or len(iteration_best) <= patience:
            return False
        return (iteration_best[-1 - patience] - now) <= tolerance * abs(now)
