"""L-BFGS for a later frame's fixed budget with every number on the device: no loss, step length
or convergence test read back to the host until the budget is spent.

torch.optim.LBFGS reads a number back at every evaluation and at every history pair of its
two-loop recursion (`alpha=` takes a Python number): about 26 reads an evaluation for a later
frame, each one a wait for the GPU to drain (docs/benchmarks.md, "Throughput"). A later frame has
a fixed budget of evaluations and starts from carried curvature, so it needs neither a line
search nor an early stop: each evaluation is followed by a unit step along -H g, a pair whose
curvature condition fails (or that is not finite) is zeroed instead of being skipped, and the
best image is kept with `torch.where`. The host reads the losses and the curvature once the
budget is spent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# evaluate(pixels) -> (each term's weighted loss, the total, the image the losses saw), the
# gradient landed in pixels.grad
Closure = Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]

CURVATURE_FLOOR = 1e-10  # y.s at most this: the pair says nothing of the curvature (torch's test)


@dataclass
class History:
    """The newest pairs s = x_k+1 - x_k, y = g_k+1 - g_k, oldest first, with 1 / y.s (0 where the
    pair failed the curvature condition) and the inverse Hessian's scale, all device tensors."""

    size: int
    steps: list[torch.Tensor] = field(default_factory=list)
    changes: list[torch.Tensor] = field(default_factory=list)
    inverses: list[torch.Tensor] = field(default_factory=list)
    scale: torch.Tensor | None = None  # None: no curvature yet (the first step is scaled by |g|)

    def add(self, step: torch.Tensor, change: torch.Tensor) -> None:
        product = change.dot(step)
        useful = torch.isfinite(product) & (product > CURVATURE_FLOOR)
        inverse = torch.where(useful, 1.0 / product, torch.zeros_like(product))
        scale = product / change.dot(change)
        # torch's scale stays 1 until a pair passes
        fallback = torch.ones_like(scale) if self.scale is None else self.scale
        self.scale = torch.where(useful, scale, fallback)
        # zeroed, a useless pair adds nothing to the recursion (0 * inf would be NaN)
        self.steps.append(torch.where(useful, step, torch.zeros_like(step)))
        self.changes.append(torch.where(useful, change, torch.zeros_like(change)))
        self.inverses.append(inverse)
        if len(self.steps) > self.size:
            del self.steps[0], self.changes[0], self.inverses[0]

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """-H g by the two-loop recursion (Nocedal and Wright, algorithm 7.4), each coefficient a
        0-dim tensor: `addcmul_` scales by it on the device."""
        q = gradient.neg()
        if self.scale is None:  # torch's first step: -g, at most a unit step in the 1-norm
            return q * torch.clamp(1.0 / gradient.abs().sum(), max=1.0)
        alphas = []
        for step, change, inverse in zip(
            reversed(self.steps), reversed(self.changes), reversed(self.inverses)
        ):
            alpha = step.dot(q) * inverse
            q.addcmul_(change, alpha, value=-1)
            alphas.append(alpha)
        r = q * self.scale
        for step, change, inverse, alpha in zip(
            self.steps, self.changes, self.inverses, reversed(alphas)
        ):
            beta = change.dot(r) * inverse
            r.addcmul_(step, alpha - beta)
        return r

    def useful_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The pairs that passed the curvature condition (one read of the host)."""
        if not self.steps:
            return [], []
        kept = (torch.stack(self.inverses) > 0).tolist()
        return (
            [s for s, keep in zip(self.steps, kept) if keep],
            [y for y, keep in zip(self.changes, kept) if keep],
        )


@dataclass
class Best:
    """The lowest loss seen, its image and its parts, kept on the device."""

    loss: torch.Tensor
    image: torch.Tensor
    parts: dict[str, torch.Tensor] | None = None

    def offer(self, loss: torch.Tensor, image: torch.Tensor, parts: dict[str, torch.Tensor]):
        better = loss < self.loss  # False for NaN: a diverged step is never kept
        self.image = torch.where(better, image, self.image)
        if self.parts is None:
            self.parts = {name: torch.full_like(value, math.inf) for name, value in parts.items()}
        self.parts = {
            name: torch.where(better, value, self.parts[name]) for name, value in parts.items()
        }
        self.loss = torch.where(better, loss, self.loss)


def minimize(image: torch.Tensor, closure: Closure, evaluations: int, history: History) -> Best:
    """`evaluations` evaluations of `closure` from `image` (a leaf that requires grad), a step
    after each but the last; `history` is extended in place. A step that raised the loss is not
    taken from: the next point is back along it, where a parabola through the two losses and the
    slope at the last point that lowered the loss has its minimum (a carried curvature can
    overshoot a frame whose terms changed, where torch's line search would have shortened the
    step)."""
    infinity = torch.full((), math.inf, device=image.device)  # a fill: no copy from the host
    best = Best(infinity, image.detach().clone())
    flat = image.detach().view(-1)
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    anchor = Anchor(infinity, flat.clone(), torch.zeros_like(flat))
    for evaluation in range(evaluations):
        parts, loss, seen = closure(image)
        gradient = image.grad.detach().reshape(-1).clone()
        best.offer(loss.detach(), seen.detach(), {k: v.detach() for k, v in parts.items()})
        if previous is not None:
            history.add(flat - previous[0], gradient - previous[1])
        if evaluation == evaluations - 1:
            break
        previous = (flat.clone(), gradient)
        with torch.no_grad():
            back = anchor.back_from(loss.detach(), flat)
            lowered = anchor.offer(loss.detach(), flat, gradient)
            flat.copy_(torch.where(lowered, flat + history.direction(gradient), back))
    return best


@dataclass
class Anchor:
    """The last point whose loss was the lowest yet, with its gradient: steps go on from it."""

    loss: torch.Tensor
    point: torch.Tensor
    gradient: torch.Tensor

    def offer(
        self, loss: torch.Tensor, point: torch.Tensor, gradient: torch.Tensor
    ) -> torch.Tensor:
        lowered = torch.isfinite(loss) & (loss <= self.loss)
        self.point = torch.where(lowered, point, self.point)
        self.gradient = torch.where(lowered, gradient, self.gradient)
        self.loss = torch.where(lowered, loss, self.loss)
        return lowered

    def back_from(self, loss: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        """A point on the way from here to `point` (whose loss rose): the minimum of the parabola
        with this loss and slope here and `loss` there, kept between a tenth and a half of the
        way (Nocedal and Wright, eq. 3.58)."""
        step = point - self.point
        slope = self.gradient.dot(step)
        bend = loss - self.loss - slope
        fraction = torch.where(bend > 0, -slope / (2 * bend), torch.full_like(bend, 0.5))
        fraction = torch.nan_to_num(fraction, nan=0.5).clamp(0.1, 0.5)
        return self.point + fraction * step
