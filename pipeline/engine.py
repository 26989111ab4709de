"""The engine: VGG-19 and the style targets set up once, then any number of images or frames
stylized with Gatys losses, coarse-to-fine (`ladder`), each scale optimized by `scale_loop`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from pipeline import color
from pipeline.device import (
    announce_precision,
    arithmetic_key,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)
from pipeline.errors import SettingsError
from pipeline.image_io import load_rgb
from pipeline.ladder import (
    check_size,
    halving_ladder,
    resize_image,
    rung_budget,
    scale_ladder,
    smallest_side,
)
from pipeline.losses import ContentLoss, StyleLoss, Term, TVLoss, summarize, weighted_parts
from pipeline.scale_loop import (
    Curvature,
    Hold,
    Progress,
    ProgressCallback,
    Result,
    ScaleOptimization,
    ScaleRun,
)
from pipeline.settings import StyleSettings, check_style_count
from pipeline.style_targets import StyleTargets
from pipeline.tiles import MemoryPlan, MemoryPlanner, assemble_features, evaluate_tiled
from pipeline.vgg import shared_features
from pipeline.weights import VGGWeights, load_weights

# what callers take from here, defined beside the engine's own parts
__all__ = [
    "Curvature",
    "Hold",
    "Plan",
    "Progress",
    "ProgressCallback",
    "Result",
    "Stylizer",
    "check_size",
    "halving_ladder",
    "resize_image",
    "rung_budget",
    "scale_ladder",
    "smallest_side",
]


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
    tolerance: float | None = None  # early stop's relative improvement (None: the settings')
    # a budget of `evaluations` spent by device_lbfgs, reading nothing back until its end (None:
    # on a GPU, where each read waits for the device to drain)
    on_device: bool | None = None
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
    # the long side of the picture the content is a crop of (hole_paint): the style's scale
    # follows the picture's, not the crop's (None: the content's own)
    style_side: int | None = None

    def __post_init__(self) -> None:
        if self.init is not None and self.scales is not None:
            raise SettingsError(
                "a warm start runs at the content's own size: give init or scales, not both"
            )
        if self.hold is not None and self.init is None:
            raise SettingsError("held pixels need a warm start (init) of the content's size")


class Stylizer:
    """VGG-19 and style targets, set up once, then used for any number of images or frames."""

    def __init__(
        self,
        settings: StyleSettings,
        styles: Sequence[torch.Tensor],
        weights: VGGWeights | str | None = None,
    ):
        check_style_count(settings, len(styles))  # the rest StyleSettings checked when it was built
        self.settings = settings
        self.device = resolve_device(settings.device)
        if settings.max_memory is None or self.device.type != "cpu":
            keep_freed_memory()  # under a bound, freed blocks go back: kept, they fragment
        weights = weights if isinstance(weights, VGGWeights) else load_weights(weights)
        self.precision = resolve_precision(settings.precision, self.device)
        announce_precision(self.precision)  # after the weights: a bad file stays a one-line error
        self.dtype = self.precision.dtype
        exact_fp32(self.device, self.dtype)
        self.layers = [settings.content_layer, *settings.style_layers]
        self.vgg = shared_features(weights, self.layers, settings.pooling, self.dtype, self.device)
        self.memory_plan = MemoryPlanner(settings.max_memory, self.device, self.layers, self.dtype)
        layer_weights = normalized(settings.style_layer_weights, len(settings.style_layers))
        self.layer_weights = dict(zip(settings.style_layers, layer_weights))
        styles = [color.luminance(s) if settings.preserve_colors else s for s in styles]
        self.palette = style_palette(settings, styles)
        self.style_grams = StyleTargets(
            settings,
            styles,
            normalized(settings.style_blend, len(styles)),
            self.features,
            self.memory_plan,
            self.device,
            network=f"{weights.fingerprint} {settings.pooling} {self.dtype} "
            + arithmetic_key(self.device),
        )

    def features(self, image: torch.Tensor, only: Sequence[str] | None = None) -> dict:
        """Activations at the layers in use, or at `only` of them (the pass stops there)."""
        return self.vgg(image.to(self.device).contiguous(memory_format=torch.channels_last), only)

    def loss_terms(
        self, content: torch.Tensor, memory: MemoryPlan | None = None, style_side: int | None = None
    ) -> list[Term]:
        """The loss terms of a content image (`style_side`: of the picture it is a crop of)."""
        target = content_target(self.features, content, self.settings.content_layer, memory)
        grams = self.style_grams(style_side or max(content.shape[-2:]))
        return gatys_terms(self.settings, target, grams, self.layer_weights)

    def evaluate(
        self, image: torch.Tensor, content: torch.Tensor, extra_terms: Sequence[Term] = ()
    ) -> dict[str, float]:
        """Weighted losses of `image` against `content` and the styles, without optimizing."""
        content, image = prepared(content, self.device), prepared(image, self.device)
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
        self.memory_plan.check(*content.shape[-2:])
        original = content
        content = prepared(color.luminance(content) if s.preserve_colors else content, self.device)
        ladder = plan_ladder(s, content, plan)
        if plan.init is not None:
            image = prepared(plan.init, self.device)
        else:
            image = initial_image(s, content, ladder[0], self.palette, self.device)
        total_iters, total_evals, losses = 0, 0, {}
        start, curvature = time.perf_counter(), plan.curvature
        for run, size in zip(scale_runs(s, ladder, plan, start, callback), ladder):
            last = run.scale == len(ladder)
            scale = self._optimize_scale(image, content, size, run, plan, curvature, last)
            image, losses, curvature = scale.image, scale.losses or losses, scale.curvature
            total_iters += scale.iterations
            total_evals += scale.evaluations
            # the next scale's first step takes this one's scale (its pairs are of another size)
            if not last:
                carry = plan.carry_between_scales and max(ladder[run.scale]) > s.coarse_threshold
                curvature = curvature if carry else None
        if not losses:  # no evaluation ran (a budget of 0 iterations)
            losses = self.evaluate(image, content, plan.extra_terms)
        image = image.detach().clamp(0, 1).cpu()
        if s.preserve_colors:
            image = color.with_chroma_of(image, original)
        seconds = time.perf_counter() - start
        return Result(image, losses, total_iters, total_evals, seconds, curvature)

    def _optimize_scale(
        self,
        image: torch.Tensor,
        content: torch.Tensor,
        size: tuple[int, int],
        run: ScaleRun,
        plan: Plan,
        curvature: Curvature | None,
        last: bool,
    ) -> Result:
        """One scale of the ladder; the plan's extra terms at the final size only."""
        extra = plan.extra_terms if last else ()
        memory = self.memory_plan(*size)
        hold = plan.hold.to(self.device) if plan.hold is not None else None
        terms = [
            *self.loss_terms(resize_image(content, size), memory, plan.style_side),
            *(term.to(self.device) for term in extra),
        ]
        optimization = ScaleOptimization(
            resize_image(image, size),
            terms,
            partial(self._evaluate, terms=terms, memory=memory),
            run,
            self.settings,
            history=memory.history,
            curvature=curvature,
            hold=hold,
            on_device=spent_on_device(plan, run, memory, curvature, self.settings, self.device),
        )
        return optimization(keep_pairs=last)

    def ladder(self, content: torch.Tensor, plan: Plan = Plan()) -> list[tuple[int, int]]:
        """The sizes one stylize call runs at."""
        return plan_ladder(self.settings, content, plan)

    def _evaluate(
        self,
        image: torch.Tensor,
        on_tile: Callable[[int, int], None] | None,
        terms: list[Term],
        memory: MemoryPlan,
    ) -> tuple[dict, float | torch.Tensor]:
        """Each term's weighted loss and the total (a 0-dim tensor on a whole image, a number
        when tiled); the gradient lands in `image.grad`."""
        if memory.tiles is not None:
            parts = evaluate_tiled(image, terms, self.features, memory.tiles, on_tile)
            return parts, sum(parts.values())
        parts = weighted_parts(terms, image, self.features(image))
        loss = sum(parts.values())
        loss.backward()
        return parts, loss.detach()  # read back by the caller, if and when it needs the number


def spent_on_device(
    plan: Plan,
    run: ScaleRun,
    memory: MemoryPlan,
    curvature: Curvature | None,
    settings: StyleSettings,
    device: torch.device,
) -> bool:
    """device_lbfgs spends the budget: a plan's own evaluations, no more than its iterations
    allow (it takes a step an evaluation), from carried curvature (without, torch's line search
    finds the first step's length), with L-BFGS on a whole image, where the plan says so or, by
    default, on a GPU."""
    wanted = plan.on_device if plan.on_device is not None else device.type == "cuda"
    lbfgs = settings.optimizer == "lbfgs" and curvature is not None
    budget = run.hard_cap and 0 < run.evaluations <= run.iterations
    return wanted and budget and lbfgs and memory.tiles is None


def normalized(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights that sum to 1 (None: `count` equal ones)."""
    weights = weights or [1.0] * count
    return [w / sum(weights) for w in weights]


def exact_fp32(device: torch.device, dtype: torch.dtype) -> None:
    """fp32 means fp32 on a GPU: cuDNN's default TF32 convolutions (a 10-bit mantissa) make the
    tiled and the whole image's gradients differ by 2.5 %; without them, by 3e-7
    (docs/benchmarks.md, "CUDA")."""
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cudnn.allow_tf32 = False


def content_target(
    features: Callable, content: torch.Tensor, layer: str, memory: MemoryPlan | None
) -> torch.Tensor:
    """The content's activations at `layer`, the network run only that deep (in tiles where the
    memory plan has them)."""
    only = partial(features, only=[layer])
    if memory is not None and memory.tiles is not None:
        return assemble_features(content, layer, only, memory.tiles)
    with torch.no_grad():
        return only(content)[layer]


def gatys_terms(
    settings: StyleSettings,
    content_target: torch.Tensor,
    grams: dict[str, torch.Tensor],
    layer_weights: dict[str, float],
) -> list[Term]:
    """The content, style and TV terms: the content target's features, the style Gram targets."""
    s = settings
    terms = [Term("content", ContentLoss(content_target), s.content_weight, s.content_layer)]
    for layer in s.style_layers:
        weight = s.style_weight * layer_weights[layer]
        terms.append(Term(f"style:{layer}", StyleLoss(grams[layer]), weight, layer, "style"))
    if s.tv_weight:
        terms.append(Term("tv", TVLoss(), s.tv_weight))
    return terms


def scale_runs(
    settings: StyleSettings,
    ladder: list[tuple[int, int]],
    plan: Plan,
    start: float,
    callback: ProgressCallback | None,
) -> list[ScaleRun]:
    """Each scale's budget (a plan's evaluations cap every scale, never exceeded)."""
    s = settings
    iterations = s.iterations if plan.iterations is None else plan.iterations
    budgets = [rung_budget(size, iterations, s, ladder) for size in ladder]
    if plan.evaluations is not None:
        budgets = [(iters, plan.evaluations) for iters, _ in budgets]
    patience = s.patience if plan.patience is None else plan.patience
    total = sum(iters for iters, _ in budgets)
    return [
        ScaleRun(
            *budgets[index - 1],
            patience,
            index,
            len(ladder),
            start,
            callback,
            sum(iters for iters, _ in budgets[: index - 1]),
            total,
            hard_cap=plan.evaluations is not None,
            tolerance=plan.tolerance,
        )
        for index in range(1, len(ladder) + 1)
    ]


def plan_ladder(
    settings: StyleSettings, content: torch.Tensor, plan: Plan
) -> list[tuple[int, int]]:
    """The sizes one stylize call runs at: one for a warm start, else the plan's or the
    settings' ladder."""
    if plan.init is not None:
        return [tuple(content.shape[-2:])]
    if plan.scales is not None:
        return halving_ladder(*content.shape[-2:], plan.scales, smallest_side(settings))
    return scale_ladder(*content.shape[-2:], settings)


def prepared(image: torch.Tensor, device: torch.device) -> torch.Tensor:
    # contiguous: L-BFGS flattens the gradient with view(), which other layouts refuse
    return image.detach().to(device, torch.float32).contiguous()


def style_palette(settings: StyleSettings, styles: Sequence[torch.Tensor]) -> color.Palette | None:
    """The styles' colours for --init palette (None under any other start)."""
    if settings.init != "palette":
        return None
    return color.palette_of(styles, normalized(settings.style_blend, len(styles)))


def initial_image(
    settings: StyleSettings,
    content: torch.Tensor,
    size: tuple[int, int],
    palette: color.Palette | None,
    device: torch.device,
) -> torch.Tensor:
    init = settings.init
    if palette is not None:
        return color.recoloured(content, palette)
    if init == "content":
        return content.clone()
    if init == "noise":
        generator = torch.Generator().manual_seed(settings.seed)
        return torch.rand(content.shape, generator=generator).to(device)
    return resize_image(load_rgb(Path(init)).to(device), size)
