"""The optimizer loop of one scale: the pixels optimized with L-BFGS (or Adam) against the loss
terms, with an early stop, a hard cap on evaluations, held pixels and carried curvature."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from pipeline.device_lbfgs import History, minimize
from pipeline.losses import Term, summarize
from pipeline.settings import StyleSettings


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
class ScaleRun:
    """One scale of a stylize call: its budget, and what every scale of the call shares."""

    iterations: int  # this scale's budget
    evaluations: int  # and its cap on loss evaluations
    patience: int
    scale: int  # 1-based index into the coarse-to-fine ladder
    scales: int
    start: float
    callback: ProgressCallback | None
    done_before: int = 0  # iterations budgeted to the scales before this one
    budget: int = 0  # all scales' budgets
    # `evaluations` is never exceeded, not even inside a line search (a plan's own budget)
    hard_cap: bool = False
    tolerance: float | None = None  # the early stop's (None: the settings')

    def exhausted(self, evaluations: int) -> bool:
        """A plan's own budget is spent: torch checks max_eval only between iterations, and a
        line search could run past it."""
        return self.hard_cap and evaluations >= self.evaluations


class _Stop(Exception):
    """Raised inside the closure to leave L-BFGS early (converged, or diverged)."""


SEEDED_ITERATIONS = 1  # a seeded L-BFGS state counts as one iteration done


def seed_curvature(
    optimizer: torch.optim.LBFGS, image: torch.Tensor, curvature: Curvature, history: int
) -> None:
    """Start `optimizer` as if it had run: its first direction uses the curvature's scale and, at
    the same size, its history pairs, and its first step length is 1 (torch's LBFGS state, as it
    keeps it). A zero last step adds no pair built from two different losses."""
    flat = image.numel()
    steps, changes = carried_pairs(curvature, image, history)
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


def carried_pairs(
    curvature: Curvature, image: torch.Tensor, history: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The newest `history` pairs of `curvature` on the image's device, where they are of its size
    (none otherwise: pairs of another size describe another problem)."""
    if tuple(curvature.size) != tuple(image.shape[-2:]) or history <= 0:
        return [], []
    steps = [s.to(image.device) for s in curvature.steps[-history:]]
    return steps, [y.to(image.device) for y in curvature.changes[-history:]]


def device_history(image: torch.Tensor, history: int, curvature: Curvature | None) -> History:
    """device_lbfgs's start from a carried curvature: its scale and, at the same size, its pairs."""
    start = History(history)
    if curvature is None:
        return start
    for step, change in zip(*carried_pairs(curvature, image, history)):
        start.add(step, change)
    start.scale = torch.full((), curvature.scale, device=image.device)  # a fill, not a copy
    return start


def skip_dynamo_import() -> None:
    """torch.optim.Optimizer's add_param_group (run by every optimizer's __init__) and zero_grad
    are wrapped by torch._disable_dynamo, whose first call imports torch._dynamo, about a second
    and 150 MB a process, only to mark them as not to be compiled. They get the attribute that
    wrapper caches its result in, set to a stand-in that calls them as they are until something
    in the process has imported torch._dynamo, and from then on as torch would. L-BFGS (the
    default) then never imports it; Adam's step still does. Where a torch keeps the attribute
    elsewhere, torch imports it on first use, as it would anyway."""
    for method in (torch.optim.Optimizer.add_param_group, torch.optim.Optimizer.zero_grad):
        inner = getattr(method, "__wrapped__", None)
        if inner is not None and getattr(inner, "__dynamo_disable", None) is None:
            inner.__dynamo_disable = _undisabled_until_dynamo(inner)


def _undisabled_until_dynamo(function: Callable) -> Callable:
    def call(*args, **kwargs):
        if "torch._dynamo" in sys.modules:  # compiling is possible: torch's own behaviour
            disabled = sys.modules["torch._dynamo"].disable(function, True, wrapping=False)
            function.__dynamo_disable = disabled
            return disabled(*args, **kwargs)
        return function(*args, **kwargs)

    return call


skip_dynamo_import()


def make_optimizer(
    image: torch.Tensor,
    run: ScaleRun,
    settings: StyleSettings,
    history: int,
    curvature: Curvature | None,
) -> torch.optim.Optimizer:
    """One scale's optimizer, with the random state reset: the same settings give the same
    pixels."""
    torch.manual_seed(settings.seed)
    if settings.optimizer == "adam":
        return torch.optim.Adam([image], lr=settings.learning_rate)
    optimizer = torch.optim.LBFGS(
        [image],
        lr=1.0,
        max_iter=max(1, run.iterations),
        max_eval=max(1, run.evaluations),
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=history,
        line_search_fn="strong_wolfe",
    )
    if curvature is not None:
        seed_curvature(optimizer, image, curvature, history)
    return optimizer


# each term's weighted loss and the total (a number, or a 0-dim tensor), the gradient landed in
# the image's .grad; the callback hears of each tile of a tiled evaluation
Evaluate = Callable[[torch.Tensor, Callable[[int, int], None]], tuple[dict, "float | torch.Tensor"]]


class ScaleOptimization:
    """One scale: the best image seen and its losses, the iterations and evaluations used, the
    curvature learnt. `history`: L-BFGS pairs that fit the memory budget."""

    def __init__(
        self,
        image: torch.Tensor,
        terms: list[Term],
        evaluate: Evaluate,
        run: ScaleRun,
        settings: StyleSettings,
        *,
        history: int,
        curvature: Curvature | None = None,
        hold: Hold | None = None,
        on_device: bool = False,
    ):
        self.started = time.perf_counter()
        self.image = (hold.seen(image) if hold else image).detach().clone().requires_grad_(True)
        self.terms, self.evaluate, self.run, self.hold = terms, evaluate, run, hold
        self.tolerance = settings.tolerance if run.tolerance is None else run.tolerance
        # on the device: the whole budget in device_lbfgs (L-BFGS, hard-capped, untiled)
        self.device_history = device_history(self.image, history, curvature) if on_device else None
        self.optimizer = (
            None if on_device else make_optimizer(self.image, run, settings, history, curvature)
        )
        self.lbfgs = isinstance(self.optimizer, torch.optim.LBFGS)
        self.seeded = SEEDED_ITERATIONS if self.lbfgs and curvature is not None else 0
        self.best = {"loss": math.inf, "image": self.image.detach().clone(), "losses": {}}
        self.history: list[float] = []
        # the best loss when each iteration's first evaluation ended
        self.iteration_best: list[float] = []
        # a tiled evaluation can take minutes: its tiles report on the last progress
        self.last: Progress | None = None

    def __call__(self, keep_pairs: bool = True) -> Result:
        """Optimize; the curvature keeps its history pairs only if `keep_pairs`."""
        if self.device_history is not None:
            return self.minimize_on_device(keep_pairs)
        run, optimizer = self.run, self.optimizer
        with contextlib.suppress(_Stop):
            if run.iterations > 0 and self.lbfgs:
                optimizer.step(self.closure)
            for _ in range(run.iterations if not self.lbfgs else 0):
                self.closure()
                optimizer.step()
        curvature = None
        if self.lbfgs and run.iterations > 0:
            curvature = read_curvature(optimizer, self.image, keep_pairs)
        best = self.best
        seconds = time.perf_counter() - self.started
        return Result(
            best["image"], best["losses"], self.iteration(), len(self.history), seconds, curvature
        )

    def minimize_on_device(self, keep_pairs: bool) -> Result:
        """The budget spent with nothing read back; the losses and the curvature read at the end."""
        history = self.device_history
        best = minimize(self.image, self.device_closure, self.run.evaluations, history)
        found = best.parts is not None and math.isfinite(float(best.loss))
        losses = summarize(self.terms, best.parts) if found else {}
        steps, changes = history.useful_pairs() if keep_pairs else ([], [])
        scale = float(history.scale) if history.scale is not None else math.nan
        size = tuple(self.image.shape[-2:])
        usable = math.isfinite(scale) and scale > 0
        curvature = Curvature(scale, size, steps, changes) if usable else None
        steps_taken = max(0, self.run.evaluations - 1)
        if self.run.callback and found:
            self.report(steps_taken, losses, best.image, self.run.evaluations)
        seconds = time.perf_counter() - self.started
        # no finite loss seen: the start, as the torch loop returns it
        return Result(best.image, losses, steps_taken, self.run.evaluations, seconds, curvature)

    def device_closure(self, pixels: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor]:
        pixels.grad = None
        seen = self.hold.seen(pixels) if self.hold else pixels
        parts, loss = self.evaluate(seen, self.on_tile)
        if self.hold:
            self.hold.pass_back(seen, pixels)
        return parts, loss, seen

    def iteration(self) -> int:
        if self.lbfgs and self.image in self.optimizer.state:
            return self.optimizer.state[self.image].get("n_iter", 0) - self.seeded
        return 0 if self.lbfgs else len(self.history)

    def closure(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        seen = self.hold.seen(self.image) if self.hold else self.image
        parts, value = self.evaluate(seen, self.on_tile)
        value = float(value)
        if self.hold:
            self.hold.pass_back(seen, self.image)
        self.history.append(value)
        losses = summarize(self.terms, parts)
        if value < self.best["loss"]:
            self.best.update(loss=value, image=seen.detach().clone(), losses=losses)
        current = self.iteration()
        while len(self.iteration_best) <= current:
            self.iteration_best.append(self.best["loss"])
        if self.run.callback:
            self.report(current, losses, seen)
        if not math.isfinite(value) or self.run.exhausted(len(self.history)) or self.converged():
            raise _Stop
        return torch.tensor(value)

    def report(
        self, current: int, losses: dict[str, float], seen: torch.Tensor, evaluations: int = 0
    ) -> None:
        run = self.run
        evaluations = evaluations or len(self.history)
        # what this scale's budget counts
        spent = evaluations if run.evaluations <= run.iterations else current
        self.last = Progress(
            run.scale,
            run.scales,
            current,
            run.iterations,
            evaluations,
            losses,
            time.perf_counter() - run.start,
            seen.detach(),
            run.done_before + spent,
            run.budget,
        )
        run.callback(self.last)

    def on_tile(self, done: int, tiles: int) -> None:
        if self.run.callback and self.last is not None:
            self.run.callback(replace(self.last, tile=(done, tiles)))

    def converged(self) -> bool:
        """True when the best loss improved by less than `tolerance` (relative) over the last
        `patience` iterations. Counted in iterations, not evaluations: the first L-BFGS line search
        may take several small evaluations before the optimizer has any curvature to go on."""
        patience, now = self.run.patience, self.best["loss"]
        if self.tolerance <= 0 or len(self.iteration_best) <= patience:
            return False
        return (self.iteration_best[-1 - patience] - now) <= self.tolerance * abs(now)
