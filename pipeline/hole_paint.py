"""Large holes painted first (--paint-holes): a later frame's few evaluations cannot paint a wide
region the warm start cannot vouch for (what enters the picture on a fast pan, what a large moving
object uncovers), so each such region is first optimized alone, on a crop with a margin of its
vouched surroundings, which the temporal loss holds there. The frame's own pass then starts from
the painted crops. A crop of a fifth of the frame costs a fifth of an evaluation: the budget goes
where the warp could not reach (make bench-motion)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.engine import Plan, Stylizer, smallest_side
from pipeline.image_io import to_array, to_tensor
from pipeline.losses import TemporalLoss, Term
from pipeline.tuning import HOLE_MARGIN, HOLE_WIDTH, LARGEST_HOLE


@dataclass(frozen=True)
class Box:
    """Rows top:bottom and columns left:right of a frame."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)

    def grown_to(self, side: int, height: int, width: int) -> Box:
        """At least `side` px each way (VGG-19's smallest input), inside a height x width frame."""
        top, bottom = _span(self.top, self.bottom, side, height)
        left, right = _span(self.left, self.right, side, width)
        return Box(top, bottom, left, right)

    def of(self, image: np.ndarray) -> np.ndarray:
        """The box's pixels of an H x W (x C) array."""
        return np.ascontiguousarray(image[self.top : self.bottom, self.left : self.right])


def hole_width(height: int, width: int) -> int:
    """How wide (px) a region must be everywhere to count as a large hole: a share of the
    frame's shorter side, so that the same motion counts at any size; odd, so that the opening
    keeps a region in place."""
    return max(3, round(HOLE_WIDTH * min(height, width)) | 1)


def large_holes(unvouched: np.ndarray) -> list[Box]:
    """Boxes around the regions of `unvouched` (H x W, bool) that are at least `hole_width`
    across everywhere, grown by a margin, each at most LARGEST_HOLE of the frame. Thinner
    regions (a slow pan's strip, an object's outline) are left to the frame's own pass: there the
    warp's repeated border or the patches flicker less than a fresh painting."""
    height, width = unvouched.shape
    size = hole_width(height, width)
    # outside the frame counts as vouched: a strip at the edge is as wide as it looks
    opened = cv2.morphologyEx(
        unvouched.astype(np.uint8),
        cv2.MORPH_OPEN,
        np.ones((size, size), np.uint8),
        borderType=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    count, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    margin = round(HOLE_MARGIN * min(height, width))
    boxes = [
        Box(
            max(0, y - margin),
            min(height, y + h + margin),
            max(0, x - margin),
            min(width, x + w + margin),
        )
        for x, y, w, h, _ in stats[1:count].tolist()
    ]
    return [box for box in boxes if box.area <= LARGEST_HOLE * height * width]


def paint_holes(
    stylizer: Stylizer,
    content: np.ndarray,
    init: np.ndarray,
    mask: np.ndarray,
    terms: tuple[Term, ...] | list[Term],
    evaluations: int,
    on_device: bool | None = None,
) -> np.ndarray:
    """`init` (H x W x 3, a later frame's first image) with each large hole of `mask` (H x W,
    1: vouched for) painted by `evaluations` loss evaluations on its box of `content`, with
    `terms` (the frame's temporal term) cropped to it. Vouched pixels keep `init`; all of them
    with `evaluations` 0."""
    if evaluations <= 0:
        return init
    (height, width), side = mask.shape, smallest_side(stylizer.settings)
    holes = large_holes(mask < 0.5)
    painted = init.copy() if holes else init  # the caller's start stays as it was
    for box in holes:
        box = box.grown_to(side, height, width)
        plan = Plan(
            init=to_tensor(box.of(painted)),
            iterations=evaluations,
            patience=evaluations,
            evaluations=evaluations,
            extra_terms=tuple(cropped(term, box) for term in terms),
            on_device=on_device,
            style_side=max(height, width),  # strokes of the frame's size, not the crop's
        )
        crop = to_array(stylizer.stylize(to_tensor(box.of(content)), plan).image)
        free = 1.0 - box.of(mask)[..., None]
        region = painted[box.top : box.bottom, box.left : box.right]
        region[...] = free * crop + (1.0 - free) * region
    return painted


def cropped(term: Term, box: Box) -> Term:
    """A temporal term restricted to `box`."""
    loss = term.loss
    if not isinstance(loss, TemporalLoss):
        raise TypeError(f"only a temporal term can be cropped, not {term.name}")
    rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
    part = TemporalLoss(loss.target[..., rows, cols], loss.mask[..., rows, cols])
    return Term(term.name, part, term.weight, term.layer, term.group)


def _span(start: int, end: int, length: int, limit: int) -> tuple[int, int]:
    """[start, end) grown evenly to at least `length`, shifted to fit in [0, limit)."""
    missing = max(0, length - (end - start))
    start, end = start - missing // 2, end + missing - missing // 2
    shift = max(0, -start) - max(0, end - limit)
    return max(0, start + shift), min(limit, end + shift)
