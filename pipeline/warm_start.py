"""How a later frame starts: an earlier result carried onto it, refined by a short list of steps
with one interface, `step(state, context) -> state`. Each step takes the carried image and its
confidence mask (and what the steps before it added) and returns them refined:

1. carry along the flow: the earlier result warped onto this frame, vouched for where the
   forward and backward flows agree;
2. photo check (--photo-check): vouched for only where the earlier input, carried the same way,
   looks like this one;
3. restore (--restore-still): a still camera's pixels the flow cannot vouch for start from the
   shot's first result where the input looks as it did then;
4. fill disocclusions (--fill): the optimizer's first image, unvouched pixels filled;
5. hold (--hold-still): pixels whose input has not changed since their hold reference keep it.

The settings choose which steps run (`later_frame_steps`). Steps 1-3 make the temporal loss's
target; a long-term frame (t-2, t-4) goes through steps 1-2 only (`past_frame_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from pipeline import device_warp
from pipeline.engine import Hold
from pipeline.hole_paint import large_holes
from pipeline.image_io import to_tensor
from pipeline.patch_fill import patch_fill
from pipeline.settings import VideoSettings
from pipeline.shot_memory import ChangeSinceReference, HoldReference, PastFrame
from pipeline.temporal import (
    Carried,
    FlowPair,
    Frame,
    carry,
    in_view,
    looks_alike,
    photo_check,
    to_float,
)
from pipeline.tuning import (
    HOLD_BLUR,
    HOLD_LIGHT_LIMIT,
    HOLD_SETTLE,
    LIGHT_BLUR,
    MASK_BLUR,
    RESTORE_CHANGE,
    RESTORE_LIGHT_LIMIT,
)


@dataclass(frozen=True)
class WarmContext:
    """What the steps know of the frame pair."""

    frame: Frame  # this frame's input
    content: np.ndarray  # the same, float RGB
    earlier: Frame  # the input of the frame whose result is carried
    flows: FlowPair  # between the two, with the one camera verdict
    video: VideoSettings
    shot_start: PastFrame | None = None  # for the restore
    reference: HoldReference | None = None  # for the hold
    warp_on: torch.device | None = None  # carry on this device (device_warp); None: OpenCV


@dataclass(frozen=True)
class WarmStart:
    """The steps' state: the carried result and its mask, then what later steps add."""

    carried: Carried
    init: np.ndarray | None = None  # the optimizer's first image (fill); None: carried.image
    change: ChangeSinceReference | None = None  # the input's change since the hold reference
    held: np.ndarray | None = None  # H x W in [0, 1]: how much of each pixel is held
    hold: Hold | None = None  # what the engine keeps

    @classmethod
    def of(cls, result: np.ndarray) -> WarmStart:
        """An earlier result, not carried yet: vouched for nowhere."""
        image = to_float(result)
        return cls(Carried(image, np.zeros(image.shape[:2], np.float32)))

    @property
    def first_image(self) -> np.ndarray:
        return self.carried.image if self.init is None else self.init


Step = Callable[[WarmStart, WarmContext], WarmStart]


def carry_along_flow(state: WarmStart, context: WarmContext) -> WarmStart:
    """What entered the picture is vouched for nowhere where the frame has the budget to paint
    it: with --catch-up, or with --paint-holes where a wide strip of it entered (a fast pan,
    which `hole_paint` paints). The border the warp repeats there would otherwise hold it (a
    36-px pan's style 6.8x a cold frame's; make bench-motion). A slow pan's thin strip keeps that
    border: a better start for a later frame's few evaluations than a fresh painting."""
    if context.warp_on is None:
        carried = carry(state.carried.image, context.flows)
    else:
        carried = device_warp.carry(state.carried.image, context.flows, context.warp_on)
    video, seen = context.video, in_view(context.flows.backward)
    if video.catch_up > 1 or (video.paint_holes > 0 and large_holes(seen < 1)):
        carried = Carried(carried.image, carried.mask * seen)
    return replace(state, carried=carried)


def check_photo(state: WarmStart, context: WarmContext) -> WarmStart:
    alike = photo_check(context.frame, context.earlier, context.flows.backward)
    return replace(state, carried=Carried(state.carried.image, state.carried.mask * alike))


def restore_still_camera(state: WarmStart, context: WarmContext) -> WarmStart:
    """Where the flow cannot vouch for a pixel of a still camera's frame, the shot's first result
    (in the camera's current exposure) where the input looks as it did then; the temporal loss
    then holds it there. Otherwise the pixels something passing leaves start from the content with
    a later frame's few evaluations, and the temporal loss keeps that half-painted look for
    hundreds of frames (a trail). Only unvouched pixels: restoring every such-looking pixel
    flickers (warping error at k=1 about 9x the input's)."""
    carried, first = state.carried, context.shot_start
    if first is None or not context.flows.camera_still:
        return state
    if carried.mask.min() >= 1.0:  # every pixel vouched for: nothing to restore or compare
        return state
    change = change_since(context.frame, first.frame.rgb, RESTORE_CHANGE, light_limit=np.inf)
    # the camera's exposure is followed; a local change of light as large is content (a smooth red
    # car body on grey ground)
    exposure = np.median(change.light.reshape(-1, 3), axis=0)
    unchanged = (
        change.unchanged
        & (np.abs(change.light - exposure).mean(axis=2) < HOLD_LIGHT_LIMIT)
        & (np.abs(exposure).mean() < RESTORE_LIGHT_LIMIT)
    )
    blurred = cv2.GaussianBlur(unchanged.astype(np.float32), (0, 0), MASK_BLUR)
    weight = (1 - carried.mask) * blurred
    restored = np.clip(to_float(first.result) + change.light, 0.0, 1.0)
    image = weight[..., None] * restored + (1 - weight[..., None]) * carried.image
    return replace(
        state, carried=Carried(image.astype(np.float32), np.maximum(carried.mask, weight))
    )


def fill_disocclusions(state: WarmStart, context: WarmContext) -> WarmStart:
    """The optimizer's first image: the carried result, with the pixels the steps cannot vouch
    for filled by --fill: patches (the carried result's own, where the input looks alike:
    what an object uncovers starts painted, make bench-motion), warp (the carried pixels as they
    are), content (the input frame) or blend (half each)."""
    carried, fill = state.carried, context.video.fill
    if fill == "warp":
        return replace(state, init=carried.image)
    if fill == "patches":
        init = patch_fill(carried.image, context.content, carried.mask, context.warp_on)
        return replace(state, init=init)
    mask = carried.mask[..., None]
    other = context.content if fill == "content" else 0.5 * (carried.image + context.content)
    return replace(state, init=mask * carried.image + (1 - mask) * other)


def hold_still_pixels(state: WarmStart, context: WarmContext) -> WarmStart:
    """Pixels whose input looks as when their hold reference was made keep its result, in this
    frame's light. A moving camera holds nothing: a clear sky would look unchanged in place and
    keep its strokes there."""
    reference = context.reference
    if reference is None or not context.flows.camera_still:
        return state
    change = change_since(context.frame, reference.source, context.video.hold_still)
    held = hold_weight(change.unchanged, reference)
    return replace(state, change=change, held=held, hold=hold_of(reference, held, change))


def later_frame_steps(video: VideoSettings) -> tuple[Step, ...]:
    """The steps of frame t-1's result onto a later frame, as the settings switch them."""
    steps: list[Step] = [carry_along_flow]
    if video.photo_check:
        steps.append(check_photo)
    if video.restore_still:
        steps.append(restore_still_camera)
    steps.append(fill_disocclusions)
    if video.hold_still > 0:
        steps.append(hold_still_pixels)
    return tuple(steps)


def past_frame_steps(video: VideoSettings) -> tuple[Step, ...]:
    """The steps of a long-term frame's result: carried and checked, for the temporal loss only."""
    return (carry_along_flow, check_photo) if video.photo_check else (carry_along_flow,)


def run_steps(steps: Sequence[Step], state: WarmStart, context: WarmContext) -> WarmStart:
    for step in steps:
        state = step(state, context)
    return state


def change_since(
    frame: Frame, source: np.ndarray, change: float, light_limit: float = HOLD_LIGHT_LIMIT
) -> ChangeSinceReference:
    """Content and light apart: a slow shadow or the camera's exposure is a change of light,
    carried onto held pixels as it is, so that they follow it without being repainted (counted as
    content, a shadow crossing a wall would let a fifth of the still pixels go, to wander); what
    the blurred input changed beyond that is content. The light is taken from unchanged content
    only, so that something passing does not light up the still pixels around it. A pixel is
    unchanged where the two look alike within `change` and its light changed by less than
    `light_limit`. `source`: the input frame the result was made from."""
    difference = to_float(frame.rgb) - to_float(source)
    blurred = cv2.GaussianBlur(difference, (0, 0), HOLD_BLUR)
    # the light guessed from every pixel, then from those whose content looks alike under it
    rough = looks_alike(blurred, change, cv2.GaussianBlur(difference, (0, 0), LIGHT_BLUR))
    rough = rough.astype(np.float32)
    share = cv2.GaussianBlur(rough, (0, 0), LIGHT_BLUR)[..., None]
    spread = cv2.GaussianBlur(difference * rough[..., None], (0, 0), LIGHT_BLUR)
    light = np.where(share > 0.05, spread / np.maximum(share, 0.05), 0.0)
    unchanged = looks_alike(blurred, change, light) & (np.abs(light).mean(axis=2) < light_limit)
    return ChangeSinceReference(unchanged, light.astype(np.float32))


def hold_weight(unchanged: np.ndarray, reference: HoldReference) -> np.ndarray:
    """H x W in [0, 1]: 1 on unchanged pixels that have settled, the mask's edges softened."""
    settled = (unchanged & (reference.age >= HOLD_SETTLE)).astype(np.float32)
    return cv2.GaussianBlur(settled, (0, 0), MASK_BLUR)


def hold_of(
    reference: HoldReference, held: np.ndarray, change: ChangeSinceReference
) -> Hold | None:
    """What held pixels show: their reference's result in this frame's light."""
    if not held.any():
        return None
    image = np.clip(to_float(reference.result) + change.light, 0.0, 1.0)
    return Hold(to_tensor(image), torch.from_numpy(held)[None, None])
